"""SSH host block (`SshHost`, slug ansflow-ssh-host): where remote steps and Ansible act."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, model_validator

from ansflow.engines.ssh_keys import host_keys


class SshHost(Block):
    """One SSH server that ansflow's remote command / script steps and Ansible steps use.

    The host's public key(s) are required: a server presenting any other key is refused
    (never trusted on first use). Authenticate with a private key (with an optional
    passphrase) or a password; both are secret fields and never shown. `jump_host` names
    another SshHost block to connect through (as `ssh -J`). `ansflow host add NAME ...`
    saves one, `ansflow host check NAME` says which of network, host key or authentication
    fails.

    Example:
        ```python
        from ansflow.blocks.ssh import SshHost

        SshHost(hostname="10.0.0.5", username="deploy", private_key=open("id_ed25519").read(),
                known_host_keys=["ssh-ed25519 AAAAC3..."]).save("web1")
        ```
    """

    _block_type_name = "Ansflow SSH Host"
    _block_type_slug = "ansflow-ssh-host"
    # A refusal never repeats what was given: pydantic would show the whole input, password too.
    model_config = ConfigDict(hide_input_in_errors=True)

    hostname: str = Field(description="Host name or address of the SSH server.")
    port: int = Field(default=22, ge=1, le=65535, description="SSH port.")
    username: str = Field(description="User to log in as.")
    private_key: SecretStr | None = Field(
        default=None, description="The private key (OpenSSH or PEM text) to log in with.")
    passphrase: SecretStr | None = Field(
        default=None, description="Passphrase of an encrypted private key.")
    password: SecretStr | None = Field(
        default=None, description="Password to log in with (when there is no private key).")
    known_host_keys: list[str] = Field(
        description="The server's public host key(s): *.pub lines (`ssh-ed25519 AAAA...`), "
                    "trusted as given, or known_hosts lines, trusted only where their host "
                    "pattern matches this block's hostname and port (`[host]:port` off port "
                    "22); `@revoked` keys are refused, `@cert-authority` is not supported. A "
                    "server with another key is refused.")
    jump_host: str | None = Field(
        default=None, description="Name of another SshHost block to connect through.")
    connect_timeout: float = Field(default=15.0, gt=0, description="Seconds to connect.")

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> SshHost:
        host_keys(self.known_host_keys, self.hostname, self.port)  # ValueError saying why
        if self.private_key is None and self.password is None:
            raise ValueError("give a private_key or a password")
        if self.passphrase is not None and self.private_key is None:
            raise ValueError("a passphrase goes with a private_key")
        return self

    @property
    def auth_method(self) -> str:
        """How it logs in: key, key+passphrase or password."""
        if self.private_key is not None:
            return "key+passphrase" if self.passphrase is not None else "key"
        return "password"

    @property
    def address(self) -> str:
        return f"{self.username}@{self.hostname}:{self.port}"

    def secret_values(self) -> list[tuple[str, str]]:
        """(what, value) of every secret the block holds, for the run's masker."""
        found = []
        for what, value in (("its private key", self.private_key),
                            ("its key passphrase", self.passphrase),
                            ("its password", self.password)):
            if value is not None and value.get_secret_value():
                found.append((what, value.get_secret_value()))
        return found
