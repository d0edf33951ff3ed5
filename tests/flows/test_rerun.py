"""Re-running only what failed: a run whose third of five steps fails is fixed and retried
with `ansflow retry` (a run `ansflow run` started: the same flow run again, in-process);
steps 1-2 ran once, 3-5 once more, the same build number, reused steps shown as such."""

import json
import os
import subprocess
import sys

import pytest
from fixtures_pipeline import by_id, five_steps, step_counts, task_runs


def pipeline(name: str) -> str:
    return five_steps(name, with_finally=True)


def counts(workspace) -> dict[str, int]:
    names = ("1", "2", "3", "4", "5", "f")
    return dict(zip(names, step_counts(workspace, names)))


def ansflow(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ansflow.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


def test_ansflow_retry_reruns_only_the_steps_that_did_not_complete(run_pipeline, tmp_path):
    state, summary = run_pipeline(pipeline("rerun-cli"))
    assert state.is_failed()
    run_id = str(state.state_details.flow_run_id)
    build = summary["build_number"]
    assert [by_id(summary)[s]["state"] for s in ("s1", "s2", "s3", "s4", "s5")] == [
        "completed", "completed", "failed", "not_run", "not_run"]
    assert counts(tmp_path) == {"1": 1, "2": 1, "3": 1, "4": 0, "5": 0, "f": 1}
    (tmp_path / "fixed").touch()
    out = ansflow("retry", run_id, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    again = json.loads(out.stdout)
    assert again["run_id"] == run_id and again["build_number"] == build
    assert again["state"] == "completed"
    assert again["reused"] == ["s1", "s2"]
    steps = by_id(again)
    assert steps["s1"]["outputs"] == {"v": f"one-{build}"}
    assert steps["s1"]["message"] == "reused from an earlier attempt of this run"
    # Steps 1-2 ran once, 3-5 once more (3 twice in all); `finally` runs on every attempt.
    assert counts(tmp_path) == {"1": 1, "2": 1, "3": 2, "4": 1, "5": 1, "f": 2}
    assert (tmp_path / "s4-saw").read_text().strip() == f"one-{build}"  # a reused output
    runs = task_runs(run_id)
    reused = [r for r in runs if r.state.name == "Reused"]
    assert sorted(r.name for r in reused) == ["s1", "s2"]
    assert all("ansflow:reused" in r.tags and r.state.is_completed() for r in reused)
    # The earlier attempt's task runs stay in the flow run: s3 failed once, then completed.
    s3 = sorted(r.state.name for r in runs if r.name == "s3")
    assert s3 == ["Completed", "Failed"], s3
    # Done: a completed run is not retried.
    done = ansflow("retry", run_id)
    assert done.returncode == 1 and "only a failed, cancelled or crashed run" in done.stderr


def test_retry_after_the_file_changed_is_refused(run_pipeline, tmp_path):
    state, summary = run_pipeline(pipeline("rerun-changed"))
    run_id = str(state.state_details.flow_run_id)
    (tmp_path / "pipeline.yaml").write_text(pipeline("rerun-changed") + "# edited\n")
    (tmp_path / "fixed").touch()
    for args in ((), ("--strict",)):
        out = ansflow("retry", run_id, *args)
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"run {run_id} not retried: the pipeline file " in out.stderr
        assert "is not the one the run ran" in out.stderr and "Traceback" not in out.stderr
    assert counts(tmp_path) == {"1": 1, "2": 1, "3": 1, "4": 0, "5": 0, "f": 1}


def _patch_parameters(run_id: str, parameters: dict) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        response = client.request("PATCH", "/flow_runs/{id}", path_params={"id": run_id},
                                  json={"parameters": parameters})
        assert response.status_code == 204, response.text
        assert client.read_flow_run(run_id).parameters == parameters


def test_retry_of_a_run_whose_parameters_were_changed_through_the_api_is_refused(
        run_pipeline, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import AwaitingRetry

    from ansflow.flows.pipeline import pipeline_flow

    state, _ = run_pipeline(pipeline("rerun-patched"))
    run_id = str(state.state_details.flow_run_id)
    (tmp_path / "fixed").touch()
    with get_client(sync_client=True) as client:
        original = dict(client.read_flow_run(run_id).parameters)
    other = tmp_path / "other.yaml"
    other.write_text(pipeline("rerun-patched"))
    _patch_parameters(run_id, {**original, "pipeline_file": str(other)})
    out = ansflow("retry", run_id)
    assert out.returncode == 1, out.stdout + out.stderr
    assert (f"run {run_id} not retried: the flow run's parameters on the Prefect server are "
            "not the ones it ran with") in out.stderr
    _patch_parameters(run_id, {**original, "variables": {"extra": "x"}})
    assert "parameters on the Prefect server" in ansflow("retry", run_id).stderr
    # A retry that does not go through `ansflow retry` (the UI's button, the API) is refused
    # by the run itself when it starts: nothing runs. (other.yaml has the same content: only
    # the parameters differ.)
    _patch_parameters(run_id, {**original, "pipeline_file": str(other)})
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, AwaitingRetry(message="retry"), force=True)
        flow_run = client.read_flow_run(run_id)
    again = run_flow(pipeline_flow, flow_run=flow_run, parameters=flow_run.parameters,
                     return_type="state")
    assert again.is_failed()
    assert "refused: the flow run's parameters on the Prefect server are not the ones it " \
           "ran with" in again.message and "nothing ran" in again.message
    assert counts(tmp_path) == {"1": 1, "2": 1, "3": 1, "4": 0, "5": 0, "f": 1}
    # The parameters put back as recorded: the retry runs.
    _patch_parameters(run_id, original)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, AwaitingRetry(message="retry"), force=True)
    done = ansflow("retry", run_id, "--json")
    assert done.returncode == 1 and "only a failed" in done.stderr  # it is AwaitingRetry now
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run_id)
    final = run_flow(pipeline_flow, flow_run=flow_run, parameters=flow_run.parameters,
                     return_type="state")
    assert final.is_completed(), final.message
    assert counts(tmp_path) == {"1": 1, "2": 1, "3": 2, "4": 1, "5": 1, "f": 2}


def test_retry_refuses_bad_and_unknown_ids(prefect_server):
    bad = ansflow("retry", "not-a-uuid")
    assert bad.returncode == 2 and "is not a flow run id" in bad.stderr
    unknown = ansflow("retry", "00000000-0000-4000-8000-000000000000")
    assert unknown.returncode == 1 and "is not in the ansflow store" in unknown.stderr
    assert "Traceback" not in bad.stderr + unknown.stderr


def test_retry_start_reuses_completed_and_skipped_steps_with_storable_outputs(tmp_path):
    from ansflow.flows.rerun import RetryRefused, retry_start
    from ansflow.spec.validate import load_plan

    path = tmp_path / "p.yaml"
    path.write_text(pipeline("unit"))
    plan = load_plan(path)
    previous = {"build_number": 4, "file_sha256": plan.source_sha256,
                "params_sha256": "ab" * 32}
    results = {
        "s1": {"state": "completed", "exit_code": 0, "outputs": {"v": "x"}},
        "s2": {"state": "completed", "exit_code": 0, "outputs": None},  # held a secret
        "s3": {"state": "skipped", "exit_code": None, "outputs": {}},
        "s4": {"state": "failed", "exit_code": 1, "outputs": {}},
        "f": {"state": "completed", "exit_code": 0, "outputs": {}},  # finally: runs again
    }
    start = retry_start(plan, previous, results, "ab" * 32)
    assert start.build_number == 4 and start.retry
    assert list(start.reused) == ["s1", "s3"]
    assert start.note == ("retry of build #4: 2 step(s) reused from the earlier attempt, "
                          "3 run again (s2, s4, s5)")
    with pytest.raises(RetryRefused, match="the pipeline file .* is not the one the run ran"):
        retry_start(plan, {**previous, "file_sha256": "0" * 64}, results, "ab" * 32)
    with pytest.raises(RetryRefused, match="parameters on the Prefect server are not the ones"):
        retry_start(plan, previous, results, "cd" * 32)
    with pytest.raises(RetryRefused, match="did not record its parameters"):
        retry_start(plan, {**previous, "params_sha256": None}, results, "ab" * 32)


def test_the_parameters_digest_ignores_key_order_only():
    from ansflow.flows.rerun import params_digest

    a = params_digest({"pipeline_file": "/p.yaml", "variables": {"x": 1, "y": "2"}})
    assert a == params_digest({"variables": {"y": "2", "x": 1}, "pipeline_file": "/p.yaml"})
    for other in ({"pipeline_file": "/p.yaml", "variables": {"x": "1", "y": "2"}},
                  {"pipeline_file": "/q.yaml", "variables": {"x": 1, "y": "2"}},
                  {"pipeline_file": "/p.yaml", "variables": {"x": 1, "y": "2", "z": None}}):
        assert params_digest(other) != a


def test_the_store_keeps_files_and_step_results_per_run(tmp_path):
    from ansflow.store import Store

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        assert store.run("r1") is None
        store.record_start("r1", "p", 3)
        store.record_file("r1", "/w/p.yaml", "ab" * 32)
        store.record_steps("r1", [{"step_id": "a", "state": "completed", "exit_code": 0,
                                   "outputs": {"k": "v"}},
                                  {"step_id": "b", "state": "failed", "exit_code": 2,
                                   "outputs": None}])
        assert store.run("r1") == {"run_id": "r1", "pipeline": "p", "build_number": 3,
                                   "state": "running", "pipeline_file": "/w/p.yaml",
                                   "file_sha256": "ab" * 32, "params_sha256": None}
        store.record_params("r1", "cd" * 32)
        assert store.run("r1")["params_sha256"] == "cd" * 32
        assert store.step_results("r1") == {
            "a": {"state": "completed", "exit_code": 0, "outputs": {"k": "v"}},
            "b": {"state": "failed", "exit_code": 2, "outputs": None}}
        store.record_steps("r1", [])  # replaced, not added to
        assert store.step_results("r1") == {}
    finally:
        store.close()
