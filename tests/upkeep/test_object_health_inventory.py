"""Object health in the inventory: the additive migration of an existing store, the changes a
sync reports, and against the dev cluster and the suite's Prefect server, health stored on
every sync, the `ansflow.k8s.health.<status>` events and the health flow's counts."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client as k8s
from polling import until
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, create_engine
from sqlalchemy import inspect as sa_inspect

from ansflow.engines.object_health import Health
from ansflow.upkeep.inventory import (
    Changes,
    Inventory,
    Known,
    by_severity,
    health_change,
    missing_change,
    now,
    objects_health_text,
    total_by_health,
)
from ansflow.upkeep.sync import sync_cluster

# ---- an existing store -----------------------------------------------------------------------


def _old_store(url: str) -> None:
    """The inventory tables as a release before health created them, with one object."""
    meta = MetaData()
    objects = Table(
        "ansflow_k8s_objects", meta,
        Column("cluster", String(255), primary_key=True),
        Column("uid", String(64), primary_key=True),
        Column("kind", String(32), nullable=False),
        Column("namespace", String(253), nullable=False, default=""),
        Column("name", String(253), nullable=False),
        Column("resource_version", String(64), nullable=False),
        Column("first_seen", DateTime(timezone=True), nullable=False),
        Column("last_seen", DateTime(timezone=True), nullable=False),
        Column("changed", DateTime(timezone=True), nullable=False),
        Column("removed", DateTime(timezone=True)),
        Column("fields", Text, nullable=False),
        Column("applied_time", String(64)), Column("applied_fields", Text),
        Column("drift", Text))
    Table("ansflow_k8s_clusters", meta, Column("cluster", String(255), primary_key=True),
          Column("status", String(16)), Column("message", Text),
          Column("server_version", String(64)), Column("nodes_total", Integer),
          Column("nodes_ready", Integer), Column("pods_total", Integer),
          Column("pods_running", Integer), Column("pods_failing", Integer),
          Column("checks", Text), Column("last_health", DateTime(timezone=True)),
          Column("last_sync", DateTime(timezone=True)), Column("sync_summary", Text),
          Column("sync_generation", Integer, nullable=False, default=0))
    engine = create_engine(url)
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(objects.insert().values(
            cluster="old", uid="u1", kind="pods", namespace="ns", name="kept",
            resource_version="7", first_seen=now(), last_seen=now(), changed=now(),
            fields='{"phase": "Running"}'))
    engine.dispose()


def test_an_existing_store_gains_the_health_columns_and_keeps_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    _old_store(url)
    errors: list[BaseException] = []

    def open_it() -> None:  # several workers opening the old store at once
        try:
            Inventory(url).close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    columns = {c["name"] for c in sa_inspect(create_engine(url)).get_columns(
        "ansflow_k8s_objects")}
    assert {"health", "health_message"} <= columns
    with Inventory(url) as inv:
        [row] = list(inv.objects("old"))
        assert (row["name"], row["fields"], row["health"], row["health_message"]) == \
            ("kept", {"phase": "Running"}, None, None)
        assert inv.snapshot("old").known["u1"].health is None
        assert inv.health_counts("old") == {"pods": {"": 1}}
        # A sync's rows carry health, and the filter finds them.
        row = {"cluster": "old", "uid": "u2", "kind": "pods", "namespace": "ns",
               "name": "bad", "resource_version": "1", "first_seen": now(),
               "last_seen": now(), "changed": now(), "removed": None, "fields": "{}",
               "health": "Degraded", "health_message": "container 'a': CrashLoopBackOff"}
        assert inv.commit("old", 0, Changes(added=[row]))
        assert [o["name"] for o in inv.objects("old", health="Degraded")] == ["bad"]
        assert inv.health_counts("old") == {"pods": {"": 1, "Degraded": 1}}


# ---- what a sync reports ---------------------------------------------------------------------


def test_health_changes_are_news_not_noise():
    degraded, healthy = Health("Degraded", "boom"), Health("Healthy", "ok")
    known = Known("1", "pods", False, health="Healthy")
    assert health_change("Pod", "ns", "p", "u", degraded, known)["previous"] == "Healthy"
    assert health_change("Pod", "ns", "p", "u", healthy, known) is None  # unchanged
    assert health_change("Pod", "ns", "p", "u", healthy, None) is None  # a healthy newcomer
    new = health_change("Pod", "ns", "p", "u", degraded, None)
    assert (new["health"], new["previous"], new["message"]) == ("Degraded", None, "boom")
    # A row from before health was kept: its first assessment is no change.
    assert health_change("Pod", "ns", "p", "u", degraded, Known("1", "pods", False)) is None
    back = Known("1", "pods", True, health="Degraded")  # came back after removal
    assert health_change("Pod", "ns", "p", "u", healthy, back) is None
    applied = Known("1", "deployments", False, "2026-01-01T00:00:00Z", [], None, "ns", "web",
                    "Healthy")
    gone = missing_change("Deployment", "u", applied)
    assert (gone["health"], gone["name"], gone["previous"]) == ("Missing", "web", "Healthy")
    assert missing_change("Pod", "u", Known("1", "pods", False, health="Healthy")) is None
    ordered = by_severity([{"health": h} for h in ("Healthy", "Degraded", "Progressing",
                                                   "Unknown", "Missing")])
    assert [c["health"] for c in ordered] == ["Unknown", "Degraded", "Missing", "Progressing",
                                             "Healthy"]
    totals = total_by_health({"pods": {"Degraded": 2, "Healthy": 5},
                              "deployments": {"Healthy": 1, "": 3}})
    assert list(totals.items()) == [("Healthy", 6), ("Degraded", 2), ("", 3)]
    assert objects_health_text(totals) == \
        "; objects at the last sync: 6 Healthy, 2 Degraded, 3 not assessed"
    assert objects_health_text({}) == ""


# ---- against the dev cluster -----------------------------------------------------------------


def _deployment(name: str, **spec) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, **spec,
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": "main", "image": "example.invalid/a:1"}]}}}}


def _stuck_pod(api, ns: str) -> str:
    """A pod no node takes, its container shown in CrashLoopBackOff (as a kubelet would)."""
    core = k8s.CoreV1Api(api)
    core.create_namespaced_pod(ns, {"metadata": {"name": "crashy"}, "spec": {
        "nodeSelector": {"no-such-node": "x"},
        "containers": [{"name": "main", "image": "example.invalid/c:1"}]}})
    core.patch_namespaced_pod_status("crashy", ns, {"status": {"containerStatuses": [{
        "name": "main", "image": "example.invalid/c:1", "imageID": "", "ready": False,
        "restartCount": 4, "state": {"waiting": {
            "reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}},
        "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}}]}})
    return "crashy"


def _health(inv: Inventory, cluster: str, ns: str) -> dict:
    return {(o["kind"], o["name"]): (o["health"], o["health_message"])
            for o in inv.objects(cluster, namespace=ns)}


@pytest.mark.k8s
def test_every_sync_stores_each_object_s_health_and_reports_what_changed(
        dev_cluster, inventory, alias):
    from ansflow.engines.kube_objects import apply_object, resolve_kind

    name, block = alias("health")
    ns = dev_cluster.namespace("oh")
    with dev_cluster.client() as api:
        apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
        apps.create_namespaced_deployment(ns, _deployment("web"))
        apps.create_namespaced_deployment(ns, _deployment("held", paused=True))
        k8s.BatchV1Api(api).create_namespaced_job(ns, {
            "metadata": {"name": "later"}, "spec": {"suspend": True, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "example.invalid/j:1"}]}}}})
        core.create_namespaced_persistent_volume_claim(ns, {
            "metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": "none-such",
                "resources": {"requests": {"storage": "1Gi"}}}})
        core.create_namespaced_service(ns, {"metadata": {"name": "lb"}, "spec": {
            "type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": "web"}}})
        apply_object(api, resolve_kind(api, "v1", "ConfigMap"), {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "applied", "namespace": ns}, "data": {"k": "v"}})
        pod = _stuck_pod(api, ns)
        until(lambda: (apps.read_namespaced_deployment("web", ns).status.available_replicas
                       or 0) >= 1, 60, "web available")
    try:
        first = sync_cluster(name, block, inventory=inventory)
        health = _health(inventory, name, ns)
        assert health[("deployments", "web")][0] == "Healthy"
        assert health[("deployments", "held")] == ("Suspended", "Deployment is paused")
        assert health[("jobs", "later")][0] == "Suspended"
        assert health[("persistentvolumeclaims", "data")] == ("Progressing", "claim Pending")
        assert health[("services", "lb")][0] == "Progressing"
        assert health[("configmaps", "applied")] == ("Healthy", "exists")
        [namespace] = [o for o in inventory.objects(name, kind="namespaces") if o["name"] == ns]
        assert (namespace["health"], namespace["health_message"]) == ("Healthy", "Active")
        assert health[("pods", pod)] == (
            "Degraded", "container 'main': CrashLoopBackOff: back-off 40s restarting")
        assert any(k == "replicasets" and h == "Healthy" for (k, _), (h, _) in health.items())
        mine = {(c["kind"], c["name"]): c for c in first.health_changes
                if c["namespace"] == ns}
        # Newcomers are news unless healthy.
        assert set(mine) == {("Deployment", "held"), ("Job", "later"), ("Service", "lb"),
                             ("PersistentVolumeClaim", "data"), ("Pod", pod)}
        assert mine[("Pod", pod)]["previous"] is None
        assert inventory.health_counts(name)["pods"]["Degraded"] >= 1

        with dev_cluster.client() as api:
            k8s.AppsV1Api(api).patch_namespaced_deployment("held", ns,
                                                           {"spec": {"paused": False}})
            k8s.CoreV1Api(api).delete_namespaced_config_map("applied", ns)
            until(lambda: (k8s.AppsV1Api(api).read_namespaced_deployment(
                "held", ns).status.available_replicas or 0) >= 1, 60, "held available")
        second = sync_cluster(name, block, inventory=inventory)
        mine = {(c["kind"], c["name"]): c for c in second.health_changes
                if c["namespace"] == ns}
        assert mine[("Deployment", "held")]["previous"] == "Suspended"
        assert mine[("Deployment", "held")]["health"] == "Healthy"
        # What ansflow applied and someone deleted is Missing; the rest did not change.
        assert (mine[("ConfigMap", "applied")]["health"],
                mine[("ConfigMap", "applied")]["previous"]) == ("Missing", "Healthy")
        assert ("Pod", pod) not in mine and ("Deployment", "web") not in mine
        third = sync_cluster(name, block, inventory=inventory)
        assert not [c for c in third.health_changes if c["namespace"] == ns]

        # Rows a store kept before health: read once more, assessed, and no change reported.
        from sqlalchemy import update

        from ansflow.upkeep.inventory import objects as table
        with inventory.store.engine.begin() as conn:
            conn.execute(update(table).where(table.c.cluster == name, table.c.namespace == ns)
                         .values(health=None, health_message=None))
        fourth = sync_cluster(name, block, inventory=inventory)
        assert not [c for c in fourth.health_changes if c["namespace"] == ns]
        assert _health(inventory, name, ns)[("pods", pod)][0] == "Degraded"
        assert fourth.counts["pods"].changed >= 1
    finally:
        with dev_cluster.client() as api:  # the cluster's health tests must not see it
            k8s.CoreV1Api(api).delete_namespaced_pod(pod, ns, grace_period_seconds=0)


@pytest.mark.k8s
@pytest.mark.server
def test_a_change_of_health_is_an_event_and_the_health_flow_counts_objects(
        dev_cluster, alias, events):
    from ansflow.flows.health import health
    from ansflow.flows.sync import sync

    name, _ = alias("ohflow")
    ns = dev_cluster.namespace("ohflow")
    with dev_cluster.client() as api:
        pod = _stuck_pod(api, ns)
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, _deployment("held", paused=True))
    try:
        results = sync(clusters=[name])
        assert results[name]["health_changes"]
        [event] = events("ansflow.k8s.health.degraded", f"ansflow.k8s.pod.{name}.{ns}.{pod}")
        resource = event["resource"]
        assert resource["prefect.resource.name"] == f"pod/{pod}"
        assert (resource["ansflow.k8s.kind"], resource["ansflow.k8s.namespace"],
                resource["ansflow.k8s.cluster"]) == ("Pod", ns, name)
        assert event["payload"]["previous"] is None
        assert "CrashLoopBackOff" in event["payload"]["message"]
        assert any(r["prefect.resource.id"] == f"ansflow.k8s.cluster.{name}"
                   for r in event["related"])
        [suspended] = events("ansflow.k8s.health.suspended",
                             f"ansflow.k8s.deployment.{name}.{ns}.held")
        assert suspended["payload"]["message"] == "Deployment is paused"
        report = health(clusters=[name])[name]
        assert report["objects_by_health"]["Degraded"] >= 1
        assert report["objects_by_health"]["Healthy"] >= 1
        assert "objects at the last sync: " in report["message"]
        # The same objects, unchanged, emit nothing more at the next sync.
        sync(clusters=[name])
        time.sleep(2)
        assert len(events("ansflow.k8s.health.degraded",
                          f"ansflow.k8s.pod.{name}.{ns}.{pod}", count=2, timeout=5)) == 1
    finally:
        with dev_cluster.client() as api:
            k8s.CoreV1Api(api).delete_namespaced_pod(pod, ns, grace_period_seconds=0)
