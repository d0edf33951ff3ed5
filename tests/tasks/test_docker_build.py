"""docker_build against the real engine: outputs, live logs, builder errors, bad input."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from ansflow.engines.errors import EngineError
from ansflow.errors import EngineUnavailable, StepCancelled, StepFailed, StepTimedOut
from ansflow.spec.steps import DockerBuildConfig
from ansflow.tasks.docker_build import check_context, execute_docker_build, plan_build

pytestmark = pytest.mark.docker


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


class Timestamps(logging.Handler):
    """Records (time, message) of every log line, to prove lines arrive while building."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((time.monotonic(), record.getMessage()))


def containers_of(docker_api, marker: str) -> set[str]:
    """The engine's containers (any state) whose command holds ``marker``: this test's own
    intermediate build containers, not those of tests running beside it on the shared engine."""
    return {c["Id"] for c in docker_api.containers(all=True) if marker in (c.get("Command") or "")}


def test_build_outputs_image_and_id_and_streams_lines_live(make_ctx, base_image, docker_api):
    ctx = make_ctx("docker_build")
    write(Path(ctx.workspace) / "Dockerfile",
          f"FROM {base_image}\nRUN echo first-line && sleep 2 && echo second-line\n")
    handler = Timestamps()
    ctx.logger.addHandler(handler)
    try:
        result = execute_docker_build(ctx, DockerBuildConfig(
            image_name="ansflow-test/built", tag="t1", no_cache=True))
        done = time.monotonic()
    finally:
        ctx.logger.removeHandler(handler)
    assert result.outputs["image"] == "ansflow-test/built:t1"
    assert result.outputs["image_id"] == docker_api.inspect_image("ansflow-test/built:t1")["Id"]
    first = next(t for t, m in handler.seen if m == "first-line")
    assert done - first > 1.5, "build output must reach the log while the build runs"
    assert any(m.startswith("Step 2/2 : RUN") for _, m in handler.seen)


def test_seed_shaped_config_defaults_tag_latest(make_ctx, base_image, docker_api):
    ctx = make_ctx("docker_build")
    write(Path(ctx.workspace) / "Dockerfile", f"FROM {base_image}\nCMD [\"true\"]\n")
    result = execute_docker_build(ctx, DockerBuildConfig(dockerfile="./Dockerfile",
                                                         image_name="ansflow-test/seed"))
    assert result.outputs["image"] == "ansflow-test/seed:latest"


def test_build_args_target_labels_extra_tags_and_outside_dockerfile(make_ctx, base_image,
                                                                   docker_api):
    ctx = make_ctx("docker_build")
    ws = Path(ctx.workspace)
    write(ws / "app" / "payload.txt", "payload\n")
    write(ws / "docker" / "app.Dockerfile",
          f"FROM {base_image} AS base\nARG GREETING=none\n"
          "RUN echo \"greeting=$GREETING\" > /greeting\nCOPY payload.txt /payload.txt\n"
          f"FROM {base_image} AS other\nRUN exit 9\n")
    result = execute_docker_build(ctx, DockerBuildConfig(
        image_name="ansflow-test/multi", tag="a", tags=["b"], dockerfile="docker/app.Dockerfile",
        context="app", build_args={"GREETING": "hello"}, target="base",
        labels={"org.example.team": "ci"}))
    info = docker_api.inspect_image(result.outputs["image_id"])
    assert {"ansflow-test/multi:a", "ansflow-test/multi:b"} <= set(info["RepoTags"])
    assert info["Config"]["Labels"]["org.example.team"] == "ci"
    assert result.outputs["tags"] == "ansflow-test/multi:a,ansflow-test/multi:b"


def test_failed_run_fails_with_the_builders_message(make_ctx, base_image, docker_api):
    ctx = make_ctx("docker_build")
    marker = f"about-to-fail-{uuid.uuid4().hex}"
    write(Path(ctx.workspace) / "Dockerfile",
          f"FROM {base_image}\nRUN echo {marker} && exit 7\n")
    with pytest.raises(StepFailed) as info:
        execute_docker_build(ctx, DockerBuildConfig(image_name="ansflow-test/fails"))
    assert "returned a non-zero code: 7" in str(info.value)
    assert not containers_of(docker_api, marker), "no intermediate container left"


def test_missing_base_image_is_a_clear_error(make_ctx):
    ctx = make_ctx("docker_build")
    write(Path(ctx.workspace) / "Dockerfile", "FROM 127.0.0.1:1/nowhere/none:1\n")
    with pytest.raises(StepFailed, match="docker build failed"):
        execute_docker_build(ctx, DockerBuildConfig(image_name="ansflow-test/nobase"))


def test_missing_dockerfile_and_context_fail_before_any_io(make_ctx):
    ctx = make_ctx("docker_build")
    nowhere = "unix:///nonexistent.sock"
    with pytest.raises(StepFailed, match="Dockerfile 'Dockerfile' not found"):
        execute_docker_build(ctx, DockerBuildConfig(image_name="x", host=nowhere))
    with pytest.raises(StepFailed, match="build context 'nope'.*does not exist"):
        execute_docker_build(ctx, DockerBuildConfig(image_name="x", context="nope", host=nowhere))
    write(Path(ctx.workspace) / "Dockerfile", "FROM scratch\n")
    with pytest.raises(StepFailed, match="not a valid image reference"):
        execute_docker_build(ctx, DockerBuildConfig(image_name="Upper/Case", host=nowhere))


def test_engine_unreachable_is_reported_with_a_hint(make_ctx):
    ctx = make_ctx("docker_build")
    write(Path(ctx.workspace) / "Dockerfile", "FROM scratch\n")
    with pytest.raises(EngineUnavailable, match="unreachable.*\n.*hint"):
        execute_docker_build(ctx, DockerBuildConfig(image_name="x",
                                                    host="unix:///nonexistent.sock"))


def test_context_over_the_size_limit_honours_dockerignore(make_ctx, monkeypatch, base_image):
    ctx = make_ctx("docker_build")
    ws = Path(ctx.workspace)
    write(ws / "Dockerfile", f"FROM {base_image}\n")
    write(ws / "big.bin", "x" * 50_000)
    monkeypatch.setenv("ANSFLOW_DOCKER_MAX_CONTEXT_BYTES", "10000")
    with pytest.raises(StepFailed, match="over the limit.*\n.*dockerignore"):
        execute_docker_build(ctx, DockerBuildConfig(image_name="ansflow-test/big"))
    write(ws / ".dockerignore", "big.bin\n")
    assert execute_docker_build(ctx, DockerBuildConfig(image_name="ansflow-test/big")).outputs


def test_unreadable_context_file_is_a_clear_error():
    root = Path(tempfile.mkdtemp(prefix="ansflow-unreadable-"))
    os.chmod(root, 0o755)
    write(root / "Dockerfile", "FROM scratch\n")
    secret = write(root / "secret.key", "k")
    os.chmod(secret, 0)
    plan = plan_build(DockerBuildConfig(image_name="x"), str(root))
    as_root = os.geteuid() == 0
    if as_root:
        os.seteuid(65534)  # root reads anything: check as an ordinary user
    try:
        with pytest.raises(EngineError, match="build context unreadable: .*secret.key"):
            check_context(plan)
    finally:
        if as_root:
            os.seteuid(0)


def test_timeout_stops_the_build_and_leaves_nothing(make_ctx, base_image, docker_api):
    ctx = make_ctx("docker_build", timeout=2)
    marker = f"slow-{uuid.uuid4().hex}"
    write(Path(ctx.workspace) / "Dockerfile",
          f"FROM {base_image}\nRUN echo {marker} && sleep 60\n")
    started = time.monotonic()
    with pytest.raises(StepTimedOut, match="did not finish within"):
        execute_docker_build(ctx, DockerBuildConfig(image_name="ansflow-test/slow",
                                                    no_cache=True))
    assert time.monotonic() - started < 40
    deadline = time.monotonic() + 15
    while containers_of(docker_api, marker) and time.monotonic() < deadline:
        time.sleep(0.3)  # the engine removes the intermediate container after the cancel
    assert not containers_of(docker_api, marker)


def test_cancel_stops_the_build(make_ctx, base_image):
    ctx = make_ctx("docker_build")
    write(Path(ctx.workspace) / "Dockerfile", f"FROM {base_image}\nRUN sleep 60\n")
    threading.Timer(1.5, ctx.control.cancel).start()
    started = time.monotonic()
    with pytest.raises(StepCancelled):
        execute_docker_build(ctx, DockerBuildConfig(image_name="ansflow-test/cancelled",
                                                    no_cache=True))
    assert time.monotonic() - started < 40
