"""`ansflow serve --upkeep`: the upkeep deployments on cron schedules, one run at a time."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest

from ansflow.flows.upkeep import UPKEEP, UpkeepJob, load_flow, schedules

pytestmark = pytest.mark.server


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_registry_defaults_overrides_and_missing_flows(monkeypatch):
    monkeypatch.delenv("ANSFLOW_SYNC_CRON", raising=False)
    monkeypatch.delenv("ANSFLOW_HEALTH_CRON", raising=False)
    monkeypatch.setenv("ANSFLOW_CLEANUP_CRON", "15 * * * *")
    assert schedules({"ansflow-health": "*/2 * * * *"}) == {
        "ansflow-sync": "*/5 * * * *", "ansflow-health": "*/2 * * * *",
        "ansflow-cleanup": "15 * * * *"}
    monkeypatch.setenv("ANSFLOW_SYNC_CRON", "every minute")
    with pytest.raises(Exception, match="ansflow-sync: 'every minute' is not a cron schedule"):
        schedules()
    from ansflow.flows.cleanup import cleanup_flow

    assert load_flow(UPKEEP["ansflow-cleanup"]) is cleanup_flow
    seen = _Lines()
    logging.getLogger("ansflow.upkeep").addHandler(seen)
    missing = UpkeepJob("ansflow-x", "ansflow.flows.no_such_module:x_flow", "* * * * *",
                        "ANSFLOW_X_CRON", "x")
    try:
        assert load_flow(missing) is None
        assert load_flow(UpkeepJob("ansflow-y", "ansflow.flows.cleanup:nope", "* * * * *",
                                   "Y", "y")) is None
    finally:
        logging.getLogger("ansflow.upkeep").removeHandler(seen)
    assert seen.lines == [
        "ansflow-x: skipped, ansflow.flows.no_such_module is not installed in this version",
        "ansflow-y: skipped, ansflow.flows.cleanup has no flow 'nope'"]


def test_a_bad_cron_is_refused_before_serving():
    proc = subprocess.run([sys.executable, "-m", "ansflow.cli", "serve", "--upkeep",
                           "--cleanup-cron", "61 * * * *"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "ansflow-cleanup: '61 * * * *' is not a cron schedule" in proc.stderr
    assert "Traceback" not in proc.stderr


def _deployment(name: str, proc, timeout: float = 90, cron: str | None = None):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            if proc.proc.poll() is not None:
                raise AssertionError(f"serve exited early:\n{proc.output()}")
            try:
                dep = client.read_deployment_by_name(name)
                if cron is None or [s.schedule.cron for s in dep.schedules] == [cron]:
                    return dep
            except ObjectNotFound:
                pass
            time.sleep(0.5)
    raise AssertionError(f"{name} not served after {timeout}s:\n{proc.output()}")


def _check_limit(dep) -> None:
    assert dep.global_concurrency_limit is not None
    assert dep.global_concurrency_limit.limit == 1
    assert dep.concurrency_options is not None
    assert str(dep.concurrency_options.collision_strategy.value) == "CANCEL_NEW"
    assert "ansflow-upkeep" in dep.tags and not dep.paused


def test_serve_upkeep_alone_serves_cleanup_hourly_with_a_limit_of_one(serve):
    proc = serve("--upkeep", env={"ANSFLOW_CLEANUP_CRON": ""})
    dep = _deployment("ansflow-cleanup/ansflow-cleanup", proc, cron="0 * * * *")
    _check_limit(dep)
    assert dep.entrypoint == "ansflow.flows.cleanup.cleanup_flow"
    assert [s.schedule.timezone for s in dep.schedules] in (["UTC"], [None])
    assert all(s.active for s in dep.schedules)
    for name, job in UPKEEP.items():
        assert load_flow(job) is not None, name
        dep = _deployment(f"{job.name}/{job.name}", proc, cron=job.cron)
        _check_limit(dep)
        assert dep.entrypoint == job.flow.replace(":", ".")
    out = proc.output()
    for name, job in UPKEEP.items():
        assert f"serving {name} on schedule {job.cron}" in out


def test_serve_upkeep_beside_pipelines_and_manage_with_schedules_from_env_and_options(
        serve, deploy, tmp_path, unique):
    (tmp_path / "p.yaml").write_text(deploy.pipeline_text(unique))
    proc = serve(str(tmp_path / "p.yaml"), "--manage", "--upkeep",
                 "--health-cron", "*/3 * * * *",
                 env={"ANSFLOW_CLEANUP_CRON": "*/20 * * * *",
                      "ANSFLOW_SYNC_CRON": "*/10 * * * *"})
    dep = _deployment("ansflow-cleanup/ansflow-cleanup", proc, cron="*/20 * * * *")
    _check_limit(dep)
    deploy.wait_for_deployment(unique, proc=proc)
    _deployment("ansflow-k8s/scale", proc)
    _deployment("ansflow-health/ansflow-health", proc, cron="*/3 * * * *")
    _deployment("ansflow-sync/ansflow-sync", proc, cron="*/10 * * * *")
    out = proc.output()
    assert "serving ansflow-health on schedule */3 * * * *" in out
    assert "serving ansflow-sync on schedule */10 * * * *" in out
