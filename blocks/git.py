"""Git credentials block (`GitCredentials`, slug ansflow-git-credentials): how a pipeline's
`source:` authenticates to its repository."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, model_validator

from ansflow.engines.git import GitCredentials as EngineCredentials
from ansflow.engines.ssh_keys import load_client_key


class GitCredentials(Block):
    """Credentials for a pipeline's git `source:`: either an HTTPS token (with a user name)
    or an SSH private key with the server's pinned host key(s).

    The token and the key are secret fields: they are given to git through a private file
    only for the repository's own host, never in a URL, an argument, the environment of the
    steps or the checkout's `.git/config`. An SSH server presenting a key other than the
    pinned one is refused (never trusted on first use), as for SshHost blocks.

    Example:
        ```python
        from ansflow.blocks.git import GitCredentials

        GitCredentials(username="ci-bot", token="glpat-...").save("app-token")
        GitCredentials(private_key=open("deploy_key").read(),
                       known_host_keys=["git.example.com ssh-ed25519 AAAAC3..."]).save("app-ssh")
        ```
    """

    # A refused value is never repeated in the error (it may be the token or the key).
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "Ansflow Git Credentials"
    _block_type_slug = "ansflow-git-credentials"
    _logo_url = "https://git-scm.com/images/logos/downloads/Git-Icon-1788C.png"

    username: str | None = Field(
        default=None, description="HTTPS: the user name the token belongs to (a forge's "
                                  "token user such as `oauth2`, `x-access-token` or the "
                                  "account name).")
    token: SecretStr | None = Field(
        default=None, description="HTTPS: the access token or password.")
    private_key: SecretStr | None = Field(
        default=None, description="SSH: the private key (OpenSSH or PEM text), e.g. a deploy "
                                  "key.")
    passphrase: SecretStr | None = Field(
        default=None, description="SSH: the passphrase of an encrypted private key.")
    known_host_keys: list[str] = Field(
        default_factory=list,
        description="SSH: the server's public host key(s): *.pub lines (`ssh-ed25519 "
                    "AAAA...`), trusted as given, or known_hosts lines, trusted only where "
                    "their host pattern matches the repository URL's host and port. A server "
                    "with another key is refused.")

    @model_validator(mode="after")
    def _one_kind(self) -> GitCredentials:
        if self.token is not None and self.private_key is not None:
            raise ValueError("give a token (HTTPS) or a private_key (SSH), not both")
        if self.token is None and self.private_key is None:
            raise ValueError("give a token (HTTPS) or a private_key (SSH)")
        if self.token is not None:
            text = self.token.get_secret_value()
            if not text or any(c in text for c in "\r\n\0"):
                raise ValueError("the token is empty or holds a line break or NUL byte")
            if self.passphrase is not None or self.known_host_keys:
                raise ValueError("a passphrase and known_host_keys go with a private_key")
        if self.username is not None and any(c in self.username for c in "\r\n\0"):
            raise ValueError("the username holds a line break or NUL byte")
        if self.private_key is not None:
            if not self.known_host_keys:
                raise ValueError("an SSH key needs the server's known_host_keys (an unknown "
                                 "host is never trusted on first use)")
            load_client_key(self.private_key.get_secret_value(),  # ValueError saying why
                            self.passphrase.get_secret_value() if self.passphrase else None)
        return self

    @property
    def kind(self) -> str:
        return "ssh" if self.private_key is not None else "https"

    def engine_credentials(self) -> EngineCredentials:
        """The values the git adapter authenticates with."""
        return EngineCredentials(
            username=self.username or "",
            token=self.token.get_secret_value() if self.token else "",
            private_key=self.private_key.get_secret_value() if self.private_key else "",
            passphrase=self.passphrase.get_secret_value() if self.passphrase else "",
            known_hosts=tuple(self.known_host_keys),
        )

    def secret_values(self) -> list[tuple[str, str]]:
        """(what, value) of every secret the block holds, for the run's masker."""
        found = []
        for what, value in (("its token", self.token), ("its private key", self.private_key),
                            ("its key passphrase", self.passphrase)):
            if value is not None and value.get_secret_value():
                found.append((what, value.get_secret_value()))
        return found
