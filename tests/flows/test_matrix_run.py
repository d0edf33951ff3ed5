"""Matrix steps run for real against the suite's Prefect server: one named task run per
combination, the values in its templates, outputs per combination, fail_fast, max_parallel."""

import time

from fixtures_pipeline import by_id, task_runs

MATRIX = """\
pipeline:
  name: matrix-2x3
  stages:
    - name: test
      steps:
        - name: Test
          id: test
          type: command
          matrix:
            python: ["3.11", "3.12"]
            os: [a, b, c]
            exclude: [{python: "3.12", os: c}]
          config:
            command: >-
              mkdir -p ran && echo "py={{ matrix.python }} os={{ matrix.os }}
              id=$ANSFLOW_STEP_ID" > ran/{{ matrix.python }}-{{ matrix.os }} &&
              echo "tag={{ matrix.python }}/{{ matrix.os }}" >> "$ANSFLOW_OUTPUT"
    - name: report
      steps:
        - name: Report
          id: report
          type: command
          config:
            command: >-
              echo "{{ steps.test.matrix['python=3.12,os=b'].outputs.tag }}
              {{ steps.test.status }}" > report.txt
"""


def test_a_2x3_matrix_with_an_exclude_runs_five_named_task_runs(run_pipeline, tmp_path):
    state, summary = run_pipeline(MATRIX)
    assert state.is_completed(), summary["message"]
    steps = by_id(summary)
    expected = {"3.11-a", "3.11-b", "3.11-c", "3.12-a", "3.12-b"}
    assert {p.name for p in (tmp_path / "ran").iterdir()} == expected
    assert (tmp_path / "ran" / "3.12-b").read_text().split() == ["py=3.12", "os=b", "id=test.5"]
    assert steps["test.5"]["outputs"] == {"tag": "3.12/b"}
    assert steps["test.5"]["matrix"] == {"python": "3.12", "os": "b"}
    assert steps["test.5"]["matrix_key"] == "python=3.12,os=b"
    # Outputs per combination reach later steps; the matrix step's status is the aggregate.
    assert (tmp_path / "report.txt").read_text().split() == ["3.12/b", "completed"]
    assert summary["matrix"]["test"]["state"] == "completed"
    assert summary["matrix"]["test"]["combinations"]["python=3.11,os=c"] == "test.3"
    names = {r.name: r for r in task_runs(state.state_details.flow_run_id)}
    assert set(names) == {"Test (python=3.11, os=a)", "Test (python=3.11, os=b)",
                          "Test (python=3.11, os=c)", "Test (python=3.12, os=a)",
                          "Test (python=3.12, os=b)", "Report"}
    assert all(r.state.is_completed() for r in names.values())


FAIL_FAST = """\
pipeline:
  name: matrix-fail-fast
  steps:
    - name: Test
      id: test
      type: command
      matrix:
        n: [1, 2, 3, 4]
        max_parallel: 2
      config:
        command: >-
          if [ {{ matrix.n }} = 1 ]; then sleep 1; exit 3; fi;
          touch started-{{ matrix.n }}; sleep 60; touch finished-{{ matrix.n }}
    - name: After
      id: after
      type: command
      config: {command: "touch after"}
"""


def test_fail_fast_cancels_the_running_combination_and_skips_the_pending(run_pipeline,
                                                                         tmp_path):
    began = time.monotonic()
    state, summary = run_pipeline(FAIL_FAST)
    took = time.monotonic() - began
    assert state.is_failed()
    steps = by_id(summary)
    assert steps["test.1"]["state"] == "failed" and steps["test.1"]["exit_code"] == 3
    assert steps["test.2"]["state"] == "cancelled"  # was running: killed
    assert (tmp_path / "started-2").exists() and not (tmp_path / "finished-2").exists()
    for sid in ("test.3", "test.4"):  # were waiting for a slot: never started
        assert steps[sid]["state"] == "not_run"
        assert steps[sid]["message"] == "fail_fast: combination 'n=1' failed"
    assert not (tmp_path / "started-3").exists() and not (tmp_path / "started-4").exists()
    assert steps["after"]["state"] == "not_run"
    assert steps["after"]["message"] == "needs 'test', which did not succeed"
    assert summary["matrix"]["test"]["state"] == "failed"
    assert took < 45, took  # not the 60 s sleep of the cancelled combination
    runs = {r.name: r for r in task_runs(state.state_details.flow_run_id)}
    assert runs["Test (n=1)"].state.is_failed()
    assert runs["Test (n=2)"].state.name == "Cancelled"
    assert runs["Test (n=3)"].state.name == "NotRun"


MAX_PARALLEL = """\
pipeline:
  name: matrix-max-parallel
  steps:
    - name: Test
      id: test
      type: command
      matrix:
        n: [1, 2, 3, 4, 5, 6]
        max_parallel: 2
        fail_fast: false
      config:
        command: >-
          python3 -c 'import time; print(time.time())' > start-{{ matrix.n }};
          sleep 1.5;
          python3 -c 'import time; print(time.time())' > end-{{ matrix.n }};
          [ {{ matrix.n }} != 3 ]
"""


def test_max_parallel_bounds_the_combinations_running_at_once(run_pipeline, tmp_path):
    state, summary = run_pipeline(MAX_PARALLEL)
    steps = by_id(summary)
    # fail_fast: false: the failing combination does not stop the others.
    assert steps["test.3"]["state"] == "failed"
    assert all(steps[f"test.{n}"]["state"] == "completed" for n in (1, 2, 4, 5, 6))
    assert state.is_failed() and summary["matrix"]["test"]["state"] == "failed"
    spans = [(float((tmp_path / f"start-{n}").read_text()),
              float((tmp_path / f"end-{n}").read_text())) for n in range(1, 7)]
    # The most combinations inside their sleep at any one moment (each start is a candidate).
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2, spans
