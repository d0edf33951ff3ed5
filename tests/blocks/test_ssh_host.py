"""The SshHost block against the private sshd: strict host keys, which failure is which."""

from __future__ import annotations

import socket
import subprocess

import pytest
from fixtures_ssh import other_key
from pydantic import SecretStr, ValidationError

from ansflow.blocks.ssh import SshHost
from ansflow.engines.ssh import (
    SshAuthError,
    SshHostKeyError,
    SshNetworkError,
    Target,
    check_host,
)
from ansflow.masking import Masker
from ansflow.runtime.ssh_session import host_target


def _target(block: SshHost, name: str = "t") -> Target:
    return Target.from_block(name, block)


def test_host_key_is_required_and_checked(sshd):
    with pytest.raises(ValidationError, match="no host key given"):
        SshHost(hostname="h", username="u", password=SecretStr("pw-123456"), known_host_keys=[])
    with pytest.raises(ValidationError, match="not a public host key"):
        SshHost(hostname="h", username="u", password=SecretStr("pw-123456"),
                known_host_keys=["hello world"])
    with pytest.raises(ValidationError, match="private_key or a password"):
        SshHost(hostname="h", username="u", known_host_keys=[sshd.host_key])
    with pytest.raises(ValidationError, match="unreadable public host key"):
        SshHost(hostname="h", username="u", password=SecretStr("pw-123456"),
                known_host_keys=["ssh-ed25519 AAAA"])


def test_known_hosts_and_keyscan_lines_are_accepted(sshd):
    key = sshd.host_key
    fields = key.split()
    for line in (key, f"[127.0.0.1]:{sshd.port} {fields[0]} {fields[1]}",
                 f"# comment\n|1|x/4nX8jQ3mCfN8pOcRyl2jD6FfE=|AAAA {fields[0]} {fields[1]}\n"
                 f"[127.0.0.1]:{sshd.port},127.0.0.1 {fields[0]} {fields[1]}\n"):
        block = sshd.block(known_host_keys=[line])
        assert "Linux" in check_host(_target(block))
    # as in OpenSSH, a line for the host alone is for port 22, never the sshd's own port
    with pytest.raises(ValidationError, match=rf"no known_hosts line names \[127.0.0.1\]:"
                                              rf"{sshd.port}"):
        sshd.block(known_host_keys=[f"127.0.0.1 {fields[0]} {fields[1]}"])


def test_connects_and_runs(sshd):
    assert check_host(_target(sshd.block())).startswith("Linux")


def test_changed_host_key_is_refused(sshd, tmp_path):
    wrong = other_key(tmp_path).with_suffix(".pub")
    wrong = wrong if wrong.exists() else wrong.parent / (wrong.name + ".pub")
    block = sshd.block(known_host_keys=[wrong.read_text()])
    with pytest.raises(SshHostKeyError, match="host key refused") as info:
        check_host(_target(block))
    assert not isinstance(info.value, SshNetworkError)  # permanent: never retried


def test_wrong_client_key_is_refused(sshd, tmp_path):
    block = sshd.block(private_key=SecretStr(other_key(tmp_path).read_text()))
    with pytest.raises(SshAuthError, match="authentication failed: the server refused the "
                                           "private key"):
        check_host(_target(block))


def test_wrong_password_is_refused(sshd):
    block = sshd.block(private_key=None, password=SecretStr("not-the-password"))
    with pytest.raises(SshAuthError, match="authentication failed"):
        check_host(_target(block))


def test_encrypted_key_needs_its_passphrase(sshd, tmp_path):
    path = tmp_path / "enc"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass-phrase-1", "-f",
                    str(path)], check=True)
    block = sshd.block(private_key=SecretStr(path.read_text()))
    with pytest.raises(SshAuthError, match="passphrase is missing or wrong"):
        check_host(_target(block))
    # the right passphrase decrypts the key; the server still refuses it (not authorized)
    block = sshd.block(private_key=SecretStr(path.read_text()),
                       passphrase=SecretStr("pass-phrase-1"))
    with pytest.raises(SshAuthError, match="refused the private key"):
        check_host(_target(block))


def test_unreachable_port_is_a_network_error(sshd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SshNetworkError, match="network: cannot connect"):
        check_host(_target(sshd.block(port=port)))


def test_jump_host_and_secrets_masked(sshd, prefect_server):
    import uuid

    jump = f"jump-{uuid.uuid4().hex[:6]}"
    sshd.block().save(jump)
    masker = Masker()

    class Ctx:
        pass

    ctx = Ctx()
    ctx.masker = masker
    target = host_target(None, ctx, block=sshd.block(jump_host=jump))
    assert target.jump is not None and target.jump.name == jump
    assert "Linux" in check_host(target)
    key_line = sshd.key.read_text().splitlines()[1]
    assert key_line not in masker(f"x {key_line} y")


def test_jump_cycle_is_refused(sshd, prefect_server):
    import uuid

    a, b = f"cyc-a-{uuid.uuid4().hex[:6]}", f"cyc-b-{uuid.uuid4().hex[:6]}"
    sshd.block(jump_host=b).save(a)
    sshd.block(jump_host=a).save(b)
    from ansflow.errors import StepFailed

    with pytest.raises(StepFailed, match="jump hosts form a cycle"):
        host_target(a)


def test_a_refused_block_never_repeats_its_secrets():
    """pydantic shows the whole input of a failed validation by default: the password and the
    private key would be in the error a user sees (and logs)."""
    from pydantic import ValidationError

    from ansflow.blocks.ssh import SshHost

    with pytest.raises(ValidationError) as err:
        SshHost(hostname="h", username="u", known_host_keys=[], password="hunter2-secret",
                private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-key-text\n")
    text = str(err.value)
    assert "no host key" in text
    assert "hunter2-secret" not in text and "secret-key-text" not in text
