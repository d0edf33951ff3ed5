"""Pipelines run for real as Prefect flows: states, outputs, templating, failure handling."""

import logging
import os
from pathlib import Path

from fixtures_pipeline import by_id, logs, task_runs
from prefect.client.orchestration import get_client

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "pipeline.yaml"


def demo_variables(dev_cluster, **more) -> dict:
    """The demo on the suite's dev cluster, in a namespace of its own."""
    return {"cluster": dev_cluster.block_name, "namespace": dev_cluster.namespace("demo"), **more}


def test_demo_pipeline_completes_with_outputs_templating_and_states(run_pipeline, tmp_path,
                                                                    dev_cluster, ssh_host):
    state, summary = run_pipeline(DEMO.read_text(encoding="utf-8"),
                                  variables=demo_variables(dev_cluster, host=ssh_host))
    steps = by_id(summary)
    assert state.is_completed(), summary["message"]
    assert summary["state"] == "completed"
    n = summary["build_number"]
    assert steps["compile"]["outputs"] == {"artifact": "build/app.sh", "version": f"1.{n}"}
    assert steps["describe"]["outputs"] == {"notes": "built by ansflow-demo\nenv demo"}
    assert steps["slow"]["state"] == "skipped"
    assert steps["audit"]["state"] == "failed" and steps["audit"]["exit_code"] == 1
    assert steps["flaky"]["state"] == "completed" and steps["flaky"]["attempts"] == 2
    assert steps["package"]["outputs"]["package"] == f"build/hello-app-1.{n}.tgz"
    assert (tmp_path / "build" / f"hello-app-1.{n}.tgz").is_file()
    assert steps["report"]["state"] == "completed"
    # The Docker part: built from the workspace, tested in a container, push skipped
    # because no registry was given.
    assert steps["image"]["outputs"]["image"] == f"ansflow-demo/hello-app:{n}"
    assert steps["container_test"]["state"] == "completed"
    assert steps["in_container"]["state"] == "completed"
    assert steps["push"]["state"] == "skipped"
    # The Kubernetes part, on the real dev cluster: without a registry the local image goes
    # to the kwok nodes, and the real node's deploy and pod step are skipped.
    assert steps["deploy"]["state"] == "skipped" and steps["in_pod"]["state"] == "skipped"
    assert steps["deploy_kwok"]["outputs"]["revision"] == "1"
    assert steps["integration"]["outputs"]["stdout_tail"].strip().startswith(
        "integration test of revision 1 passed in ")
    # The SSH part: the package unpacked and run on the host (the private sshd).
    assert steps["install"]["outputs"] == {"said": f"hello from hello-app build {n}"}


def test_prefect_sees_every_step_as_a_named_tagged_task_run(run_pipeline, tmp_path, dev_cluster):
    state, summary = run_pipeline(DEMO.read_text(encoding="utf-8"),
                                  variables=demo_variables(dev_cluster, greeting="bonjour"))
    flow_run_id = state.state_details.flow_run_id
    runs = {r.name: r for r in task_runs(flow_run_id)}
    assert set(runs) == {s["name"] for s in summary["steps"]}
    compile_run = runs["编译 (compile)"]
    assert set(compile_run.tags) == {"stage:Build", "type:command"}
    # Each step is a task run of its type's public task (ansflow.tasks.<type>).
    assert compile_run.task_key.startswith("command-")
    assert runs["Build the image"].task_key.startswith("docker_build-")
    assert runs["Deploy to the kwok nodes"].task_key.startswith("k8s_deploy-")
    assert runs["Slow checks"].task_key.startswith("command-")
    assert runs["Slow checks"].state.name == "Skipped"
    assert all(not r.state.is_pending() for r in runs.values())
    # Stage order is visible as edges in the run graph.
    unit_inputs = runs["Unit tests"].task_inputs
    assert any(runs["Build the image"].id == getattr(i, "id", None)
               for inputs in unit_inputs.values() for i in inputs)
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    assert flow_run.name == f"ansflow-demo #{summary['build_number']}"
    first_line = "[ansflow] step 'compile' (command) of stage 'Build'"
    done_line = f"pipeline ansflow-demo #{summary['build_number']} done"
    lines = logs(flow_run_id, first_line, done_line)
    assert first_line in lines and done_line in lines
    assert "bonjour from hello-app" in (tmp_path / "build" / "app.sh").read_text()


def test_failure_stops_dependents_records_not_run_and_runs_finally(run_pipeline, tmp_path):
    state, summary = run_pipeline("""
        pipeline:
          name: failing
          stages:
            - name: one
              steps:
                - {id: ok, type: command, config: {command: "echo fine"}}
                - {id: boom, type: command, config: {command: "echo about to fail; exit 7"}}
                - {id: after, type: command, config: {command: "touch after-ran"}}
            - name: two
              steps:
                - {id: later, type: command, config: {command: "touch later-ran"}}
          finally:
            - {id: cleanup, type: command, config: {command: "echo {{ steps.boom.status }} > finally-saw"}}
    """)
    steps = by_id(summary)
    assert state.is_failed() and summary["state"] == "failed"
    assert steps["boom"]["state"] == "failed" and steps["boom"]["exit_code"] == 7
    assert steps["after"]["state"] == "not_run" and steps["later"]["state"] == "not_run"
    assert not (tmp_path / "after-ran").exists() and not (tmp_path / "later-ran").exists()
    assert (tmp_path / "finally-saw").read_text().strip() == "failed"
    runs = {r.name: r for r in task_runs(state.state_details.flow_run_id)}
    assert runs["after"].state.name == "NotRun"
    assert not any(r.state.is_pending() for r in runs.values()), {
        n: r.state.name for n, r in runs.items()}


def test_retries_follow_retry_on_exit_codes(run_pipeline):
    _, summary = run_pipeline("""
        stages:
          - name: both
            parallel: true
            steps:
              - {id: other_code, type: command, retries: 3, retry_on_exit_codes: [5], config: {command: "exit 4"}}
              - {id: any_code, type: command, retries: 2, allow_failure: true, config: {command: "exit 9"}}
    """)
    steps = by_id(summary)
    # Exit code 4 is not one to retry on: one attempt. Without retry_on_exit_codes, any
    # failure is retried: 1 + 2 attempts.
    assert (steps["other_code"]["attempts"], steps["other_code"]["exit_code"]) == (1, 4)
    assert (steps["any_code"]["attempts"], steps["any_code"]["exit_code"]) == (3, 9)
    assert steps["any_code"]["state"] == "failed"


def test_allow_failure_lets_the_pipeline_succeed_and_retries_count(run_pipeline):
    state, summary = run_pipeline("""
        pipeline:
          name: tolerant
          stages:
            - name: s
              parallel: true
              steps:
                - {id: flaky, type: command, retries: 2, retry_delay: 0.1, allow_failure: true, config: {command: "exit 9"}}
                - {id: fine, type: command, config: {command: "true"}}
            - name: t
              steps:
                - {id: next, type: command, config: {command: "echo {{ steps.flaky.status }}"}}
    """)
    steps = by_id(summary)
    assert state.is_completed()
    assert steps["flaky"]["state"] == "failed" and steps["flaky"]["attempts"] == 3
    assert steps["next"]["state"] == "completed"


def test_timeout_kills_the_whole_process_tree(run_pipeline, tmp_path):
    state, summary = run_pipeline("""
        steps:
          - id: hang
            type: command
            timeout: 2
            config:
              command: "sh -c 'sleep 300 & echo $! > child.pid; wait' & echo $! > parent.pid; wait"
    """)
    step = by_id(summary)["hang"]
    assert step["state"] == "timedout" and state.is_failed()
    for pid_file in ("parent.pid", "child.pid"):
        pid = int((tmp_path / pid_file).read_text())
        assert not _alive(pid), f"{pid_file} process {pid} survived the timeout"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_sixteen_independent_stages_really_run_at_once(run_pipeline, tmp_path):
    # A barrier, not a clock: each stage marks that it started, then waits until all 16 have
    # started. Run one after another, the first stage could never pass the barrier and
    # fails at its deadline; run at once, all pass, however slow the machine is.
    barrier = ("touch started{i}; n=0; "
               "while [ $(ls started* | wc -l) -lt 16 ]; do "
               "n=$((n+1)); [ $n -lt 1200 ] || exit 9; sleep 0.1; done")
    stages = "\n".join(
        f"    - {{name: s{i}, needs: [], steps: [{{id: w{i}, type: command, timeout: 180, "
        f"config: {{command: \"{barrier.format(i=i)}\"}}}}]}}"
        for i in range(16))
    state, summary = run_pipeline("pipeline:\n  name: wide\n  stages:\n" + stages + "\n")
    assert state.is_completed(), [(s["id"], s["state"], s.get("exit_code"))
                                  for s in summary["steps"]]
    assert sorted(p.name for p in tmp_path.glob("started*")) == sorted(
        f"started{i}" for i in range(16))


def test_secret_is_masked_everywhere(run_pipeline, prefect_server):
    from prefect.blocks.system import Secret

    Secret(value="s3cr3t-Value-42").save("demo-token", overwrite=True)
    state, summary = run_pipeline("""
        steps:
          - id: use
            type: command
            config:
              command: "echo token={{ secrets['demo-token'] }}; echo tok={{ secrets['demo-token'] }} >> $ANSFLOW_OUTPUT"
    """)
    assert state.is_completed()
    lines = logs(state.state_details.flow_run_id, "token=***")
    assert sum("s3cr3t-Value-42" in line for line in lines) == 0
    assert "token=***" in lines
    assert by_id(summary)["use"]["outputs"] == {"tok": "***"}
    assert "s3cr3t-Value-42" not in str(summary)


def test_missing_secret_fails_before_any_step(run_pipeline, tmp_path):
    state, _ = run_pipeline("""
        steps:
          - {id: use, type: command, config: {command: "touch ran; echo {{ secrets['nope-missing'] }}"}}
    """)
    assert state.is_failed() and "secret 'nope-missing' is not saved" in state.message
    assert not (tmp_path / "ran").exists()


def test_a_pod_step_without_image_or_cluster_is_refused_before_anything_runs(run_pipeline,
                                                                             tmp_path):
    state, summary = run_pipeline("""
        steps:
          - {id: first, type: command, config: {command: "touch ran"}}
          - {id: pod, type: command, runs_on: kubernetes, config: {command: x}}
    """)
    assert state.is_failed() and summary is None
    assert "pipeline.yaml:4:5: step 'pod' runs on kubernetes but names no image" in (
        state.message)
    assert "names no cluster" in state.message
    assert not (tmp_path / "ran").exists()


def test_binary_and_huge_output_do_not_break_the_step(run_pipeline):
    state, summary = run_pipeline("""
        steps:
          - id: noisy
            type: command
            config:
              command: "head -c 200000 /dev/urandom; echo; yes 0123456789abcdefghij0123456789abcdefghij | head -c 30000000; echo done"
    """)
    assert state.is_completed(), summary["message"]
    assert by_id(summary)["noisy"]["exit_code"] == 0


def test_the_log_cap_setting_takes_effect(run_pipeline, monkeypatch, caplog):
    monkeypatch.setenv("ANSFLOW_MAX_LOG_BYTES", "2000")
    caplog.set_level(logging.INFO, logger="prefect.task_runs")
    state, summary = run_pipeline("""
        steps:
          - {id: chatty, type: command, config: {command: "for i in $(seq 1 200); do echo line-$i-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; done"}}
    """)
    assert state.is_completed(), summary["message"]
    # What the step's run logger was given (the API gets the same records, batched).
    lines = [r.getMessage() for r in caplog.records if r.name == "prefect.task_runs"]
    # 41 lines of 47-48 bytes fit in 2000 bytes; the other 159 are counted.
    shown = [line for line in lines if line.startswith("line-")]
    assert len(shown) == 41 and shown[-1].startswith("line-41-"), lines
    assert "[ansflow] 159 output lines were not logged (log size limit)" in lines
    assert any("output beyond 2000 bytes is not logged" in line and "ANSFLOW_MAX_LOG_BYTES"
               in line for line in lines)


def test_a_step_that_swaps_its_outputs_file_fails_clearly_instead_of_hanging_or_leaking(
        run_pipeline, tmp_path):
    (tmp_path / "host-secret").write_text("token=hunter2\n")
    state, summary = run_pipeline(f"""
        stages:
          - name: both
            parallel: true
            steps:
              - {{id: fifo, type: command, config: {{command: 'rm "$ANSFLOW_OUTPUT"; mkfifo "$ANSFLOW_OUTPUT"'}}}}
              - {{id: link, type: command, config: {{command: 'ln -sf {tmp_path}/host-secret "$ANSFLOW_OUTPUT"'}}}}
    """)
    steps = by_id(summary)
    assert steps["fifo"]["state"] == "failed" and "no longer a regular file" in (
        steps["fifo"]["message"])
    assert steps["link"]["state"] == "failed" and "symbolic link" in steps["link"]["message"]
    assert "hunter2" not in str(summary)


def test_runtime_template_error_fails_the_step_with_the_name(run_pipeline):
    state, summary = run_pipeline("""
        steps:
          - {id: first, type: command, config: {command: "true"}}
          - {id: second, type: command, config: {command: "echo {{ steps.first.outputs.missing }}"}}
    """)
    step = by_id(summary)["second"]
    assert step["state"] == "failed" and "missing" in step["message"]


def test_pipeline_timeout_stops_everything_and_still_runs_finally(run_pipeline, tmp_path):
    state, summary = run_pipeline("""
        pipeline:
          name: slow
          timeout: 2s
          steps:
            - {id: slow, type: command, config: {command: "sleep 60"}}
            - {id: next, type: command, config: {command: "touch next-ran"}}
          finally:
            - {id: tidy, type: command, config: {command: "touch finally-ran"}}
    """)
    steps = by_id(summary)
    assert state.is_failed() and summary["message"] == "pipeline timed out after 2s"
    assert steps["slow"]["state"] == "cancelled" and steps["next"]["state"] == "not_run"
    assert (tmp_path / "finally-ran").exists() and not (tmp_path / "next-ran").exists()
