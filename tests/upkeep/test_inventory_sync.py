"""The inventory and the sync flow: against the dev cluster and the suite's Prefect server
(pure logic first: field summaries, managedFields paths, drift)."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from kubernetes import client as k8s
from typer.testing import CliRunner

from ansflow.upkeep import fields as F
from ansflow.upkeep.inventory import Changes, Inventory
from ansflow.upkeep.sync import SyncFailed, sync_cluster

# ---- pure logic ------------------------------------------------------------------------------


def test_a_secret_summary_keeps_type_and_key_names_only():
    secret = {"type": "Opaque", "data": {"password": base64.b64encode(b"hunter2").decode()},
              "stringData": {"token": "plain-text"}}
    summary = F.summarize("secrets", secret)
    assert summary == {"type": "Opaque", "keys": ["password", "token"]}
    assert "hunter2" not in json.dumps(summary) and "plain-text" not in json.dumps(summary)


def test_a_pod_summary_names_containers_waiting_reasons_and_owner():
    pod = {"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "name": "web-1"}],
                        "labels": {"app": "web"}},
           "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "a:1"}]},
           "status": {"phase": "Running", "podIP": "10.0.0.5",
                      "conditions": [{"type": "Ready", "status": "False"}],
                      "containerStatuses": [{
                          "name": "app", "ready": False, "restartCount": 7,
                          "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}
    s = F.summarize("pods", pod)
    assert s["owner"] == "ReplicaSet/web-1" and s["restarts"] == 7 and s["ready"] is False
    assert s["containers"] == [{"name": "app", "image": "a:1", "ready": False, "restarts": 7,
                                "waiting": "CrashLoopBackOff"}]


def test_hostile_values_are_bounded():
    cm = {"data": {f"k{i}": "v" for i in range(5000)}}
    assert len(F.summarize("configmaps", cm)["keys"]) == 1000
    ns = {"metadata": {"labels": {"x": "y" * 100000}}, "status": {"phase": 3}}
    assert len(F.summarize("namespaces", ns)["labels"]["x"]) == F.MAX_TEXT
    odd = {"spec": "not a mapping", "status": ["x"], "metadata": 7}
    for kind in F.KIND_NAMES:
        assert isinstance(F.summarize(kind, odd), dict)


def test_managed_fields_become_paths():
    fields = {"f:metadata": {"f:labels": {"f:app": {}}},
              "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                  'k:{"name":"web"}': {".": {}, "f:image": {}, "f:name": {}}}}}}}
    assert F.field_paths(fields) == {
        "metadata.labels.app", "spec.replicas",
        "spec.template.spec.containers[name=web].image",
        "spec.template.spec.containers[name=web].name"}


def test_drift_is_a_field_another_manager_took_over_not_a_controller_s_or_scaling():
    def own(applied, *others):
        return F.Ownership("t1", frozenset(applied), tuple(others))

    baseline = {"spec.replicas", "data.a", "data.b", "metadata.labels.x"}
    now = own({"metadata.labels.x"},
              ("kubectl-edit", "", frozenset({"data.a"})),
              ("kube-controller-manager", "", frozenset({"data.b"})),
              ("kubectl", "scale", frozenset({"spec.replicas"})))
    assert F.drifted_fields(baseline, now) == [{"field": "data.a", "manager": "kubectl-edit"}]
    gone = own(set())
    assert F.drifted_fields({"data.c"}, gone) == [{"field": "data.c", "manager": "(removed)"}]


def test_kind_names_accept_the_usual_short_names():
    assert F.kind_named("svc") == "services" and F.kind_named("Deployment") == "deployments"
    with pytest.raises(ValueError, match="unknown kind 'nodes'"):
        F.kind_named("nodes")


def test_a_stale_commit_is_superseded_and_purge_forgets_old_removed_rows(inventory):
    from ansflow.upkeep.inventory import now

    row = {"cluster": "u", "uid": "1", "kind": "pods", "namespace": "a", "name": "p",
           "resource_version": "1", "first_seen": now(), "last_seen": now(), "changed": now(),
           "removed": None, "fields": "{}", "applied_time": None, "applied_fields": None,
           "drift": None}
    assert inventory.commit("u", 0, Changes(added=[row]))
    assert not inventory.commit("u", 0, Changes(added=[{**row, "uid": "2"}]))  # stale
    assert [o["uid"] for o in inventory.objects("u")] == ["1"]
    assert inventory.commit("u", 1, Changes(removed=["1"]), when=now() - timedelta(days=3))
    assert inventory.purge_removed(timedelta(days=5)) == 0
    assert inventory.purge_removed(timedelta(days=1)) == 1
    assert list(inventory.objects("u", removed=True)) == []


# ---- against the dev cluster -----------------------------------------------------------------


def _present(inv: Inventory, cluster: str, ns: str, kind: str | None = None) -> dict:
    return {(o["kind"], o["name"]): o for o in inv.objects(cluster, kind=kind, namespace=ns)}


def _seed(dev_cluster, ns: str, secret_value: str) -> None:
    with dev_cluster.client() as api:
        core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
        core.create_namespaced_config_map(ns, {"metadata": {"name": "settings"},
                                               "data": {"mode": "fast", "level": "3"}})
        core.create_namespaced_secret(ns, {"metadata": {"name": "creds"}, "type": "Opaque",
                                           "stringData": {"password": secret_value}})
        core.create_namespaced_service(ns, {"metadata": {"name": "web"}, "spec": {
            "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
        apps.create_namespaced_deployment(ns, {
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "app",
                                                           "image": "example.invalid/w:1"}]}}}})


def _wait_pods(dev_cluster, ns: str, count: int) -> None:
    deadline = time.monotonic() + 60
    with dev_cluster.client() as api:
        while time.monotonic() < deadline:
            pods = k8s.CoreV1Api(api).list_namespaced_pod(ns).items
            if len([p for p in pods if p.status.phase == "Running"]) == count:
                return
            time.sleep(0.5)
    pytest.fail(f"{count} pods not running in {ns}")


@pytest.mark.k8s
def test_sync_adds_changes_and_removes_and_never_stores_a_secret_value(
        dev_cluster, inventory, inventory_url, alias):
    name, block = alias("sync")
    ns = dev_cluster.namespace("inv")
    secret_value = f"s3cret-{uuid.uuid4().hex}"
    _seed(dev_cluster, ns, secret_value)
    _wait_pods(dev_cluster, ns, 2)
    first = sync_cluster(name, block, inventory=inventory, page_size=7)
    assert first.outcome == "synced" and first.totals.changed == 0
    assert first.totals.added == first.totals.total >= 8
    seen = _present(inventory, name, ns)
    for item in seen.values():
        assert item["fields"].pop("created").endswith("Z")  # its creationTimestamp
    assert seen[("configmaps", "settings")]["fields"] == {"keys": ["level", "mode"]}
    assert seen[("secrets", "creds")]["fields"] == {"type": "Opaque", "keys": ["password"]}
    svc = seen[("services", "web")]["fields"]
    assert svc["type"] == "ClusterIP" and svc["ports"][0]["port"] == 80
    deploy = seen[("deployments", "web")]["fields"]
    assert deploy["images"] == ["example.invalid/w:1"] and deploy["replicas"] == 2
    pods = [o for (kind, _), o in seen.items() if kind == "pods"]
    assert len(pods) == 2 and all(p["fields"]["owner"].startswith("ReplicaSet/") for p in pods)
    assert all(p["fields"]["phase"] == "Running" and p["fields"]["node"] for p in pods)
    assert [o["name"] for o in inventory.objects(name, kind="namespaces")
            if o["name"] == ns] == [ns]

    again = sync_cluster(name, block, inventory=inventory)
    assert (again.totals.added, again.totals.removed) == (0, 0)
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.patch_namespaced_config_map("settings", ns, {"data": {"extra": "1"}})
        core.delete_namespaced_secret("creds", ns)
        core.create_namespaced_config_map(ns, {"metadata": {"name": "new"}})
    third = sync_cluster(name, block, inventory=inventory)
    assert third.counts["secrets"].removed == 1 and third.counts["configmaps"].added >= 1
    assert third.counts["configmaps"].changed >= 1
    cms = _present(inventory, name, ns, "configmaps")
    assert cms[("configmaps", "settings")]["fields"]["keys"] == ["extra", "level", "mode"]
    assert ("configmaps", "new") in cms and ("secrets", "creds") not in _present(
        inventory, name, ns)
    [gone] = [o for o in inventory.objects(name, kind="secrets", namespace=ns, removed=True)]
    assert gone["name"] == "creds" and gone["removed"] is not None
    record = inventory.cluster_record(name)
    assert record["last_sync"] is not None and record["sync_summary"]["counts"]["pods"]
    if inventory_url.startswith("sqlite"):
        db = Path(inventory_url.removeprefix("sqlite:///"))
        encoded = base64.b64encode(secret_value.encode())
        for path in db.parent.glob(db.name + "*"):  # the database, its WAL and journal
            data = path.read_bytes()
            assert secret_value.encode() not in data and encoded not in data, path


_CHILD = """
import sys, time
from ansflow.upkeep import sync as S
from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.upkeep.inventory import Inventory
pages = S.list_pages
def slow(*a, **k):
    for page in pages(*a, **k):
        print("page", flush=True)
        time.sleep(0.2)
        yield page
S.list_pages = slow
block = KubernetesCluster.from_kubeconfig_file(sys.argv[2])
S.sync_cluster(sys.argv[1], block, inventory=Inventory(sys.argv[3]), page_size=5)
print("done", flush=True)
"""


@pytest.mark.k8s
@pytest.mark.postgres
def test_a_sync_killed_mid_way_leaves_the_previous_inventory_whole(
        dev_cluster, inventory, inventory_url, alias):
    name, block = alias("kill")
    ns = dev_cluster.namespace("kill")
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        for i in range(6):
            core.create_namespaced_config_map(ns, {"metadata": {"name": f"cm-{i}"}})
    sync_cluster(name, block, inventory=inventory)
    before = {o["uid"]: o for o in inventory.objects(name, removed=True)}
    generation = inventory.snapshot(name).generation
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.delete_namespaced_config_map("cm-0", ns)
        core.create_namespaced_config_map(ns, {"metadata": {"name": "cm-late"}})
    child = subprocess.Popen([sys.executable, "-c", _CHILD, name, str(dev_cluster.kubeconfig),
                              inventory_url], stdout=subprocess.PIPE, text=True,
                             env={**os.environ})
    for _ in range(4):  # a few pages listed, then killed hard
        assert child.stdout.readline().strip() == "page"
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    after = {o["uid"]: o for o in inventory.objects(name, removed=True)}
    assert after == before and inventory.snapshot(name).generation == generation
    result = sync_cluster(name, block, inventory=inventory)
    assert result.counts["configmaps"].added >= 1 and result.counts["configmaps"].removed == 1
    names = {o["name"] for o in inventory.objects(name, kind="configmaps", namespace=ns)}
    assert names - {"kube-root-ca.crt"} == {"cm-late"} | {f"cm-{i}" for i in range(1, 6)}


def _sync_in_process(name: str, kubeconfig: str, url: str) -> tuple[str, int]:
    from ansflow.blocks.kubernetes import KubernetesCluster

    block = KubernetesCluster.from_kubeconfig_file(Path(kubeconfig))
    inv = Inventory(url)
    try:
        result = sync_cluster(name, block, inventory=inv, page_size=50)
    finally:
        inv.close()
    return result.outcome, result.totals.total


@pytest.mark.k8s
@pytest.mark.postgres
def test_two_processes_syncing_one_cluster_and_two_clusters_stay_consistent(
        dev_cluster, inventory, inventory_url):
    ns = dev_cluster.namespace("race")
    with dev_cluster.client() as api:
        for i in range(20):
            k8s.CoreV1Api(api).create_namespaced_config_map(ns, {"metadata": {"name": f"r{i}"}})
    same, other = f"race-{uuid.uuid4().hex[:6]}", f"race-{uuid.uuid4().hex[:6]}"
    kubeconfig = str(dev_cluster.kubeconfig)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        outcomes = pool.starmap(_sync_in_process, [(same, kubeconfig, inventory_url)] * 3
                                + [(other, kubeconfig, inventory_url)])
    assert [o for o, _ in outcomes[:3]].count("synced") >= 1
    assert set(o for o, _ in outcomes[:3]) <= {"synced", "superseded"}
    assert outcomes[3][0] == "synced"
    for cluster in (same, other):
        rows = list(inventory.objects(cluster))
        assert len({o["uid"] for o in rows}) == len(rows)  # each object once
        cms = {o["name"] for o in rows if o["kind"] == "configmaps" and o["namespace"] == ns}
        assert cms - {"kube-root-ca.crt"} == {f"r{i}" for i in range(20)}
        assert not list(o for o in inventory.objects(cluster, removed=True) if o["removed"])
    again = sync_cluster(same, dev_cluster.block(), inventory=inventory)
    assert again.outcome == "synced" and again.counts["configmaps"].added == 0


@pytest.mark.k8s
@pytest.mark.server
def test_drift_from_what_ansflow_applied_is_reported_not_scaling(
        dev_cluster, inventory, alias, events):
    from ansflow.engines.kube_objects import apply_object, request, resolve_kind
    from ansflow.flows.sync import sync

    name, block = alias("drift")
    flowed, _ = alias("drift-flow")  # the same cluster, synced by the flow (default store)
    ns = dev_cluster.namespace("drift")
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "api", "namespace": ns, "labels": {"tier": "back"}},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
                       "template": {"metadata": {"labels": {"app": "api"}}, "spec": {
                           "containers": [{"name": "app", "image": "example.invalid/a:1"}]}}}}
    with dev_cluster.client() as api:
        res = resolve_kind(api, "apps/v1", "Deployment")
        apply_object(api, res, deploy)
    first = sync_cluster(name, block, inventory=inventory)
    assert not [d for d in first.drift if d["namespace"] == ns]
    sync(clusters=[flowed])
    with dev_cluster.client() as api:  # a scale is not drift, an edit of the image is
        request(api, "PATCH", res.path(ns, "api") + "/scale", body={"spec": {"replicas": 3}},
                content_type="application/merge-patch+json",
                query=[("fieldManager", "kubectl")])
        request(api, "PATCH", res.path(ns, "api"), content_type="application/merge-patch+json",
                query=[("fieldManager", "kubectl-edit")],
                body={"metadata": {"labels": {"tier": "front"}}})
    second = sync_cluster(name, block, inventory=inventory)
    [drifted] = [d for d in second.drifted if d["namespace"] == ns]
    assert drifted["kind"] == "Deployment" and drifted["name"] == "api"
    assert drifted["fields"] == [{"field": "metadata.labels.tier", "manager": "kubectl-edit"}]
    sync(clusters=[flowed])
    [event] = events("ansflow.k8s.resource.drifted",
                     f"ansflow.k8s.{flowed}.deployment.{ns}.api")
    assert event["payload"]["fields"] == ["metadata.labels.tier"]
    assert event["payload"]["object"]["fields"][0]["manager"] == "kubectl-edit"
    third = sync_cluster(name, block, inventory=inventory)  # still drifted, not new
    assert not [d for d in third.drifted if d["namespace"] == ns]
    assert [d["name"] for d in third.drift if d["namespace"] == ns] == ["api"]
    with dev_cluster.client() as api:  # ansflow applies again: the drift is gone
        apply_object(api, res, deploy, force=True)
    fourth = sync_cluster(name, block, inventory=inventory)
    assert not [d for d in fourth.drift if d["namespace"] == ns]


@pytest.mark.k8s
def test_unreachable_and_forbidden_clusters_fail_the_sync_with_the_reason(
        dev_cluster, inventory):
    from ansflow.blocks.kubernetes import KubernetesCluster

    ca = (dev_cluster.paths.pki / "ca.crt").read_text()
    nowhere = KubernetesCluster(server="https://127.0.0.1:9", token="t",
                                certificate_authority=ca)
    with pytest.raises(SyncFailed, match="unreachable") as exc:
        sync_cluster("nowhere", nowhere, inventory=inventory)
    assert exc.value.status == "unreachable"
    bad = KubernetesCluster(server=dev_cluster.server, token="not-a-token",
                            certificate_authority=ca)
    with pytest.raises(SyncFailed, match="401 Unauthorized") as exc:
        sync_cluster("bad", bad, inventory=inventory)
    assert exc.value.status == "forbidden" and "not-a-token" not in str(exc.value)
    assert inventory.cluster_record("bad") is None  # nothing written


@pytest.mark.k8s
@pytest.mark.server
def test_the_sync_flow_publishes_an_artifact_and_events_and_the_cli_shows_the_inventory(
        dev_cluster, alias, events):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from ansflow.cli.app import app
    from ansflow.flows.sync import sync

    name, _ = alias("flow")
    ns = dev_cluster.namespace("flow")
    with dev_cluster.client() as api:
        k8s.CoreV1Api(api).create_namespaced_config_map(ns, {"metadata": {"name": "shown"},
                                                             "data": {"k": "v"}})
    results = sync(clusters=[name])
    assert results[name]["outcome"] == "synced" and results[name]["totals"]["added"] > 0
    [event] = events("ansflow.k8s.sync.completed", f"ansflow.k8s.cluster.{name}")
    assert event["payload"]["counts"]["configmaps"]["added"] >= 1
    with get_client(sync_client=True) as client:
        [table] = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[f"ansflow-sync-{name}"])))
    rows = {r["kind"]: r for r in json.loads(table.data)}
    assert set(rows) == set(F.KIND_NAMES) and rows["configmaps"]["added"] >= 1
    runner = CliRunner()
    out = runner.invoke(app, ["inventory", name, "--kind", "cm", "--namespace", ns, "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert "shown" in [o["name"] for o in doc["objects"]]
    assert doc["cluster"]["last_sync"] and all(o["kind"] == "configmaps" for o in doc["objects"])
    out = runner.invoke(app, ["sync", name])
    assert out.exit_code == 0, out.output
    line = next(li for li in out.output.splitlines() if li.startswith(name))
    assert line.split()[1] == "synced" and int(line.split()[2]) > 0
    out = runner.invoke(app, ["inventory", name, "--kind", "nodes"])
    assert out.exit_code == 2 and "unknown kind 'nodes'" in out.output
    out = runner.invoke(app, ["sync", "no-such-cluster"])
    assert out.exit_code == 2 and "no saved cluster named 'no-such-cluster'" in out.output
    out = runner.invoke(app, ["inventory", "never-synced"])
    assert out.exit_code == 1 and "has no inventory yet" in out.output
    for result in (out,):
        assert "Traceback" not in result.output
