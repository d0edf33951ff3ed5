"""Key material a worker writes to files (decrypted SSH keys of ansible steps, cluster client
keys) lives in the process's private directory, which the reaper removes when the process
dies, SIGKILL included; ANSFLOW_HOME is 0700 and the store 0600."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ansflow.engines.reaper import private_dir


def _gone(path: Path, within: float = 20) -> bool:
    deadline = time.monotonic() + within
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not path.exists()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_private_dir_is_this_users_alone():
    path = Path(private_dir())
    assert path.parent == Path(tempfile.gettempdir())
    assert _mode(path) == 0o700 and path.lstat().st_uid == os.getuid()
    assert private_dir() == str(path)  # one per process


def test_kube_client_key_goes_with_a_sigkilled_process(tmp_path):
    """A real process builds an ApiClient with a client key (written to a file for the TLS
    stack) and is SIGKILLed: no Python finalizer runs, the reaper removes the file."""
    code = (
        "import sys, time\n"
        "from ansflow.engines.kube import build_api_client\n"
        "client = build_api_client(server='https://127.0.0.1:1', client_cert='CERT',\n"
        "                          client_key='-----BEGIN PRIVATE KEY-----\\nx\\n')\n"
        "print(client.configuration.key_file, flush=True)\n"
        "time.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        key_file = Path(proc.stdout.readline().strip())
        assert key_file.name == "client.key" and key_file.read_text().startswith("-----BEGIN")
        assert key_file.parent.name.startswith("ansflow-kube-")
        assert key_file.parent.parent.name.startswith("ansflow-worker-")
    finally:
        proc.kill()
        proc.wait()
    assert _gone(key_file.parent.parent), "the private directory outlived its process"


def test_ansible_ssh_key_goes_with_a_sigkilled_run(prefect_server, ssh_host, tmp_path):
    """A real `ansflow run` SIGKILLed while its ansible step runs: the decrypted key file
    (`ansflow-ansible-*/keys/HOST`) was there mid-step and is gone afterwards."""
    step = f"keys_{uuid.uuid4().hex[:10]}"
    ready = tmp_path / "ready"
    (tmp_path / "slow.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        f"    - {{name: Ready, command: 'touch {ready}'}}\n"
        "    - {name: Wait, command: sleep 300}\n")
    (tmp_path / "p.yaml").write_text(f"""\
pipeline:
  name: leftovers
  steps:
    - id: {step}
      type: ansible
      config:
        playbook: slow.yml
        hosts: [{ssh_host}]
        ansible_cfg: {{defaults: {{interpreter_python: /usr/bin/python3}}}}
""")
    proc = subprocess.Popen([sys.executable, "-m", "ansflow.cli", "run", "p.yaml", "--json"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    pattern = f"ansflow-worker-*/ansflow-ansible-{step}-*/keys/{ssh_host}"
    try:
        deadline = time.monotonic() + 180
        while not ready.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        keys = list(Path(tempfile.gettempdir()).glob(pattern))
        assert len(keys) == 1, keys
        assert "PRIVATE KEY" in keys[0].read_text() and _mode(keys[0]) == 0o600
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _gone(keys[0].parent.parent.parent), "the private directory outlived its process"
    assert not list(Path(tempfile.gettempdir()).glob(f"**/ansflow-ansible-{step}-*"))
    assert not list(Path(tempfile.gettempdir()).glob(f"ansflow-ansible-{step}-*"))


def test_home_is_0700_and_the_store_0600(tmp_path, monkeypatch):
    """Made under a permissive umask, or left wider by an earlier release: tightened."""
    from ansflow.serving import state_key
    from ansflow.store import Store

    monkeypatch.delenv("ANSFLOW_DATABASE_URL", raising=False)
    old_umask = os.umask(0o022)
    try:
        home = tmp_path / "new" / "home"
        monkeypatch.setenv("ANSFLOW_HOME", str(home))
        store = Store()
        store.next_build_number("p")
        db = home / "ansflow.db"
        assert _mode(home) == 0o700
        assert _mode(db) == 0o600
        for extra in (home / "ansflow.db-wal", home / "ansflow.db-shm"):
            assert not extra.exists() or _mode(extra) == 0o600, extra
        store.engine.dispose()

        old = tmp_path / "old"
        old.mkdir(mode=0o755)
        sqlite3.connect(old / "ansflow.db").close()
        os.chmod(old / "ansflow.db", 0o644)
        monkeypatch.setenv("ANSFLOW_HOME", str(old))
        state_key()  # the served map's key: the home is made 0700 there too
        assert _mode(old) == 0o700
        Store().engine.dispose()
        assert _mode(old / "ansflow.db") == 0o600
        assert _mode(old / "state.key") == 0o600
    finally:
        os.umask(old_umask)
