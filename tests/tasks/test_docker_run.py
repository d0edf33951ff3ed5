"""docker_run and run_in_container against the real engine: lifecycle, faults, cancel."""

from __future__ import annotations

import logging
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from fixtures_docker import count_run_containers

from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.spec.steps import DockerRunConfig
from ansflow.tasks.docker_run import execute_docker_run, run_in_container

pytestmark = pytest.mark.docker


def messages(caplog, level: int | None = None) -> list[str]:
    return [r.getMessage() for r in caplog.records if level is None or r.levelno == level]


def test_run_streams_stdout_and_stderr_and_removes_the_container(make_ctx, base_image,
                                                                  docker_api, caplog):
    ctx = make_ctx()
    result = execute_docker_run(ctx, DockerRunConfig(
        image=base_image, command="sh -c 'echo to-out; echo to-err >&2'"))
    assert result.exit_code == 0
    assert result.outputs["exit_code"] == "0"
    assert len(result.outputs["container_id"]) == 64
    assert "to-out" in messages(caplog, logging.INFO)
    assert "to-err" in messages(caplog, logging.WARNING)
    assert count_run_containers(docker_api, ctx.run_id) == 0


def test_labels_env_workdir_user_volumes_ports_entrypoint(make_ctx, base_image, docker_api,
                                                          caplog):
    ctx = make_ctx()
    (Path(ctx.workspace) / "data").mkdir()
    (Path(ctx.workspace) / "data" / "in.txt").write_text("from-the-workspace\n")
    result = execute_docker_run(ctx, DockerRunConfig(
        image=base_image, entrypoint=["sh", "-c"],
        command=["echo \"$GREETING\"; pwd; id -u; cat /mnt/in.txt"],
        env={"GREETING": "hello-env"}, working_dir="/tmp", user="1234",
        volumes=["./data:/mnt:ro"], ports=["127.0.0.1::8080"], remove=False))
    try:
        out = messages(caplog, logging.INFO)
        assert {"hello-env", "/tmp", "1234", "from-the-workspace"} <= set(out)
        info = docker_api.inspect_container(result.outputs["container_id"])
        labels = info["Config"]["Labels"]
        assert labels["ansflow.dev/run-id"] == ctx.run_id
        assert labels["ansflow.dev/pipeline"] == "docker-tests"
        assert labels["ansflow.dev/step"] == "docker_run-step"
        assert "8080/tcp" in info["HostConfig"]["PortBindings"]
    finally:
        docker_api.remove_container(result.outputs["container_id"], force=True)


def test_non_zero_exit_fails_with_the_code_and_last_output(make_ctx, base_image, docker_api):
    ctx = make_ctx()
    with pytest.raises(StepFailed) as info:
        execute_docker_run(ctx, DockerRunConfig(image=base_image,
                                                command="sh -c 'echo why-it-failed; exit 3'"))
    assert info.value.exit_code == 3
    assert "exited with code 3" in str(info.value) and "why-it-failed" in str(info.value)
    assert count_run_containers(docker_api, ctx.run_id) == 0


def test_missing_image_and_missing_executable(make_ctx, base_image, docker_api):
    ctx = make_ctx()
    with pytest.raises(StepFailed, match="image 'ansflow-test/absent:1' not found"):
        execute_docker_run(ctx, DockerRunConfig(image="ansflow-test/absent:1", command="true"))
    with pytest.raises(StepFailed, match="executable file not found") as info:
        execute_docker_run(ctx, DockerRunConfig(image=base_image, command="npm test"))
    assert info.value.exit_code == 127
    assert count_run_containers(docker_api, ctx.run_id) == 0


def test_bad_command_is_rejected_before_any_io(make_ctx):
    ctx = make_ctx()
    nowhere = "unix:///nonexistent.sock"
    with pytest.raises(StepFailed, match="cannot be split"):
        execute_docker_run(ctx, DockerRunConfig(image="x", command="echo 'open", host=nowhere))
    with pytest.raises(StepFailed, match="host:container"):
        execute_docker_run(ctx, DockerRunConfig(image="x", volumes=["nocolon"], host=nowhere))


@pytest.mark.parametrize("where", ["config", "step"])
def test_timeout_kills_and_removes_the_container(make_ctx, base_image, docker_api, where):
    ctx = make_ctx(timeout=1.5 if where == "step" else None)
    config = DockerRunConfig(image=base_image, command="sleep 60",
                             timeout=1.5 if where == "config" else None)
    started = time.monotonic()
    with pytest.raises(StepTimedOut, match="killed and removed"):
        execute_docker_run(ctx, config)
    assert time.monotonic() - started < 30
    assert count_run_containers(docker_api, ctx.run_id) == 0


def test_cancel_from_another_thread_leaves_no_container(make_ctx, base_image, docker_api):
    ctx = make_ctx()
    seen_running = []

    def cancel_when_running() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if docker_api.containers(filters={"label": f"ansflow.dev/run-id={ctx.run_id}"}):
                seen_running.append(True)
                break
            time.sleep(0.1)
        ctx.control.cancel()

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    started = time.monotonic()
    with pytest.raises(StepCancelled):
        execute_docker_run(ctx, DockerRunConfig(image=base_image, command="sleep 60"))
    canceller.join()
    assert seen_running, "the container was running when the run was cancelled"
    assert time.monotonic() - started < 45
    assert count_run_containers(docker_api, ctx.run_id) == 0


def test_binary_garbage_is_logged_as_text(make_ctx, base_image, caplog):
    ctx = make_ctx()
    execute_docker_run(ctx, DockerRunConfig(
        image=base_image, command="sh -c 'head -c 300000 /dev/urandom; echo; echo after'"))
    out = messages(caplog)
    assert "after" in out
    assert all("\x00" not in m and "\x1b" not in m for m in out)


class Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines = 0
        self.chars = 0
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1
        self.chars += len(record.msg)
        self.last = record.getMessage()


def test_100_mb_of_output_keeps_memory_bounded(make_ctx, base_image, docker_api):
    logger = logging.getLogger("ansflow.test.bulk")
    logger.propagate = False
    counter = Counter()
    logger.addHandler(counter)
    logger.setLevel(logging.INFO)
    ctx = make_ctx(logger=logger)
    tracemalloc.start()
    try:
        result = execute_docker_run(ctx, DockerRunConfig(
            image=base_image,
            command="sh -c \"head -c 104857600 /dev/zero | tr '\\\\0' a; echo; echo done\""))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        logger.removeHandler(counter)
    assert result.exit_code == 0
    assert peak < 32 * 1024**2, f"peak traced memory {peak / 1024**2:.1f} MiB"
    assert counter.chars <= 3 * 1024**2, "the log volume is bounded by the step's log cap"
    assert "not logged" in counter.last and "ANSFLOW_MAX_LOG_BYTES" in counter.last
    assert count_run_containers(docker_api, ctx.run_id) == 0


def test_run_in_container_mounts_the_workspace_and_returns_the_exit_code(make_ctx, base_image,
                                                                         docker_api, caplog):
    ctx = make_ctx("command", runs_on="docker")
    ws = Path(ctx.workspace)
    (ws / "sub").mkdir()
    (ws / "sub" / "input.txt").write_text("workspace-file\n")
    code = run_in_container(ctx, image=base_image,
                            argv=["sh", "-c", "pwd; cat input.txt; echo $STEP_VAR > out.txt; "
                                  "exit 4"],
                            working_dir=str(ws / "sub"), env={"STEP_VAR": "from-env"})
    assert code == 4
    assert {str(ws / "sub"), "workspace-file"} <= set(messages(caplog))
    assert (ws / "sub" / "out.txt").read_text().strip() == "from-env"
    assert count_run_containers(docker_api, ctx.run_id) == 0


def test_run_in_container_timeout_and_cancel(make_ctx, base_image, docker_api):
    ctx = make_ctx("command", timeout=1.0)
    with pytest.raises(StepTimedOut):
        run_in_container(ctx, image=base_image, argv=["sleep", "60"],
                         working_dir=ctx.workspace, env={})
    assert count_run_containers(docker_api, ctx.run_id) == 0
    ctx = make_ctx("command")
    threading.Timer(1.0, ctx.control.cancel).start()
    with pytest.raises(StepCancelled):
        run_in_container(ctx, image=base_image, argv=["sleep", "60"],
                         working_dir=ctx.workspace, env={})
    assert count_run_containers(docker_api, ctx.run_id) == 0


def test_secrets_printed_by_a_container_are_masked(make_ctx, base_image, caplog):
    ctx = make_ctx(secrets=["s3cr3t-value"])
    with pytest.raises(StepFailed) as info:
        execute_docker_run(ctx, DockerRunConfig(
            image=base_image, command="sh -c 'echo token=s3cr3t-value; exit 2'"))
    assert "token=***" in messages(caplog)
    assert "s3cr3t-value" not in "\n".join(messages(caplog)) + str(info.value)


def test_output_printed_just_before_exit_is_not_lost(make_ctx, base_image, caplog):
    ctx = make_ctx()
    execute_docker_run(ctx, DockerRunConfig(
        image=base_image,
        command=["sh", "-c", "head -c 1500000 /dev/zero | tr '\\0' x | fold -w 1000; echo; "
                 "echo last-line"]))
    out = messages(caplog)
    assert out[-1] == "last-line"
    assert len([m for m in out if m.startswith("xxxx")]) == 1500
