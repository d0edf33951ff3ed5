"""Benchmark the Docker steps against the docker CLI, in the same run, on the same engine.

    python bench/bench_docker.py [--rounds 3] [--mib 32]

Needs DOCKER_HOST and ANSFLOW_TEST_REGISTRY (source the set-up script's env file, or run
`scripts/docker-services.sh start`) and a `docker` CLI. Prints a markdown table:
- docker_build vs `docker build` (legacy builder, as docker-py speaks no BuildKit) of the
  same context, no cache, median of the rounds;
- docker_push vs `docker push` of same-sized fresh layers to the same registry;
- the delay from a line printed in a container to its arrival at the step's Prefect task
  logger, and to its arrival in the Prefect API's log store (needs PREFECT_API_URL or
  starts an ephemeral server).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.25")  # before Prefect loads
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from ansflow.runtime.base import StepContext
from ansflow.spec.steps import DockerBuildConfig, DockerPushConfig, DockerRunConfig
from ansflow.tasks.docker_build import execute_docker_build
from ansflow.tasks.docker_push import execute_docker_push
from ansflow.tasks.docker_run import execute_docker_run

BASE = "ansflow-bench/busybox:latest"


def ctx_for(workspace: str, logger: logging.Logger, step: str = "bench") -> StepContext:
    return StepContext(pipeline="bench", run_id=f"bench-{uuid.uuid4().hex[:8]}", build_number=1,
                       step_id=step, step_name=step, stage="bench", step_type=step,
                       workspace=workspace, logger=logger)


def quiet_logger() -> logging.Logger:
    logger = logging.getLogger("ansflow.bench.quiet")
    logger.propagate = False
    logger.addHandler(logging.NullHandler())
    return logger


def cli(*args: str) -> float:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    start = time.perf_counter()
    subprocess.run(["docker", *args], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def build_base(api) -> None:
    busybox = shutil.which("busybox") or "/bin/busybox"
    dockerfile = (b"FROM scratch\nCOPY busybox /bin/busybox\n"
                  b'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nENV PATH=/bin\n')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(busybox, arcname="busybox")
    buf.seek(0)
    for _ in api.build(fileobj=buf, custom_context=True, tag=BASE, decode=True):
        pass


def bench_build(workspace: Path, rounds: int, mib: int) -> tuple[float, float]:
    (workspace / "blob.bin").write_bytes(os.urandom(mib * 1024**2))
    (workspace / "Dockerfile").write_text(f"FROM {BASE}\nCOPY blob.bin /blob.bin\n"
                                          "RUN md5sum /blob.bin > /blob.md5\n")
    ours, theirs = [], []
    for i in range(rounds):
        def ansflow_build() -> None:
            start = time.perf_counter()
            execute_docker_build(ctx_for(str(workspace), quiet_logger()),
                                 DockerBuildConfig(image_name="ansflow-bench/build",
                                                   tag=f"a{i}", no_cache=True))
            ours.append(time.perf_counter() - start)

        def cli_build() -> None:
            theirs.append(cli("build", "--no-cache", "-q", "-t", f"ansflow-bench/build:c{i}",
                              str(workspace)))

        for run in ((ansflow_build, cli_build) if i % 2 == 0 else (cli_build, ansflow_build)):
            run()  # alternate who goes first: the engine's caches warm up for the second
    return statistics.median(ours), statistics.median(theirs)


def fresh_image(api, workspace: Path, name: str, mib: int) -> str:
    """An image with a layer of random bytes no registry has seen."""
    (workspace / "blob.bin").write_bytes(os.urandom(mib * 1024**2))
    (workspace / "Dockerfile").write_text(f"FROM {BASE}\nCOPY blob.bin /blob.bin\n")
    ref = f"{name}:v1"
    for _ in api.build(path=str(workspace), tag=ref, decode=True):
        pass
    return ref


def bench_push(api, workspace: Path, registry: str, rounds: int, mib: int) -> tuple[float, float]:
    ours, theirs = [], []
    for i in range(rounds):
        mine = fresh_image(api, workspace, f"ansflow-bench/push-a{uuid.uuid4().hex[:6]}", mib)
        other = fresh_image(api, workspace, f"ansflow-bench/push-c{uuid.uuid4().hex[:6]}", mib)
        target = f"{registry}/{other}"
        api.tag(other, target.rsplit(":", 1)[0], "v1")

        def ansflow_push() -> None:
            start = time.perf_counter()
            execute_docker_push(ctx_for(str(workspace), quiet_logger()),
                                DockerPushConfig(image=mine, registry=registry))
            ours.append(time.perf_counter() - start)

        def cli_push() -> None:
            theirs.append(cli("push", "-q", target))

        for run in ((ansflow_push, cli_push) if i % 2 == 0 else (cli_push, ansflow_push)):
            run()
    return statistics.median(ours), statistics.median(theirs)


def bench_latency(workspace: Path, marks: int = 20) -> tuple[float, float, float, float]:
    """Delays container print -> task logger (median, max) and -> Prefect API (median, max)."""
    import threading

    from prefect import flow, get_run_logger, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId
    from prefect.context import TaskRunContext

    now = lambda: time.clock_gettime(time.CLOCK_BOOTTIME)  # noqa: E731 - /proc/uptime's clock
    arrivals: dict[str, float] = {}
    in_api: dict[str, float] = {}
    task_run: list[str] = []
    done = threading.Event()

    class Arrival(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("mark "):
                arrivals[record.getMessage()] = now()

    def watch_api() -> None:
        with get_client(sync_client=True) as client:
            while not (done.is_set() and len(in_api) >= len(arrivals)):
                if task_run:
                    for log in client.read_logs(log_filter=LogFilter(
                            task_run_id=LogFilterTaskRunId(any_=[task_run[0]]))):
                        if log.message.startswith("mark "):
                            in_api.setdefault(log.message, now())
                time.sleep(0.02)
                if done.is_set() and time.monotonic() > give_up:
                    return

    @task(name="latency")
    def run_marks() -> None:
        task_run.append(str(TaskRunContext.get().task_run.id))
        handler = Arrival()
        logging.getLogger("prefect.task_runs").addHandler(handler)
        try:
            script = (f"for i in $(seq 1 {marks}); do echo \"mark $(cut -d' ' -f1 /proc/uptime)\";"
                      " sleep 0.2; done")
            execute_docker_run(ctx_for(str(workspace), get_run_logger(), "latency"),
                               DockerRunConfig(image=BASE, command=["sh", "-c", script]))
        finally:
            logging.getLogger("prefect.task_runs").removeHandler(handler)

    @flow(name="ansflow-bench-latency")
    def latency_flow() -> None:
        run_marks()

    give_up = float("inf")
    watcher = threading.Thread(target=watch_api, daemon=True)
    watcher.start()
    latency_flow()
    give_up = time.monotonic() + 30
    done.set()
    watcher.join()
    to_logger = [t - float(m.split()[1]) for m, t in arrivals.items()]
    to_api = [t - float(m.split()[1]) for m, t in in_api.items()]
    return (statistics.median(to_logger), max(to_logger), statistics.median(to_api),
            max(to_api))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=32, help="size of the layer built / pushed")
    args = parser.parse_args()
    registry = os.environ.get("ANSFLOW_TEST_REGISTRY")
    if not os.environ.get("DOCKER_HOST") or not registry or not shutil.which("docker"):
        sys.exit("set DOCKER_HOST and ANSFLOW_TEST_REGISTRY (scripts/docker-services.sh start)"
                 " and put a docker CLI on PATH")
    import docker

    api = docker.DockerClient(base_url=os.environ["DOCKER_HOST"], version="auto").api
    build_base(api)
    with tempfile.TemporaryDirectory(prefix="ansflow-bench-") as tmp:
        ws = Path(tmp)
        b_ours, b_cli = bench_build(ws, args.rounds, args.mib)
        p_ours, p_cli = bench_push(api, ws, registry, args.rounds, args.mib)
        lat_med, lat_max, api_med, api_max = bench_latency(ws)
    print(f"\n| measure ({args.mib} MiB layer, median of {args.rounds}) | ansflow | docker CLI "
          "| ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| docker_build vs `docker build` (no cache) | {b_ours:.2f} s | {b_cli:.2f} s "
          f"| {b_ours / b_cli:.2f}x | <= 1.1x |")
    print(f"| docker_push vs `docker push` (fresh layer) | {p_ours:.2f} s | {p_cli:.2f} s "
          f"| {p_ours / p_cli:.2f}x | <= 1.1x |")
    print(f"| container line -> Prefect task logger (median / max of 20) | {lat_med * 1000:.0f}"
          f" ms / {lat_max * 1000:.0f} ms | | | <= 0.5 s |")
    print(f"| container line -> readable in the Prefect API (median / max of 20) | "
          f"{api_med * 1000:.0f} ms / {api_max * 1000:.0f} ms | | | |")


if __name__ == "__main__":
    main()
