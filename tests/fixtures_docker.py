"""Docker engine and registry fixtures: the real engine, two real registries, a base image.

When DOCKER_HOST / ANSFLOW_TEST_REGISTRY / ANSFLOW_TEST_AUTH_REGISTRY are not set (set-up
script not sourced), `scripts/docker-services.sh start` starts (or re-uses) them. The base
image is `FROM scratch` plus Debian's busybox-static: nothing is pulled.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "ansflow-test/busybox:latest"
_KEYS = ("DOCKER_HOST", "ANSFLOW_TEST_REGISTRY", "ANSFLOW_TEST_AUTH_REGISTRY",
         "ANSFLOW_TEST_REGISTRY_USER", "ANSFLOW_TEST_REGISTRY_PASSWORD")


@dataclass(frozen=True)
class DockerEnv:
    """The engine and registries the docker tests use."""

    host: str
    registry: str
    auth_registry: str
    user: str
    password: str


def _start_services() -> dict[str, str]:
    script = ROOT / "scripts" / "docker-services.sh"
    dump = f"import json, os; print(json.dumps({{k: os.environ.get(k, '') for k in {_KEYS!r}}}))"
    code = f'set -e; eval "$(bash {script} start)"; "{sys.executable}" -c "{dump}"'
    proc = subprocess.run(["bash", "-c", code], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"could not start the Docker engine / registries:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def docker_env() -> DockerEnv:
    """The real engine and registries (started by the set-up script when not running)."""
    values = {k: os.environ.get(k, "") for k in _KEYS}
    if not all(values.values()):
        values = _start_services()
        for key, value in values.items():
            os.environ[key] = value  # the suite's process only: executors read DOCKER_HOST
    return DockerEnv(values["DOCKER_HOST"], values["ANSFLOW_TEST_REGISTRY"],
                     values["ANSFLOW_TEST_AUTH_REGISTRY"], values["ANSFLOW_TEST_REGISTRY_USER"],
                     values["ANSFLOW_TEST_REGISTRY_PASSWORD"])


@pytest.fixture(scope="session")
def docker_api(docker_env: DockerEnv):
    """A low-level client for assertions (the code under test makes its own)."""
    import docker

    client = docker.DockerClient(base_url=docker_env.host, version="auto")
    yield client.api
    client.close()


def busybox_context() -> bytes:
    """A tar build context: busybox-static as /bin/busybox, its applets installed."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    dockerfile = (b'FROM scratch\nCOPY busybox /bin/busybox\n'
                  b'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
                  b'ENV PATH=/bin\nCMD ["sh"]\n')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(busybox, arcname="busybox")
    return buf.getvalue()


@pytest.fixture(scope="session")
def base_image(docker_api) -> str:
    """`ansflow-test/busybox:latest`, built locally from scratch (no pull)."""
    for event in docker_api.build(fileobj=io.BytesIO(busybox_context()), custom_context=True,
                                  tag=BASE_IMAGE, rm=True, forcerm=True, decode=True):
        if "error" in event:
            pytest.fail(f"building the busybox base image failed: {event['error']}")
    return BASE_IMAGE


@pytest.fixture
def step_logger(caplog) -> logging.Logger:
    """The logger test contexts write to, captured at INFO by caplog."""
    caplog.set_level(logging.INFO, logger="ansflow.test.step")
    return logging.getLogger("ansflow.test.step")


@pytest.fixture
def make_ctx(tmp_path: Path, step_logger) -> Callable[..., object]:
    """Build a StepContext for calling an executor directly (fresh run id per call)."""
    from ansflow.runtime.base import Masker, StepContext

    def make(step_type: str = "docker_run", *, timeout: float | None = None,
             secrets: list[str] | None = None, logger=None, **kw) -> StepContext:
        fields = dict(pipeline="docker-tests", run_id=f"test-{uuid.uuid4().hex[:12]}",
                      build_number=1, step_id=f"{step_type}-step", step_name=step_type,
                      stage="test", step_type=step_type, workspace=str(tmp_path),
                      timeout=timeout, masker=Masker(secrets or []),
                      logger=logger or step_logger)
        fields.update(kw)
        return StepContext(**fields)

    return make


def count_run_containers(docker_api, run_id: str) -> int:
    """How many containers (any state) carry this run's ansflow label."""
    return len(docker_api.containers(all=True, filters={"label": f"ansflow.dev/run-id={run_id}"}))
