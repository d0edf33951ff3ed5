"""Host keys and client keys for SSH: parsed from the text a user gives, errors that say which
line is wrong (no asyncssh exception reaches a user)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
             "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-dss")


_CERT_SUFFIX = "-cert-v01@openssh.com"
DEFAULT_PORT = 22


@dataclass(frozen=True)
class HostKeys:
    """The keys a connection to one host:port trusts, and those it must refuse."""

    trusted: tuple[Any, ...]
    revoked: tuple[Any, ...]


def lookup_name(hostname: str, port: int) -> str:
    """The name OpenSSH looks a host up under in known_hosts: ``host`` on port 22,
    ``[host]:port`` on any other port (a line for ``host`` alone is for port 22 only)."""
    return hostname if port == DEFAULT_PORT else f"[{hostname}]:{port}"


def _import_key(line: str, key_type: str, data: str) -> Any:
    import asyncssh  # noqa: PLC0415 - heavy; only where keys are used

    try:
        return asyncssh.import_public_key(f"{key_type} {data}")
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(f"unreadable public host key {line[:60]!r}: {exc}") from None


def host_keys(lines: list[str], hostname: str, port: int = DEFAULT_PORT) -> HostKeys:
    """The host keys ``lines`` trust for ``hostname`` on ``port``.

    A bare key line (``ssh-ed25519 AAAA... [comment]``, as in the server's ``*.pub`` file) is
    trusted as given. A known_hosts line (ssh-keyscan output, ``~/.ssh/known_hosts``) counts
    only if its host patterns match, as OpenSSH matches them (asyncssh's matcher: hashed
    ``|1|salt|hash`` entries, ``[host]:port``, wildcards, ``!`` negation); a ``@revoked`` line
    that matches removes its key whatever other line trusts it. The host is matched by the
    name the block gives, never by a DNS lookup.

    Raises:
        ValueError: a line that holds no readable public key, a ``@cert-authority`` line that
            matches the host (host certificates are not supported), or no trusted key left.
    """
    import asyncssh  # noqa: PLC0415

    bare: list[Any] = []
    known: list[str] = []
    for entry in lines:
        for raw in str(entry).splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            at = next((i for i, f in enumerate(fields)
                       if f in KEY_TYPES or f.endswith(_CERT_SUFFIX)), None)
            if at is None or at + 1 >= len(fields):
                raise ValueError(f"not a public host key: {line[:60]!r} (expected a line like "
                                 "'ssh-ed25519 AAAA...', as in the server's *.pub file or "
                                 "`ssh-keyscan` output)")
            if fields[at].endswith(_CERT_SUFFIX):
                known.append(line)  # only ever trusted through @cert-authority: refused below
                continue
            key = _import_key(line, fields[at], fields[at + 1])
            if at == 0:
                bare.append(key)
            else:
                known.append(line)
    name = lookup_name(hostname, port)
    trusted, revoked = list(bare), []
    if known:
        try:
            table = asyncssh.import_known_hosts("\n".join(known))
        except ValueError as exc:
            raise ValueError(f"known_hosts lines: {exc}") from None
        # `name` already carries the port, and no port is passed: asyncssh would fall back to
        # the port-less line on another port, which OpenSSH never does.
        matched, authorities, revoked, *_ = table.match(name, "", None)
        if authorities:
            raise ValueError(f"a @cert-authority line matches {name}: host certificates are "
                             "not supported; give the host's own public key instead")
        trusted += matched
    revoked_data = {k.public_data for k in revoked}
    kept = [k for k in trusted if k.public_data not in revoked_data]
    if not kept:
        if trusted:
            raise ValueError(f"every host key given for {name} is @revoked")
        if known:
            raise ValueError(f"no known_hosts line names {name} (the block's host and port; "
                             "a line for the host alone is for port 22 only, as in OpenSSH): "
                             "give that host's own key")
        raise ValueError("no host key given: the server's public key is required (an unknown "
                         "host is never trusted on first use)")
    return HostKeys(trusted=tuple(kept), revoked=tuple(revoked))


def load_client_key(text: str, passphrase: str | None) -> Any:
    """The private key ``text`` (OpenSSH or PEM), decrypted with ``passphrase``.

    Raises:
        ValueError: not a private key, or the passphrase is missing or wrong (never says
            more of the key than that).
    """
    import asyncssh  # noqa: PLC0415

    try:
        return asyncssh.import_private_key(text, passphrase)
    except asyncssh.KeyEncryptionError:
        raise ValueError("the private key is encrypted and the passphrase is missing or "
                         "wrong") from None
    except (asyncssh.KeyImportError, ValueError, TypeError) as exc:
        if "passphrase" in str(exc).lower():
            raise ValueError("the private key is encrypted and the passphrase is missing or "
                             "wrong") from None
        raise ValueError("the private key is not readable (expected an OpenSSH or PEM private "
                         "key)") from None


def fingerprint(key: Any) -> str:
    """The SHA256 fingerprint of a key, as OpenSSH prints it."""
    return key.get_fingerprint("sha256")
