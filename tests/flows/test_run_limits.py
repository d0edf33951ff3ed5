"""Bounded parallelism, store failures that neither crash nor lose a run's record."""

from __future__ import annotations

from pathlib import Path

from fixtures_pipeline import by_id


def _intervals(folder: Path) -> list[tuple[float, float]]:
    spans = []
    for start in folder.glob("*.start"):
        end = start.with_suffix(".end")
        spans.append((float(start.read_text()), float(end.read_text())))
    return spans


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                    key=lambda ev: (ev[0], ev[1]))
    now = peak = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return peak


_STEP = ("      - {{id: s{i}, type: command, config: {{command: 'date +%s.%N > t/s{i}.start; "
         "sleep 0.4; date +%s.%N > t/s{i}.end'}}}}")


def _parallel(n: int, cap: int | None) -> str:
    head = "pipeline:\n  name: capped\n" + (f"  max_parallel: {cap}\n" if cap else "")
    body = "  stages:\n  - name: all\n    parallel: true\n    steps:\n"
    return head + body + "\n".join(_STEP.format(i=i) for i in range(n)) + "\n"


def test_max_parallel_caps_running_steps_and_the_rest_wait(run_pipeline, tmp_path):
    (tmp_path / "t").mkdir()
    state, summary = run_pipeline(_parallel(20, 3))
    assert state.is_completed(), summary["message"]
    assert all(s["state"] == "completed" for s in summary["steps"])
    spans = _intervals(tmp_path / "t")
    assert len(spans) == 20
    assert _max_overlap(spans) <= 3


def test_worker_ceiling_caps_a_pipeline_asking_for_more(run_pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("ANSFLOW_MAX_PARALLEL", "2")
    (tmp_path / "t").mkdir()
    state, summary = run_pipeline(_parallel(8, 6))
    assert state.is_completed(), summary["message"]
    assert len(by_id(summary)) == 8
    spans = _intervals(tmp_path / "t")
    assert len(spans) == 8 and _max_overlap(spans) <= 2


# -- C: store errors ------------------------------------------------------------------------
import socket  # noqa: E402
import sqlite3  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402

_MARKER_STEP = """\
pipeline:
  name: {name}
  steps:
    - {{id: touch, type: command, config: {{command: 'touch ran'}}}}
"""


@pytest.fixture
def own_store(tmp_path_factory, monkeypatch):
    """A store of this test's own: SQLite under a fresh ANSFLOW_HOME (outside the workspace,
    where ansflow requires its state to be)."""
    monkeypatch.delenv("ANSFLOW_DATABASE_URL", raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("ANSFLOW_HOME", str(home))
    return home


def test_unusable_ansflow_home_fails_the_run_with_one_message(run_pipeline, tmp_path,
                                                               tmp_path_factory, monkeypatch):
    monkeypatch.delenv("ANSFLOW_DATABASE_URL", raising=False)
    outside = tmp_path_factory.mktemp("homes")
    (outside / "a-file").write_text("not a directory")
    # root ignores file modes: a path under a regular file cannot be created by anyone
    monkeypatch.setenv("ANSFLOW_HOME", str(outside / "a-file" / "home"))
    state, _ = run_pipeline(_MARKER_STEP.format(name="home-broken"))
    assert state.is_failed()
    assert state.message.startswith("the run did not start: the ansflow store cannot be "
                                    "created under ANSFLOW_HOME"), state.message
    assert "Traceback" not in state.message and "\n" not in state.message
    assert not (tmp_path / "ran").exists()


def test_locked_sqlite_store_fails_the_run_with_one_message(run_pipeline, tmp_path, own_store,
                                                            monkeypatch):
    from ansflow.store import Store

    Store().close()  # the database exists; now another process holds it locked
    holder = sqlite3.connect(own_store / "ansflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setenv("ANSFLOW_DATABASE_BUSY_TIMEOUT", "1")
    try:
        started = time.monotonic()
        state, _ = run_pipeline(_MARKER_STEP.format(name="locked"))
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert state.is_failed()
    assert "could not allocate a build number: (sqlite3.OperationalError) database is locked" \
        in state.message or "database is locked" in state.message, state.message
    assert "Traceback" not in state.message and "\n" not in state.message
    assert not (tmp_path / "ran").exists()
    assert waited < 60


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_postgres_down_fails_the_run_naming_the_store_without_its_password(run_pipeline,
                                                                          tmp_path, monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("ANSFLOW_DATABASE_URL",
                       f"postgresql+psycopg2://ansflow:s3cret-pw@127.0.0.1:{port}/ansflow")
    state, _ = run_pipeline(_MARKER_STEP.format(name="pg-down"))
    assert state.is_failed()
    assert f"127.0.0.1:{port}" in state.message and "could not be opened" in state.message
    assert "s3cret-pw" not in state.message and "\n" not in state.message
    assert not (tmp_path / "ran").exists()


def test_failing_record_end_still_publishes_artifacts_and_event(run_pipeline, tmp_path,
                                                                own_store, caplog):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    name = f"end-{uuid.uuid4().hex[:8]}"
    # The step makes the store unusable while the run goes on (the database file becomes a
    # directory): the end of the run cannot be recorded.
    text = f"""\
pipeline:
  name: {name}
  steps:
    - id: break_store
      type: command
      config: {{command: 'rm -f {own_store}/ansflow.db*; mkdir {own_store}/ansflow.db'}}
"""
    caplog.set_level("WARNING")
    state, summary = run_pipeline(text)
    assert state.is_completed(), state.message
    assert summary["steps"][0]["state"] == "completed"
    warnings = [r.getMessage() for r in caplog.records if "could not record the run's end" in
                r.getMessage()]
    assert len(warnings) == 1 and str(own_store) in warnings[0]
    assert "artifacts and event are published anyway" in warnings[0]
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        [table] = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[f"ansflow-{name}"])))
        assert table.flow_run_id == flow_run_id
        body = {"filter": {"event": {"name": ["ansflow.pipeline.completed"]},
                           "any_resource": {"id": [f"ansflow.pipeline.{name}"]},
                           "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 5}
        deadline = time.monotonic() + 30
        while True:
            events = client.request("POST", "/events/filter", json=body).json()["events"]
            if events or time.monotonic() > deadline:
                break
            time.sleep(1)
    assert len(events) == 1
