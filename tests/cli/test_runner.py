"""ansflow/cli/runner.py in-process: the run uses the plan `ansflow run` validated."""

from __future__ import annotations


def test_a_run_uses_the_plan_it_validated_and_does_not_parse_the_file_again(prefect_server,
                                                                            tmp_path):
    from ansflow.cli.runner import run_pipeline
    from ansflow.spec.validate import load_plan

    path = tmp_path / "p.yaml"
    path.write_text("steps:\n  - {id: a, type: command, config: {command: 'echo v1 > marker'}}\n")
    plan = load_plan(path)
    # Edited between validation and the run: what was validated is what runs.
    path.write_text("steps:\n  - {id: a, type: command, config: {command: 'echo v2 > marker'}}\n")
    summary = run_pipeline(path, {}, live=False, plan=plan)
    assert summary["state"] == "completed", summary["message"]
    assert (tmp_path / "marker").read_text().strip() == "v1"
    # Without a plan the flow loads the file itself.
    assert run_pipeline(path, {}, live=False)["state"] == "completed"
    assert (tmp_path / "marker").read_text().strip() == "v2"
