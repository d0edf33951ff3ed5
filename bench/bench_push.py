"""Push triggers: push -> first step running, through the git hook and through the webhook
receiver, next to starting the same deployment by hand.

    python bench/bench_push.py [--reps 3] [--polls 10,1]

Starts a private Prefect server (temp PREFECT_HOME, free loopback port), a bare repository
with a served pipeline built from it (`on.push`, one trivial step) and, for each runner
poll interval (PREFECT_RUNNER_POLL_FREQUENCY: Prefect's default 10 s, and 1 s), measures
from the moment the change is handed over to the moment the pipeline's first step starts:

- hook:     `git push` of a new commit (the post-receive hook emits the event);
- webhook:  a signed GitHub push delivery POSTed to `ansflow webhook` (after the push);
- api:      `create_flow_run_from_deployment` with the same ref and sha (what the trigger's
            action does, without the event);
- cli:      `prefect deployment run NAME --param ref=... --param sha=...` as a user types it
            (includes the CLI's start, ~3 s of Python imports).

The table gives medians, the part until the flow run exists, and each path's ratio to the
api path. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.test",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.test",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
SECRET = uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV},
                          capture_output=True, text=True, check=True).stdout.strip()


def wait_healthy(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the bench's Prefect server did not start")


def wait_ready(name: str, proc: subprocess.Popen, log: Path, timeout: float = 180):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"serve exited:\n{log.read_text()}")
            try:
                dep = client.read_deployment_by_name(f"ansflow-pipeline/{name}")
                if client.read_automations_by_name(f"ansflow push: {name}"):
                    time.sleep(2)
                    return dep
            except ObjectNotFound:
                pass
            time.sleep(0.5)
    raise SystemExit(f"{name} was not served:\n{log.read_text()}")


def wait_run_of(dep_id, sha: str, timeout: float = 180, what: str = ""):
    """The flow run for ``sha`` once its first step started: (run, first step start)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterId,
    )

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = [r for r in client.read_flow_runs(deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[dep_id]))) if r.parameters.get("sha") == sha]
            if runs:
                tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[runs[0].id])))
                starts = [t.start_time for t in tasks if t.start_time]
                if starts:
                    while not client.read_flow_run(runs[0].id).state.is_final():
                        time.sleep(0.3)
                    return runs[0], min(starts).timestamp()
            time.sleep(0.1)
    raise SystemExit(f"{what}: no run of {sha[:12]} started")


def new_commit(work: Path, i: int) -> tuple[str, str]:
    before = git("rev-parse", "HEAD", cwd=work) if i else "0" * 40
    (work / "src").mkdir(exist_ok=True)
    (work / "src" / "app.txt").write_text(f"change {i} {uuid.uuid4().hex}\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", f"change {i}", cwd=work)
    return before, git("rev-parse", "HEAD", cwd=work)


def github_post(port: int, url: str, before: str, after: str) -> None:
    body = json.dumps({
        "ref": "refs/heads/main", "before": before, "after": after,
        "commits": [{"id": after, "added": [], "removed": [], "modified": ["src/app.txt"]}],
        "head_commit": {"id": after}, "repository": {"clone_url": url,
                                                     "pushed_at": int(time.time())},
        "pusher": {"name": "bench"}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/github", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-GitHub-Event": "push",
                 "X-GitHub-Delivery": str(uuid.uuid4()),
                 "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body,
                                                             hashlib.sha256).hexdigest()})
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 202, resp.read()


def forget(name: str, dep_id) -> None:
    """Remove a measured pipeline's deployment (and so its trigger) and published filter."""
    from prefect.client.orchestration import get_client
    from prefect.variables import Variable

    from ansflow.gitpush.events import registration_name

    with get_client(sync_client=True) as client:
        client.delete_deployment(dep_id)
    Variable.unset(registration_name(name))


def measure(path: str, ctx: dict, i: int) -> tuple[float, float]:
    """Seconds from hand-over to the flow run existing and to its first step starting."""
    from prefect.client.orchestration import get_client

    work, dep = ctx["work"], ctx["dep"]
    before, after = new_commit(work, i)
    hook = ctx["bare"] / "hooks" / "post-receive"
    if path != "hook":
        hook.rename(hook.with_suffix(".off"))
        git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
        hook.with_suffix(".off").rename(hook)
    t0 = time.time()
    if path == "hook":
        git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
    elif path == "webhook":
        github_post(ctx["port"], ctx["url"], before, after)
    elif path == "api":
        with get_client(sync_client=True) as client:
            client.create_flow_run_from_deployment(
                dep.id, parameters={"ref": "refs/heads/main", "sha": after})
    else:
        subprocess.run([sys.executable, "-m", "prefect", "deployment", "run",
                        f"ansflow-pipeline/{ctx['name']}", "--param", "ref=refs/heads/main",
                        "--param", f"sha={after}"], capture_output=True, check=True)
    run, first_step = wait_run_of(dep.id, after, what=path)
    return run.created.timestamp() - t0, first_step - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--polls", default="10,1")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ansflow-bench-push-"))
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect"),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
           "ANSFLOW_HOME": str(tmp / "ansflow"), "ANSFLOW_WORKSPACES": str(tmp / "ws"),
           "ANSFLOW_WEBHOOK_GITHUB_SECRET": SECRET}
    os.environ.update(env)
    procs = [start([sys.executable, "-m", "prefect", "server", "start"], env,
                   tmp / "server.log")]
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        wait_healthy(env["PREFECT_API_URL"])
        bare, work = tmp / "app.git", tmp / "app"
        git("init", "-q", "--bare", "-b", "main", str(bare))
        git("init", "-q", "-b", "main", str(work))
        git("remote", "add", "origin", str(bare), cwd=work)
        new_commit(work, 0)
        git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
        subprocess.run([sys.executable, "-m", "ansflow.cli", "git-hook", "install", str(bare)],
                       env=env, check=True, capture_output=True)
        hook_log = tmp / "webhook.log"
        receiver = start([sys.executable, "-m", "ansflow.cli", "webhook", "--port", "0"], env,
                         hook_log)
        procs.append(receiver)
        deadline = time.monotonic() + 60
        while not re.search(r"listening on http://127\.0\.0\.1:(\d+)", hook_log.read_text()):
            if time.monotonic() > deadline or receiver.poll() is not None:
                raise SystemExit(f"webhook did not start:\n{hook_log.read_text()}")
            time.sleep(0.2)
        webhook_port = int(re.search(r"127\.0\.0\.1:(\d+)", hook_log.read_text())[1])
        i = 1
        for poll in args.polls.split(","):
            name = f"bench-push-{poll}"
            file = tmp / "pipelines" / f"{name}.yaml"  # its folder holds no state
            file.parent.mkdir(exist_ok=True)
            file.write_text(
                f"pipeline:\n  name: {name}\n  source: {{git: \"{bare}\", ref: main}}\n"
                "  on: {push: {branches: [main], paths: ['src/**']}}\n"
                "  steps:\n    - {name: first, type: command, config: {command: 'true'}}\n")
            log = tmp / f"serve-{poll}.log"
            serve = start([sys.executable, "-m", "ansflow.cli", "serve", str(file)],
                          {**env, "PREFECT_RUNNER_POLL_FREQUENCY": poll,
                           "ANSFLOW_WORKSPACE_MODE": "per-run"}, log)
            procs.append(serve)
            ctx = {"work": work, "bare": bare, "url": str(bare), "port": webhook_port,
                   "name": name, "dep": wait_ready(name, serve, log)}
            for _ in range(args.reps):
                for path in ("hook", "webhook", "api", "cli"):
                    results.setdefault((poll, path), []).append(measure(path, ctx, i))
                    i += 1
            stop(serve)
            forget(name, ctx["dep"].id)  # the next interval's pipeline is the only one selected
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"push -> first step running, median of {args.reps} (seconds; ratio to api)")
    print(f"{'poll':>5} | {'path':<8} | {'run created':>11} | {'first step':>10} | "
          f"{'vs api':>6} | {'first step, each':<24}")
    print("-" * 80)
    for poll in args.polls.split(","):
        api = statistics.median(s for _, s in results[(poll, "api")])
        for path in ("hook", "webhook", "api", "cli"):
            created = statistics.median(c for c, _ in results[(poll, path)])
            step = statistics.median(s for _, s in results[(poll, path)])
            each = " ".join(f"{s:.1f}" for _, s in results[(poll, path)])
            print(f"{poll + ' s':>5} | {path:<8} | {created:11.2f} | {step:10.2f} | "
                  f"{step / api:5.2f}x | {each}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
