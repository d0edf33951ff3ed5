"""Suite-wide set-up: one real Prefect server for the whole run, homes in temp dirs.

The environment is set at import time, before anything imports Prefect (Prefect freezes its
settings on import). The server starts in the background right away; tests that talk to it
request the `prefect_server` fixture, which waits until it answers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
pytest_plugins = ["fixtures_docker", "fixtures_git", "fixtures_k8s", "fixtures_pipeline",
                  "fixtures_ssh"]

_TMP = Path(tempfile.mkdtemp(prefix="ansflow-tests-"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_PORT = _free_port()
_ENV = {
    "PREFECT_HOME": str(_TMP / "prefect"),
    "PREFECT_API_URL": f"http://127.0.0.1:{_PORT}/api",
    "PREFECT_SERVER_API_HOST": "127.0.0.1",
    "PREFECT_SERVER_API_PORT": str(_PORT),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": os.environ.get("PREFECT_SERVER_UI_ENABLED", "true"),
    "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.2",
    "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    "ANSFLOW_HOME": str(_TMP / "ansflow"),
    # Most tests look at the files their steps write in the pipeline's folder: they run in
    # place. The per-run workspace (the default) has its own tests, which set "per-run";
    # ANSFLOW_TEST_WORKSPACE_MODE=per-run runs the whole suite that way.
    "ANSFLOW_WORKSPACE_MODE": os.environ.get("ANSFLOW_TEST_WORKSPACE_MODE", "in-place"),
}
os.environ.update(_ENV)
if os.environ.get("ANSFLOW_TEST_DATABASE_URL"):
    # The second run of the suite: Prefect's and ansflow's databases on PostgreSQL.
    os.environ["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = os.environ[
        "ANSFLOW_TEST_PREFECT_DATABASE_URL"
    ]
    os.environ["ANSFLOW_DATABASE_URL"] = os.environ["ANSFLOW_TEST_DATABASE_URL"]

_SERVER_LOG = _TMP / "prefect-server.log"


def _xdist_controller() -> bool:
    """True in pytest-xdist's controller process (`-n N`): it runs no test, so it needs no
    server; each worker imports this module too and starts its own."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return False
    args = sys.argv[1:]
    workers = None  # the value of the last -n / --numprocesses option
    for i, a in enumerate(args):
        if a in ("-n", "--numprocesses"):
            workers = args[i + 1] if i + 1 < len(args) else None
        elif a.startswith("--numprocesses="):
            workers = a.split("=", 1)[1]
        elif a.startswith("-n") and len(a) > 2 and a[2:].isalnum():
            workers = a[2:]
    return workers is not None and workers != "0"


_server = subprocess.Popen(
    [sys.executable, "-c", "pass"] if _xdist_controller()
    else [sys.executable, "-m", "prefect", "server", "start", "--no-services"]
    if os.environ.get("ANSFLOW_TEST_SERVER_NO_SERVICES")
    else [sys.executable, "-m", "prefect", "server", "start"],
    stdout=_SERVER_LOG.open("wb"),
    stderr=subprocess.STDOUT,
    start_new_session=True,
)


def _wait_healthy(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _server.poll() is not None:
            raise RuntimeError(
                f"prefect server exited ({_server.returncode}):\n{_SERVER_LOG.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"prefect server not healthy after {timeout}s")


@pytest.fixture(scope="session")
def prefect_server() -> str:
    """The API URL of the suite's real Prefect server (already in PREFECT_API_URL)."""
    _wait_healthy(_ENV["PREFECT_API_URL"], 300)  # a busy 2-core machine
    return _ENV["PREFECT_API_URL"]


@pytest.fixture(scope="session")
def tmp_home() -> Path:
    """The suite's temp root (PREFECT_HOME and ANSFLOW_HOME live below it)."""
    return _TMP


def pytest_unconfigure(config: pytest.Config) -> None:
    if "prefect" in sys.modules:  # send buffered run logs while the server still listens
        try:
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=10)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
    if _server.poll() is None:
        _server.terminate()
        try:
            _server.wait(10)
        except subprocess.TimeoutExpired:
            _server.kill()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Work units for pytest-xdist's `--dist loadgroup` (scripts/test.sh): a whole file per
    worker (its module fixtures are set up once), and every test that uses the shared private
    sshd on one worker, since some cut that server's sessions on purpose. The tests of the dev
    cluster with a real node join them (the demo's uses both), so one real node (kubelet,
    containerd) serves them all instead of one per worker."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        group = "sshd+real-node" if names & {"sshd", "real_node_cluster"} else \
            item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
