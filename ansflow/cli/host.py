"""`ansflow host`: saved SSH hosts (SshHost Prefect blocks) for remote and Ansible steps.

Secrets never go on the command line (where `ps` and shell history see them): the private
key comes from a file, a passphrase or password from an environment variable named by an
option, or from a hidden prompt.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ansflow.cli.common import fail as _fail
from ansflow.cli.common import list_blocks, save_block
from ansflow.errors import AnsflowError

app = typer.Typer(help="Manage saved SSH hosts (Prefect blocks) for remote and Ansible steps.",
                  no_args_is_help=True)

BLOCK_SLUG = "ansflow-ssh-host"


def _secret_from(env_name: str | None, ask: bool, what: str) -> str | None:
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            _fail(f"{what}: the environment variable {env_name} is not set or empty")
        return value
    if ask:
        return typer.prompt(what, hide_input=True)
    return None


def _read(path: Path, what: str) -> str:
    try:
        return path.expanduser().read_text()
    except OSError as exc:
        _fail(f"cannot read the {what} {path}: {exc.strerror}")
    except UnicodeDecodeError:
        _fail(f"the {what} {path} is not text")
    return ""


@app.command()
def add(
    name: str = typer.Argument(..., help="Block name (lowercase letters, digits, dashes)."),
    hostname: str = typer.Option(..., "--hostname", help="Host name or address."),
    user: str = typer.Option(..., "--user", help="User to log in as."),
    port: int = typer.Option(22, "--port", help="SSH port."),
    key_file: Path = typer.Option(None, "--key-file", help="Private key file to store."),
    passphrase_env: str = typer.Option(
        None, "--passphrase-env", help="Environment variable holding the key's passphrase."),
    ask_passphrase: bool = typer.Option(False, "--ask-passphrase",
                                        help="Prompt for the key's passphrase."),
    password_env: str = typer.Option(
        None, "--password-env", help="Environment variable holding the login password."),
    ask_password: bool = typer.Option(False, "--ask-password", help="Prompt for the password."),
    known_host_key: list[str] = typer.Option(
        None, "--known-host-key", help="The server's public host key ('ssh-ed25519 AAAA...'); "
                                       "repeat for several."),
    known_hosts_file: Path = typer.Option(
        None, "--known-hosts-file", help="A file of the server's host keys (a *.pub file, "
                                         "known_hosts lines or ssh-keyscan output)."),
    jump_host: str = typer.Option(None, "--jump-host", help="SshHost block to connect through."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing block."),
) -> None:
    """Save an SSH host as the SshHost block NAME (the host key is required)."""
    from pydantic import SecretStr, ValidationError

    from ansflow.blocks.ssh import SshHost
    from ansflow.engines.ssh_keys import load_client_key

    keys = list(known_host_key or [])
    if known_hosts_file is not None:
        keys.append(_read(known_hosts_file, "known hosts file"))
    if not keys:
        _fail(f"host {name!r}: give the server's host key (--known-host-key or "
              "--known-hosts-file): an unknown host is never trusted on first use")
    private_key = _read(key_file, "key file") if key_file is not None else None
    passphrase = _secret_from(passphrase_env, ask_passphrase, "key passphrase")
    password = _secret_from(password_env, ask_password, "password")
    if private_key is not None:
        try:
            load_client_key(private_key, passphrase)
        except ValueError as exc:
            _fail(f"host {name!r}: {key_file}: {exc}")
    try:
        block = SshHost(hostname=hostname, port=port, username=user,
                        private_key=SecretStr(private_key) if private_key else None,
                        passphrase=SecretStr(passphrase) if passphrase else None,
                        password=SecretStr(password) if password else None,
                        known_host_keys=keys, jump_host=jump_host)
    except ValidationError as exc:
        _fail(f"host {name!r}: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'block'}: {e['msg']}"
            for e in exc.errors()))
    save_block(block, "host", name, overwrite)
    typer.echo(f"saved host {name!r} ({block.address}, {block.auth_method}"
               f"{', via ' + jump_host if jump_host else ''})")


DEV_SSHD_ENV = ("ANSFLOW_SSHD_PORT", "ANSFLOW_SSHD_USER", "ANSFLOW_SSHD_KEY",
                "ANSFLOW_SSHD_HOST_KEY_PUB")


def dev_host_block():  # noqa: ANN201 - SshHost, imported late (Prefect)
    """An SshHost block for the private sshd of scripts/sshd.sh (its ANSFLOW_SSHD_* exports,
    which scripts/setup.sh writes to env.sh): loopback, its own user and host keys.

    Raises:
        AnsflowError: the variables are not set, or name files that cannot be read.
    """
    from pydantic import SecretStr

    from ansflow.blocks.ssh import SshHost

    missing = [k for k in DEV_SSHD_ENV if not os.environ.get(k)]
    if missing:
        raise AnsflowError(f"the private sshd is not known here ({', '.join(missing)} not "
                           "set): start it with `eval \"$(bash scripts/sshd.sh start)\"` or "
                           "source the set-up's env.sh")
    try:
        port = int(os.environ["ANSFLOW_SSHD_PORT"])
        key = Path(os.environ["ANSFLOW_SSHD_KEY"]).read_text()
        host_key = Path(os.environ["ANSFLOW_SSHD_HOST_KEY_PUB"]).read_text().strip()
    except ValueError:
        raise AnsflowError("ANSFLOW_SSHD_PORT is not a port number") from None
    except OSError as exc:
        raise AnsflowError(f"the private sshd's keys cannot be read: {exc.filename}: "
                           f"{exc.strerror}") from None
    return SshHost(hostname="127.0.0.1", port=port, username=os.environ["ANSFLOW_SSHD_USER"],
                   private_key=SecretStr(key), known_host_keys=[host_key])


@app.command("list")
def list_() -> None:
    """The saved host blocks: name, address, how they log in, jump host."""
    from ansflow.blocks.ssh import SshHost

    list_blocks(BLOCK_SLUG, "host", "ansflow host add", SshHost.load,
                [("AUTH", 16), ("JUMP", 16), ("ADDRESS", 0)],
                lambda b: (b.auth_method, b.jump_host or "-", b.address))


@app.command()
def check(name: str = typer.Argument(..., help="The host block's name.")) -> None:
    """Connect once: says whether the network, the host key or the authentication fails."""
    from ansflow.engines.ssh import SshAuthError, SshHostKeyError, SshNetworkError, check_host
    from ansflow.runtime.ssh_session import host_target

    try:
        target = host_target(name)
    except AnsflowError as exc:
        _fail(str(exc))
    try:
        answer = check_host(target, timeout=target.connect_timeout * 3 + 15)
    except SshNetworkError as exc:
        _fail(f"network: FAILED: {exc}")
    except SshHostKeyError as exc:
        typer.echo("network: ok")
        _fail(f"host key: FAILED: {exc}")
    except SshAuthError as exc:
        typer.echo("network: ok")
        typer.echo("host key: ok")
        _fail(f"authentication: FAILED: {exc}")
    except TimeoutError:
        _fail(f"network: FAILED: host {name!r}: no answer")
    typer.echo("network: ok")
    typer.echo("host key: ok")
    typer.echo(f"authentication: ok ({target.username}, {answer})")
    typer.echo(f"host {name!r}: reachable at {target.hostname}:{target.port}")
