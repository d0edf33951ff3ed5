"""Re-running only what failed: a run whose third of five steps fails is fixed and retried
with `ansflow retry` (a run `ansflow run` started: the same flow run again, in-process);
steps 1-2 ran once, 3-5 once more, the same build number, reused steps shown as such."""

import json
import os
import subprocess
import sys

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


def test_retry_after_the_file_changed_reruns_everything_or_refuses_with_strict(run_pipeline,
                                                                             tmp_path):
    state, summary = run_pipeline(pipeline("rerun-changed"))
    run_id = str(state.state_details.flow_run_id)
    (tmp_path / "pipeline.yaml").write_text(pipeline("rerun-changed") + "# edited\n")
    (tmp_path / "fixed").touch()
    strict = ansflow("retry", run_id, "--strict")
    assert strict.returncode == 1
    assert "changed since the run; --strict: not retried" in strict.stderr
    assert counts(tmp_path)["1"] == 1
    out = ansflow("retry", run_id, "--json")
    assert out.returncode == 0, out.stderr
    assert "changed since the run: every step runs again" in out.stderr
    again = json.loads(out.stdout)
    assert again["build_number"] == summary["build_number"] and again["reused"] == []
    assert counts(tmp_path) == {"1": 2, "2": 2, "3": 2, "4": 1, "5": 1, "f": 2}


def test_retry_refuses_bad_and_unknown_ids(prefect_server):
    bad = ansflow("retry", "not-a-uuid")
    assert bad.returncode == 2 and "is not a flow run id" in bad.stderr
    unknown = ansflow("retry", "00000000-0000-4000-8000-000000000000")
    assert unknown.returncode == 1 and "is not in the ansflow store" in unknown.stderr
    assert "Traceback" not in bad.stderr + unknown.stderr


def test_retry_start_reuses_completed_and_skipped_steps_with_storable_outputs(tmp_path):
    from ansflow.flows.rerun import retry_start
    from ansflow.spec.validate import load_plan

    path = tmp_path / "p.yaml"
    path.write_text(pipeline("unit"))
    plan = load_plan(path)
    previous = {"build_number": 4, "file_sha256": plan.source_sha256}
    results = {
        "s1": {"state": "completed", "exit_code": 0, "outputs": {"v": "x"}},
        "s2": {"state": "completed", "exit_code": 0, "outputs": None},  # held a secret
        "s3": {"state": "skipped", "exit_code": None, "outputs": {}},
        "s4": {"state": "failed", "exit_code": 1, "outputs": {}},
        "f": {"state": "completed", "exit_code": 0, "outputs": {}},  # finally: runs again
    }
    start = retry_start(plan, previous, results)
    assert start.build_number == 4 and start.retry
    assert list(start.reused) == ["s1", "s3"]
    assert start.note == ("retry of build #4: 2 step(s) reused from the earlier attempt, "
                          "3 run again (s2, s4, s5)")
    changed = retry_start(plan, {**previous, "file_sha256": "0" * 64}, results)
    assert changed.build_number == 4 and changed.reused == {}
    assert "the pipeline file changed" in changed.note


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
                                   "file_sha256": "ab" * 32}
        assert store.step_results("r1") == {
            "a": {"state": "completed", "exit_code": 0, "outputs": {"k": "v"}},
            "b": {"state": "failed", "exit_code": 2, "outputs": None}}
        store.record_steps("r1", [])  # replaced, not added to
        assert store.step_results("r1") == {}
    finally:
        store.close()
