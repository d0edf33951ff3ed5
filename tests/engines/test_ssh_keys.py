"""Which host keys a block's known_host_keys trust for its host and port: OpenSSH's
known_hosts matching (host patterns, hashed names, `[host]:port`, negation, markers)."""

from __future__ import annotations

import subprocess

import asyncssh
import pytest

from ansflow.engines.ssh_keys import host_keys


def _key() -> str:
    public = asyncssh.generate_private_key("ssh-ed25519").convert_to_public()
    return public.export_public_key().decode().strip()


def _trusted(lines: list[str], host: str, port: int = 22) -> set[str]:
    return {k.export_public_key().decode().strip()
            for k in host_keys(lines, host, port).trusted}


def test_bare_key_lines_are_trusted_as_given():
    a = _key()
    assert _trusted([a + " root@web"], "anything", 2222) == {a}


def test_another_hosts_line_is_not_trusted():
    mine, theirs = _key(), _key()
    text = f"db.example.com {theirs}\nweb.example.com,10.0.0.5 {mine}\n"
    assert _trusted([text], "web.example.com") == {mine}
    assert _trusted([text], "10.0.0.5") == {mine}
    with pytest.raises(ValueError, match="no known_hosts line names other.example.com"):
        host_keys([text], "other.example.com")


def test_port_form_is_honoured():
    k22, k2222 = _key(), _key()
    text = f"web {k22}\n[web]:2222 {k2222}\n"
    assert _trusted([text], "web") == {k22}
    assert _trusted([text], "web", 2222) == {k2222}
    # OpenSSH never falls back to the port-less line on another port
    with pytest.raises(ValueError, match=r"no known_hosts line names \[web\]:2200 .*port 22"):
        host_keys([text], "web", 2200)


def test_hashed_entry_is_matched(tmp_path):
    mine, theirs = _key(), _key()
    path = tmp_path / "known_hosts"
    path.write_text(f"web.example.com {mine}\n[web.example.com]:2222 {theirs}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(path)], check=True,
                   capture_output=True)
    hashed = path.read_text()
    assert "web.example.com" not in hashed and hashed.startswith("|1|")
    assert _trusted([hashed], "web.example.com") == {mine}
    assert _trusted([hashed], "web.example.com", 2222) == {theirs}
    with pytest.raises(ValueError, match="no known_hosts line names"):
        host_keys([hashed], "db.example.com")


def test_wildcards_and_negation():
    k = _key()
    text = f"*.example.com,!db.example.com {k}\n"
    assert _trusted([text], "web.example.com") == {k}
    with pytest.raises(ValueError, match="no known_hosts line names db.example.com"):
        host_keys([text], "db.example.com")


def test_revoked_is_refused_even_if_another_line_trusts_it():
    bad, good = _key(), _key()
    text = f"web {bad}\nweb {good}\n@revoked * {bad}\n"
    keys = host_keys([text], "web")
    assert _trusted([text], "web") == {good}
    assert [k.export_public_key().decode().strip() for k in keys.revoked] == [bad]
    # a bare line naming the revoked key does not bring it back
    assert _trusted([bad, f"@revoked web {bad}", good], "web") == {good}
    with pytest.raises(ValueError, match="every host key given for web is @revoked"):
        host_keys([f"web {bad}\n@revoked web {bad}"], "web")
    # a revoked line alone trusts nothing
    with pytest.raises(ValueError, match="no known_hosts line names web"):
        host_keys([f"@revoked web {bad}"], "web")


def test_cert_authority_is_refused_clearly():
    ca, other = _key(), _key()
    with pytest.raises(ValueError, match="@cert-authority line matches web.*not supported"):
        host_keys([f"@cert-authority *.example.com,web {ca}\nweb {other}"], "web")
    # another host's authority line in a whole known_hosts file is none of this host's
    assert _trusted([f"@cert-authority *.corp {ca}\nweb {other}"], "web") == {other}


def test_bad_lines_say_which():
    with pytest.raises(ValueError, match="not a public host key: 'hello world'"):
        host_keys(["hello world"], "web")
    with pytest.raises(ValueError, match="unreadable public host key"):
        host_keys(["web ssh-ed25519 AAAA"], "web")
    with pytest.raises(ValueError, match="known_hosts lines: Invalid known hosts marker"):
        host_keys([f"@trusted web {_key()}"], "web")
    with pytest.raises(ValueError, match="no host key given"):
        host_keys(["# only a comment"], "web")
