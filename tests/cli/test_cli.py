"""The `ansflow` command line, run as a user runs it (a real process, the suite's server)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from child_signals import default_signals

ROOT = Path(__file__).resolve().parents[2]


def ansflow(*args, cwd=None, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "ansflow.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, **kw)


def test_validate_exit_codes(tmp_path):
    good = ansflow("validate", *map(str, (ROOT / "examples" / "seed").glob("*.yaml")))
    assert good.returncode == 0, good.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - type: comand\n    config: {}\n")
    out = ansflow("validate", str(bad))
    assert out.returncode == 1
    assert f"{bad}:2:11: unknown step type 'comand'; did you mean 'command'?" in out.stderr
    assert "Traceback" not in out.stderr
    missing = ansflow("validate", str(tmp_path / "none.yaml"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_schema_and_plan_formats():
    schema = json.loads(ansflow("schema").stdout)
    assert schema["title"] == "ansflow pipeline"
    demo = str(ROOT / "examples" / "demo" / "pipeline.yaml")
    plan = json.loads(ansflow("plan", demo, "--format", "json").stdout)
    assert [s["id"] for s in plan["steps"]][:2] == ["compile", "describe"]
    mermaid = ansflow("plan", demo, "-f", "mermaid").stdout
    assert mermaid.startswith("flowchart TD") and "n_compile --> n_describe" in mermaid
    assert ansflow("plan", demo, "-f", "yaml").returncode == 2


def test_run_json_prints_only_the_summary(prefect_server, tmp_path):
    (tmp_path / "p.yaml").write_text(
        "pipeline:\n  name: cli-json\n  variables: {who: world}\n  steps:\n"
        "    - {id: hi, type: command, config: {command: 'echo hi {{ vars.who }}; "
        "echo who={{ vars.who }} >> $ANSFLOW_OUTPUT'}}\n")
    out = ansflow("run", "p.yaml", "--json", "--var", "who=ansflow", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    assert set(summary) >= {"pipeline", "run_id", "build_number", "state", "steps"}
    assert isinstance(summary["build_number"], int) and summary["state"] == "completed"
    step = summary["steps"][0]
    assert set(step) >= {"id", "name", "stage", "type", "state", "exit_code", "attempts",
                         "outputs", "duration_s"}
    assert step["outputs"] == {"who": "ansflow"}
    bad_var = ansflow("run", "p.yaml", "--var", "nobody=1", cwd=tmp_path)
    assert bad_var.returncode == 2 and "unknown variable(s) 'nobody'" in bad_var.stderr


def test_run_failing_pipeline_exits_1(prefect_server, tmp_path):
    (tmp_path / "p.yaml").write_text("steps:\n  - {id: nope, type: command, config: {command: 'exit 3'}}\n")
    out = ansflow("run", "p.yaml", "--json", cwd=tmp_path)
    assert out.returncode == 1
    assert json.loads(out.stdout)["steps"][0]["exit_code"] == 3
    assert "Traceback" not in out.stderr
    (tmp_path / "bad.yaml").write_text("steps:\n  - {id: no, type: command, config: {command: 'x'}}\n")
    invalid = ansflow("run", "bad.yaml", "--json", cwd=tmp_path)
    assert invalid.returncode == 2 and invalid.stdout == ""
    assert "bad.yaml:2:10: 'id': expected a string, got False" in invalid.stderr


def test_unreachable_server_is_a_clear_error(tmp_path):
    (tmp_path / "p.yaml").write_text("steps:\n  - {type: command, config: {command: 'true'}}\n")
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    out = ansflow("run", "p.yaml", cwd=tmp_path, env=env)
    assert out.returncode == 1 and "unreachable" in out.stderr and "Traceback" not in out.stderr


def start_run_until_sleeping(tmp_path):
    """`ansflow run p.yaml --json` in the background, once its step wrote sleeper.pid."""
    proc = subprocess.Popen([sys.executable, "-m", "ansflow.cli", "run", "p.yaml", "--json"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_signals)
    deadline = time.monotonic() + 120
    while not (tmp_path / "sleeper.pid").exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    return proc


def test_ctrl_c_kills_the_step_runs_finally_and_reports_cancelled(prefect_server, tmp_path):
    (tmp_path / "p.yaml").write_text("""\
pipeline:
  name: cancel-me
  steps:
    - {id: long, type: command, config: {command: "sleep 300 & echo $! > sleeper.pid; wait"}}
    - {id: never, type: command, config: {command: "touch never-ran"}}
  finally:
    - {id: tidy, type: command, config: {command: "touch finally-ran"}}
""")
    proc = start_run_until_sleeping(tmp_path)
    sleeper = int((tmp_path / "sleeper.pid").read_text())
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr[-2000:]
    summary = json.loads(stdout)
    states = {s["id"]: s["state"] for s in summary["steps"]}
    assert summary["state"] == "cancelled"
    assert states == {"long": "cancelled", "never": "not_run", "tidy": "completed"}
    assert (tmp_path / "finally-ran").exists() and not (tmp_path / "never-ran").exists()
    assert not _alive(sleeper), "the step's background process survived the cancel"


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"  # a zombie is dead, only not yet reaped
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_cancelling_the_flow_run_in_prefect_stops_the_run(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.states import Cancelling

    (tmp_path / "p.yaml").write_text("""\
pipeline:
  name: cancel-from-ui
  steps:
    - {id: long, type: command, config: {command: "sleep 300 & echo $! > sleeper.pid; wait"}}
  finally:
    - {id: tidy, type: command, config: {command: "touch finally-ran"}}
""")
    proc = start_run_until_sleeping(tmp_path)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(like_="cancel-from-ui #")))
        running = [r for r in runs if r.state and r.state.is_running()]
        assert len(running) == 1
        client.set_flow_run_state(running[0].id, Cancelling(), force=True)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr[-2000:]
    summary = json.loads(stdout)
    assert summary["state"] == "cancelled"
    assert {s["id"]: s["state"] for s in summary["steps"]} == {"long": "cancelled",
                                                               "tidy": "completed"}
    assert (tmp_path / "finally-ran").exists()
    assert not _alive(int((tmp_path / "sleeper.pid").read_text()))
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(running[0].id).state.is_cancelled()


def _without_prefect_server(tmp_path, **more) -> dict:
    """The environment of a user with no PREFECT_API_URL (ephemeral Prefect), own home."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), **more)
    return env


def test_ephemeral_server_that_does_not_start_in_time_is_one_clear_line(tmp_path):
    (tmp_path / "p.yaml").write_text("steps:\n  - {id: a, type: command, config: {command: "
                                     "'touch ran'}}\n")
    env = _without_prefect_server(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    for argv in (["run", str(tmp_path / "p.yaml")], ["serve", str(tmp_path / "p.yaml")]):
        out = ansflow(*argv, cwd=tmp_path, env=env, timeout=120)
        assert out.returncode == 1, (argv, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr, out.stderr
        errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, out.stderr
        assert "Prefect's temporary server did not start" in errors[0]
        assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in errors[0]
        assert "prefect server start" in errors[0] and "PREFECT_API_URL" in errors[0]
    assert not (tmp_path / "ran").exists()


def test_dev_cluster_up_says_why_the_block_was_not_saved(tmp_path, dev_cluster):
    env = _without_prefect_server(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    out = ansflow("dev-cluster", "up", "--name", dev_cluster.name, env=env, timeout=120)
    assert out.returncode == 0, out.stderr  # the cluster runs; only the block is missing
    assert "Traceback" not in out.stderr
    assert "warning: could not save the Prefect block" in out.stderr
    assert "Prefect's temporary server did not start" in out.stderr


def test_run_dev_cluster_that_is_not_running_fails_before_any_server_starts(tmp_path):
    # The positive case (block saved on the run's own ephemeral server, one server for the
    # block and the run) is tests/scripts/test_demo.py, which runs scripts/demo.sh.
    (tmp_path / "p.yaml").write_text("steps:\n  - {id: a, type: command, config: "
                                     "{command: 'touch ran'}}\n")
    out = ansflow("run", str(tmp_path / "p.yaml"), "--dev-cluster", "not-started",
                  cwd=tmp_path, env=_without_prefect_server(tmp_path), timeout=600)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert ("dev cluster 'not-started' is not running; start it with `ansflow dev-cluster up "
            "--name not-started`") in out.stderr
    assert "temporary server" not in out.stderr
    assert not (tmp_path / "ran").exists()


def test_run_dev_host_without_the_private_sshd_fails_before_any_server_starts(tmp_path):
    (tmp_path / "p.yaml").write_text("steps:\n  - {id: a, type: command, config: "
                                     "{command: 'touch ran'}}\n")
    env = {k: v for k, v in _without_prefect_server(tmp_path).items()
           if not k.startswith("ANSFLOW_SSHD_")}
    out = ansflow("run", str(tmp_path / "p.yaml"), "--dev-host", "h", cwd=tmp_path, env=env,
                  timeout=600)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "the private sshd is not known here (ANSFLOW_SSHD_PORT" in out.stderr
    assert "temporary server" not in out.stderr
    assert not (tmp_path / "ran").exists()


def test_names_with_rich_markup_are_shown_as_written(prefect_server, tmp_path):
    (tmp_path / "p.yaml").write_text("""
pipeline:
  name: "demo[/]"
  stages:
    - name: "[bold]stage[/bold] [/]"
      steps:
        - {id: a, name: "step [/]", type: command, when: "'[/]' != ''", config: {command: "true"}}
""")
    plan = ansflow("plan", str(tmp_path / "p.yaml"), env={**os.environ, "COLUMNS": "300"})
    assert plan.returncode == 0, plan.stderr
    assert "[bold]stage[/bold] [/]" in plan.stdout and "Traceback" not in plan.stderr
    out = ansflow("run", str(tmp_path / "p.yaml"), cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "demo[/] #1: completed" in out.stdout and "Traceback" not in out.stderr
