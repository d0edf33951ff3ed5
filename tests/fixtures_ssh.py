"""SSH fixtures: the private sshd of scripts/sshd.sh (a real OpenSSH server on a loopback
port, its own host and user keys), and SshHost blocks saved for it.

When ANSFLOW_SSHD_PORT / _KEY / _HOST_KEY_PUB are not set (set-up not sourced),
`scripts/sshd.sh start` starts (or re-uses) it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_KEYS = ("ANSFLOW_SSHD_PORT", "ANSFLOW_SSHD_USER", "ANSFLOW_SSHD_KEY",
         "ANSFLOW_SSHD_HOST_KEY_PUB", "ANSFLOW_SSHD_DIR")


@dataclass(frozen=True)
class Sshd:
    """The private sshd the remote and Ansible tests use."""

    port: int
    user: str
    key: Path  # the user's private key (authorized)
    host_key_pub: Path
    state: Path

    @property
    def host_key(self) -> str:
        return self.host_key_pub.read_text().strip()

    def master_pid(self) -> int:
        return int((self.state / "sshd.pid").read_text().strip())

    def kill_sessions(self, marker: str) -> int:
        """SIGKILL the per-connection sshd processes serving a command whose command line
        holds ``marker`` (a dropped connection); how many. Only those: the sshd is shared
        by every test worker, and another worker's sessions must live on."""
        master = self.master_pid()
        found = subprocess.run(["pgrep", "-f", marker], capture_output=True,
                               text=True).stdout.split()
        sessions = set()
        for pid in map(int, found):
            while pid > 1:
                parent = _parent(pid)
                if parent == master:
                    sessions.add(pid)
                    break
                if parent is None:
                    break
                pid = parent
        for pid in sessions:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(sessions)

    def block(self, **overrides):
        """An SshHost block for this server (not saved)."""
        from pydantic import SecretStr

        from ansflow.blocks.ssh import SshHost

        values = dict(hostname="127.0.0.1", port=self.port, username=self.user,
                      private_key=SecretStr(self.key.read_text()),
                      known_host_keys=[self.host_key])
        values.update(overrides)
        return SshHost(**values)


def _parent(pid: int) -> int | None:
    """The parent of ``pid`` (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _start() -> dict[str, str]:
    script = ROOT / "scripts" / "sshd.sh"
    dump = f"import json, os; print(json.dumps({{k: os.environ.get(k, '') for k in {_KEYS!r}}}))"
    code = f'set -e; eval "$(bash {script} start)"; "{sys.executable}" -c "{dump}"'
    proc = subprocess.run(["bash", "-c", code], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"could not start the private sshd:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def sshd() -> Sshd:
    """The private sshd (started by scripts/sshd.sh when it does not run)."""
    values = {k: os.environ.get(k, "") for k in _KEYS}
    state = Path(values["ANSFLOW_SSHD_DIR"]) if values["ANSFLOW_SSHD_DIR"] else None
    alive = False
    if state is not None and (state / "sshd.pid").exists():
        try:
            os.kill(int((state / "sshd.pid").read_text()), 0)
            alive = True
        except (OSError, ValueError):
            alive = False
    if not all(values.values()) or not alive:
        values = _start()
    return Sshd(port=int(values["ANSFLOW_SSHD_PORT"]), user=values["ANSFLOW_SSHD_USER"],
                key=Path(values["ANSFLOW_SSHD_KEY"]),
                host_key_pub=Path(values["ANSFLOW_SSHD_HOST_KEY_PUB"]),
                state=Path(values["ANSFLOW_SSHD_DIR"]))


@pytest.fixture(scope="session")
def ssh_host(sshd, prefect_server) -> str:
    """The name of a saved SshHost block for the private sshd."""
    name = f"test-sshd-{uuid.uuid4().hex[:8]}"
    sshd.block().save(name)
    return name


def other_key(tmp_path: Path) -> Path:
    """A fresh ed25519 key pair the server does not know (private key path)."""
    path = tmp_path / f"other-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def remote_processes(marker: str) -> list[str]:
    """The command lines of live processes holding ``marker`` (the sshd runs here)."""
    time.sleep(0.2)
    out = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]
