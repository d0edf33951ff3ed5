"""Cleanup (ansflow.upkeep.cleanup, flows/cleanup.py, `ansflow cleanup`): pure rules first,
then against the store and the suite's Prefect server (the dev cluster: test_cleanup_kube.py;
the Docker engine: test_cleanup_docker.py).

Everything a test creates carries a pipeline label of its own and every cleanup here is
limited to that pipeline, so other tests' objects, containers and images are never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from ansflow.engines.kube_pod import STEP_POD_LABEL
from ansflow.runtime.k8s_manifests import EXPIRES_ANNOTATION, EXPIRES_LABEL, add_expiry
from ansflow.spec.steps import K8sDeployConfig, expiry_seconds
from ansflow.upkeep.cleanup import (
    BUILD_LABEL,
    KEEP_ANNOTATION,
    PIPELINE_LABEL,
    RUN_LABEL,
    CleanupOptions,
    RunState,
    RunStates,
)
from ansflow.upkeep.cleanup_docker import plan_images
from ansflow.upkeep.cleanup_kube import judge_expired, judge_run_object

ANSFLOW = [sys.executable, "-m", "ansflow.cli"]
NOW = datetime(2026, 1, 10, tzinfo=timezone.utc)


def _states(**given: RunState) -> RunStates:
    states = RunStates()
    states.cache.update(given)
    return states


# ---- pure ----------------------------------------------------------------------------------


def test_expire_after_accepts_days_hours_and_refuses_nonsense_clearly():
    assert expiry_seconds("2d") == 172800 and expiry_seconds("1d12h") == 129600
    assert expiry_seconds("30m") == 1800 and expiry_seconds(90) == 90
    assert K8sDeployConfig(cluster="c", manifest="x", expire_after=3600).expire_after == "3600s"
    assert K8sDeployConfig(cluster="c", manifest="x",
                           expire_after="{{ vars.ttl }}").expire_after == "{{ vars.ttl }}"
    for bad, message in (("2y", "is not a duration"), ("0h", "longer than 0"),
                         ("9999d", "at most 3650d")):
        with pytest.raises(ValueError, match=message):
            K8sDeployConfig(cluster="c", manifest="x", expire_after=bad)
    with pytest.raises(ValueError, match="not to helm"):
        K8sDeployConfig(cluster="c", helm={"chart": "c", "release": "r"}, expire_after="2d")


def test_a_bad_expire_after_fails_validation_with_one_line(tmp_path):
    (tmp_path / "p.yaml").write_text(
        "pipeline:\n  name: review\n  steps:\n    - id: up\n      type: k8s_deploy\n"
        "      config: {cluster: c, manifest: 'x', expire_after: 2 weeks}\n")
    proc = subprocess.run([*ANSFLOW, "validate", str(tmp_path / "p.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # an invalid file, as elsewhere
    assert "p.yaml:6:" in proc.stdout + proc.stderr
    assert "expire_after '2 weeks' is not a duration" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_add_expiry_labels_and_annotates_every_object():
    objects = [{"kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "1"}}},
               {"kind": "Service", "metadata": {"name": "b"}}]
    when = add_expiry(objects, "2d", now=1_700_000_000)
    assert when == "2023-11-16T22:13:20Z"
    for obj in objects:
        assert obj["metadata"]["labels"][EXPIRES_LABEL] == str(1_700_000_000 + 172800)
        assert obj["metadata"]["annotations"][EXPIRES_ANNOTATION] == when
    assert objects[0]["metadata"]["labels"]["x"] == "1"


def test_run_objects_go_only_when_their_run_is_over_and_nothing_protects_them():
    states = _states(done=RunState(True, "Completed"), live=RunState(False, "Running"),
                     lost=RunState(None, "not known"))
    opts = CleanupOptions()

    def meta(run, ns="ci", **extra):
        return {"name": "p", "namespace": ns,
                "labels": {RUN_LABEL: run, STEP_POD_LABEL: "true"}, **extra}

    assert judge_run_object(meta("done"), "Pod", states, opts) is None
    assert "still running (Running)" in judge_run_object(meta("live"), "Pod", states, opts)
    assert "not known" in judge_run_object(meta("lost"), "Pod", states, opts)
    for ns in ("kube-system", "kube-public", "kube-node-lease"):
        assert "system namespace" in judge_run_object(meta("done", ns), "Pod", states, opts)
    kept = meta("done", annotations={KEEP_ANNOTATION: "true"})
    assert KEEP_ANNOTATION in judge_run_object(kept, "Pod", states, opts)
    owned = meta("done", ownerReferences=[{"kind": "Job", "name": "j", "controller": True}])
    assert "controlled by Job/j" in judge_run_object(owned, "Pod", states, opts)
    expiring = meta("done")
    expiring["labels"][EXPIRES_LABEL] = "1"
    assert "expire_after" in judge_run_object(expiring, "Pod", states, opts)
    # Only what ansflow made for a step goes: whatever k8s_deploy applied carries the run
    # labels too (a Job, a bare Pod, a Secret), and goes only by its expire_after.
    assert judge_run_object(meta("done"), "Secret", states, opts) is None
    for kind in ("Pod", "Job", "Secret"):
        deployed = meta("done")
        del deployed["labels"][STEP_POD_LABEL]
        assert "not a step pod's" in judge_run_object(deployed, kind, states, opts)
        deployed["labels"][STEP_POD_LABEL] = "yes"
        assert "not a step pod's" in judge_run_object(deployed, kind, states, opts)


def test_expired_objects_go_unexpired_and_kept_ones_stay():
    past, future = str(int((NOW - timedelta(hours=1)).timestamp())), \
        str(int((NOW + timedelta(hours=1)).timestamp()))
    assert judge_expired({"namespace": "a", "labels": {EXPIRES_LABEL: past}}, NOW) is None
    assert "expires at" in judge_expired({"namespace": "a", "labels": {EXPIRES_LABEL: future}},
                                         NOW)
    assert "unreadable" in judge_expired({"namespace": "a", "labels": {EXPIRES_LABEL: "x"}},
                                         NOW)
    assert KEEP_ANNOTATION in judge_expired({"namespace": "a", "labels": {EXPIRES_LABEL: past},
                                             "annotations": {KEEP_ANNOTATION: "true"}}, NOW)
    assert "system namespace" in judge_expired(
        {"namespace": "kube-system", "labels": {EXPIRES_LABEL: past}}, NOW)
    assert "system namespace" in judge_expired(  # the Namespace object itself
        {"name": "kube-public", "labels": {EXPIRES_LABEL: past}}, NOW)


def test_images_beyond_the_newest_builds_go_unless_used_or_kept():
    def image(n, pipeline="p", **labels):
        return {"Id": f"sha256:{pipeline}{n}", "Created": 1000 + n,
                "Labels": {PIPELINE_LABEL: pipeline, BUILD_LABEL: str(n), **labels}}

    images = [image(n) for n in range(1, 9)] + [image(1, "other"), dict(image(8), Id="sha256:p8b")]
    images[2]["Labels"][KEEP_ANNOTATION] = "true"
    remove, keep = plan_images(images, {"sha256:p2"}, 3)
    assert sorted(i["Id"] for i, _ in remove) == ["sha256:p1", "sha256:p4", "sha256:p5"]
    reasons = {i["Id"]: why for i, why in keep}
    assert reasons["sha256:p2"] == "used by a container"
    assert KEEP_ANNOTATION in reasons["sha256:p3"]
    assert "among the newest 3" in reasons["sha256:p8b"]  # two images of one build: one build
    assert "among the newest 3" in reasons["sha256:p6"] and "sha256:p7" in reasons
    assert "among the newest 3" in reasons["sha256:other1"]
    remove, _ = plan_images(images, set(), 3, pipelines={"other"})
    assert remove == []


# ---- the store and the CLI ---------------------------------------------------------------


def test_run_records_older_than_the_retention_go(prefect_server):
    from sqlalchemy import update

    from ansflow.store import Store, runs

    ids = {k: f"rec-{k}-{uuid.uuid4().hex[:8]}" for k in ("old", "new", "going")}
    store = Store()
    try:
        for rid in ids.values():
            store.record_start(rid, "records", 1)
        store.record_end(ids["old"], "completed")
        store.record_end(ids["new"], "completed")
        with store.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id.in_([ids["old"], ids["going"]]))
                         .values(started=datetime.now(timezone.utc) - timedelta(days=90)))
            conn.execute(update(runs).where(runs.c.run_id == ids["old"])
                         .values(finished=datetime.now(timezone.utc) - timedelta(days=40)))
        # The inventory's records of objects removed from a cluster go with the same rule.
        from ansflow.upkeep.inventory import Changes, Inventory, now

        cluster = f"rec-cluster-{uuid.uuid4().hex[:8]}"
        inventory = Inventory()
        try:
            for gen, (uid, age) in enumerate((("gone-long-ago", 40), ("gone-lately", 1))):
                row = {"cluster": cluster, "uid": uid, "kind": "pods", "namespace": "a",
                       "name": uid, "resource_version": "1", "first_seen": now(),
                       "last_seen": now(), "changed": now(), "removed": None, "fields": "{}",
                       "applied_time": None, "applied_fields": None, "drift": None}
                assert inventory.commit(cluster, 2 * gen, Changes(added=[row]))
                assert inventory.commit(cluster, 2 * gen + 1, Changes(removed=[uid]),
                                        when=now() - timedelta(days=age))
        finally:
            inventory.close()
        proc = subprocess.run([*ANSFLOW, "cleanup", "--records", "--retention-days", "30",
                               "--dry-run"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert {r for r, *_ in store.run_states(list(ids.values()))} == set(ids.values())
        proc = subprocess.run([*ANSFLOW, "cleanup", "--records", "--retention-days", "30"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "runrecords" in proc.stdout.lower()
        assert {r for r, *_ in store.run_states(list(ids.values()))} == {ids["new"],
                                                                        ids["going"]}
        inventory = Inventory()
        try:
            assert [o["uid"] for o in inventory.objects(cluster, removed=True)] == [
                "gone-lately"]
        finally:
            inventory.close()
    finally:
        store.close()


def test_cleanup_cli_exit_codes(prefect_server, tmp_path):
    nothing = subprocess.run([*ANSFLOW, "cleanup"], capture_output=True, text=True, timeout=60)
    assert nothing.returncode == 2 and "say what to clean up" in nothing.stderr
    unknown = subprocess.run([*ANSFLOW, "cleanup", "--cluster", "no-such-cluster"],
                             capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2, unknown.stderr
    assert "no saved Kubernetes cluster block named 'no-such-cluster'" in unknown.stderr
    bad = subprocess.run([*ANSFLOW, "cleanup", "--docker", "--keep-builds", "-1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    away = subprocess.run([*ANSFLOW, "cleanup", "--docker"], capture_output=True, text=True,
                          timeout=120,
                          env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert away.returncode == 1 and "unreachable" in away.stderr
    for proc in (nothing, unknown, bad, away):
        assert "Traceback" not in proc.stderr
