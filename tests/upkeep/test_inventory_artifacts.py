"""The sync flow publishes the inventory as browsable artifacts: against the dev cluster and
the suite's Prefect server. Stable keys (a second sync's artifacts are the latest of the same
keys), health in every row, links between them, and a real cluster object carrying markdown,
HTML, pipes and a huge value in what is shown, masked and escaped."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from kubernetes import client as k8s

from ansflow.upkeep import inventory_tables as T

pytestmark = [pytest.mark.k8s, pytest.mark.server]


def _latest(keys: list[str]) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(artifact_filter=ArtifactCollectionFilter(
            key=ArtifactCollectionFilterKey(any_=keys)))
    return {a.key: a for a in found}


def test_each_sync_publishes_the_cluster_and_namespace_tables_and_a_summary(
        dev_cluster, alias, monkeypatch, prefect_server):
    from prefect.blocks.system import Secret

    from ansflow.flows.sync import sync

    secret = f"s3cr3t-{uuid.uuid4().hex[:12]}"
    block = f"invtest-{uuid.uuid4().hex[:8]}"
    Secret(value=secret).save(block, overwrite=True)
    monkeypatch.setenv("ANSFLOW_MANAGE_SECRET_BLOCKS", block)
    name, _ = alias("arts")
    ns = dev_cluster.namespace("arts")
    hostile_image = (f"registry.example/{secret}/app:1|<img src=x onerror=alert(1)>\n"
                     "| forged | row |\n[click](http://evil.example)**bold**" + "z" * 3000)
    labels = {"app": "hostile"}
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, {
            "metadata": {"name": "web", "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "main", "image": hostile_image}]}}}})
        k8s.CoreV1Api(api).create_namespaced_config_map(ns, {"metadata": {"name": "plain"}})

    results = sync(clusters=[name])
    assert results[name]["outcome"] == "synced"
    keys = [T.cluster_key(name), T.namespace_key(name, ns), T.summary_key(name)]
    first = _latest(keys)
    assert set(first) == set(keys)
    assert all(a.flow_run_id and a.task_run_id for a in first.values())  # on the sync's run

    rows = json.loads(first[T.namespace_key(name, ns)].data)
    by_name = {(r["kind"], r["name"]): r for r in rows}
    web = by_name[("Deployment", "web")]
    assert web["health"] in T.STATUSES and web["message"]
    assert web["replicas"].endswith("/1") and web["age"]
    assert by_name[("ConfigMap", "plain")]["health"] == "Healthy"
    # The hostile image: masked, escaped for the UI's markdown cells, one bounded cell.
    image = web["images"]
    assert secret not in image and "\\*\\*\\*" in image  # the mask, itself escaped
    assert "\\<img" in image and not re.search(r"(?<!\\)[<>\[\]()|]", image)
    assert "](http" not in image and len(image) < 2 * T.MAX_CELL
    assert "\n" not in image and "\\| forged \\| row \\|" in image  # one line, one cell
    for r in rows:
        assert set(r) == {"kind", "name", "health", "message", "age", "images", "replicas",
                          "drift"}

    cluster_rows = json.loads(first[T.cluster_key(name)].data)
    assert cluster_rows[0]["namespace"] == T.md("(all)") == "\\(all\\)"
    mine = next(r for r in cluster_rows if r["namespace"] == ns)
    assert mine["objects"] >= 2 and mine["Deployment"] == 1 and mine["health"] == "Healthy"

    summary = first[T.summary_key(name)].data
    assert f"/artifacts/key/{T.namespace_key(name, ns)})" in summary
    assert f"/artifacts/key/{T.cluster_key(name)})" in summary
    assert secret not in summary
    for artifact in first.values():
        assert secret not in (artifact.description or "")

    # A second sync: the same keys, newer artifacts (the Artifacts page shows the latest).
    sync(clusters=[name])
    second = _latest(keys)
    assert set(second) == set(keys)
    assert all(second[k].latest_id != first[k].latest_id for k in keys)
