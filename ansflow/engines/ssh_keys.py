"""Host keys and client keys for SSH: parsed from the text a user gives, errors that say which
line is wrong (no asyncssh exception reaches a user)."""

from __future__ import annotations

from typing import Any

KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
             "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-dss")


def parse_known_keys(lines: list[str]) -> list[Any]:
    """The host public keys in ``lines`` (a known_hosts line, a ``*.pub`` line, or several
    lines in one string), as asyncssh keys.

    Raises:
        ValueError: no key at all, or a line that holds no readable public key.
    """
    import asyncssh  # noqa: PLC0415 - heavy; only where keys are used

    keys: list[Any] = []
    for entry in lines:
        for raw in str(entry).splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            at = next((i for i, f in enumerate(fields) if f in KEY_TYPES), None)
            if at is None or at + 1 >= len(fields):
                raise ValueError(f"not a public host key: {line[:60]!r} (expected a line like "
                                 "'ssh-ed25519 AAAA...', as in the server's *.pub file or "
                                 "`ssh-keyscan` output)")
            try:
                keys.append(asyncssh.import_public_key(f"{fields[at]} {fields[at + 1]}"))
            except (asyncssh.KeyImportError, ValueError) as exc:
                raise ValueError(f"unreadable public host key {line[:60]!r}: {exc}") from None
    if not keys:
        raise ValueError("no host key given: the server's public key is required (an unknown "
                         "host is never trusted on first use)")
    return keys


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
