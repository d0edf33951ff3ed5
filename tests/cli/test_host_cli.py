"""`ansflow host add / list / check` against the suite's Prefect server and private sshd."""

from __future__ import annotations

import uuid

from fixtures_ssh import other_key
from typer.testing import CliRunner

from ansflow.cli.app import app

runner = CliRunner()


def _cli(*args: str, env: dict | None = None):
    result = runner.invoke(app, list(args), env=env)
    assert "Traceback" not in result.output
    return result


def _add(sshd, name: str, *extra: str, key=None, host_key=None):
    return _cli("host", "add", name, "--hostname", "127.0.0.1", "--port", str(sshd.port),
                "--user", sshd.user, "--key-file", str(key or sshd.key),
                "--known-host-key", host_key or sshd.host_key, *extra)


def test_add_list_check(sshd, prefect_server):
    name = f"cli-{uuid.uuid4().hex[:6]}"
    out = _add(sshd, name)
    assert out.exit_code == 0, out.output
    assert f"saved host {name!r} ({sshd.user}@127.0.0.1:{sshd.port}, key)" in out.output
    again = _add(sshd, name)
    assert again.exit_code == 1 and "pass --overwrite" in again.output
    listed = _cli("host", "list")
    assert listed.exit_code == 0
    row = next(line for line in listed.output.splitlines() if line.startswith(name))
    assert "key" in row and f"127.0.0.1:{sshd.port}" in row
    checked = _cli("host", "check", name)
    assert checked.exit_code == 0, checked.output
    assert "network: ok\nhost key: ok\nauthentication: ok" in checked.output
    assert sshd.key.read_text().splitlines()[1] not in listed.output + checked.output


def test_check_says_which_part_fails(sshd, prefect_server, tmp_path):
    wrong_host = other_key(tmp_path)
    name = f"cli-hk-{uuid.uuid4().hex[:6]}"
    assert _add(sshd, name, host_key=(tmp_path / (wrong_host.name + ".pub")).read_text()
                ).exit_code == 0
    out = _cli("host", "check", name)
    assert out.exit_code == 1
    assert "network: ok" in out.output and "host key: FAILED" in out.output
    assert "authentication" not in out.output

    name = f"cli-auth-{uuid.uuid4().hex[:6]}"
    assert _add(sshd, name, key=other_key(tmp_path)).exit_code == 0
    out = _cli("host", "check", name)
    assert out.exit_code == 1
    assert "host key: ok" in out.output and "authentication: FAILED" in out.output

    name = f"cli-net-{uuid.uuid4().hex[:6]}"
    assert _cli("host", "add", name, "--hostname", "127.0.0.1", "--port", "1", "--user", "x",
                "--key-file", str(sshd.key), "--known-host-key", sshd.host_key).exit_code == 0
    out = _cli("host", "check", name)
    assert out.exit_code == 1 and "network: FAILED" in out.output


def test_add_refuses_bad_input(sshd, prefect_server, tmp_path):
    out = _cli("host", "add", "x", "--hostname", "h", "--user", "u", "--key-file",
               str(sshd.key))
    assert out.exit_code == 1 and "never trusted on first use" in out.output
    out = _cli("host", "add", "x", "--hostname", "h", "--user", "u", "--key-file",
               str(tmp_path / "missing"), "--known-host-key", sshd.host_key)
    assert out.exit_code == 1 and "cannot read the key file" in out.output
    out = _cli("host", "add", "x", "--hostname", "h", "--user", "u",
               "--known-host-key", sshd.host_key, "--password-env", "ANSFLOW_NO_SUCH_VAR")
    assert out.exit_code == 1 and "ANSFLOW_NO_SUCH_VAR is not set" in out.output
    out = _cli("host", "check", f"nothing-{uuid.uuid4().hex[:6]}")
    assert out.exit_code == 1 and "no saved SSH host block named" in out.output
    name = f"cli-pw-{uuid.uuid4().hex[:6]}"
    out = _cli("host", "add", name, "--hostname", "127.0.0.1", "--user", "u",
               "--known-host-key", sshd.host_key, "--password-env", "PW",
               env={"PW": "a-long-password"})
    assert out.exit_code == 0 and "password" in out.output and "a-long-password" not in out.output


def _add_file(sshd, name: str, text: str, tmp_path):
    path = tmp_path / f"known_hosts-{name}"
    path.write_text(text)
    return _cli("host", "add", name, "--hostname", "127.0.0.1", "--port", str(sshd.port),
                "--user", sshd.user, "--key-file", str(sshd.key), "--known-hosts-file",
                str(path))


def test_check_refuses_another_hosts_line(sshd, prefect_server, tmp_path):
    real = " ".join(sshd.host_key.split()[:2])
    wrong = (tmp_path / (other_key(tmp_path).name + ".pub")).read_text().strip()
    me = f"[127.0.0.1]:{sshd.port}"
    # a whole known_hosts file: the sshd's real key is there, but under another host's name
    name = f"cli-kh-{uuid.uuid4().hex[:6]}"
    out = _add_file(sshd, name, f"db.example.com {real}\n{me} {wrong}\n", tmp_path)
    assert out.exit_code == 0, out.output
    out = _cli("host", "check", name)
    assert out.exit_code == 1 and "host key: FAILED" in out.output, out.output
    out = _add_file(sshd, f"cli-kh-{uuid.uuid4().hex[:6]}", f"db.example.com {real}\n",
                    tmp_path)
    assert out.exit_code == 1 and f"no known_hosts line names {me}" in out.output


def test_check_refuses_a_revoked_key(sshd, prefect_server, tmp_path):
    real = " ".join(sshd.host_key.split()[:2])
    wrong = (tmp_path / (other_key(tmp_path).name + ".pub")).read_text().strip()
    me = f"[127.0.0.1]:{sshd.port}"
    name = f"cli-rv-{uuid.uuid4().hex[:6]}"
    out = _add_file(sshd, name, f"{me} {real}\n{me} {wrong}\n@revoked * {real}\n", tmp_path)
    assert out.exit_code == 0, out.output
    out = _cli("host", "check", name)
    assert out.exit_code == 1 and "host key: FAILED" in out.output, out.output
    # the only line trusting the key is revoked: refused when saved...
    out = _add_file(sshd, f"cli-rv-{uuid.uuid4().hex[:6]}",
                    f"{sshd.host_key}\n@revoked {me} {real}\n", tmp_path)
    assert out.exit_code == 1 and f"every host key given for {me} is @revoked" in out.output
    # ...and when a block saved without that check (an older ansflow, the API) is checked
    from ansflow.blocks.ssh import SshHost

    stored = sshd.block()
    name = f"cli-rv-{uuid.uuid4().hex[:6]}"
    SshHost.model_construct(**{**dict(stored), "known_host_keys": [
        f"{sshd.host_key}\n@revoked {me} {real}"]}).save(name)
    out = _cli("host", "check", name)
    assert out.exit_code == 1 and "is @revoked" in out.output, out.output
    assert "network: ok" not in out.output
