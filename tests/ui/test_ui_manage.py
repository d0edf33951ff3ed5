"""The Prefect UI in a real browser (Debian's chromium): `ansflow serve --manage`'s
deployment ansflow-k8s/scale started from its run form (the cluster chosen among the saved
blocks, the kind from its dropdown, the name and replica count typed in), and the
Deployment's replica count then seen in the dev cluster."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from kubernetes import client as k8s
from polling import until as _until

pytestmark = [pytest.mark.server, pytest.mark.k8s]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def _scale_deployment():
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name("ansflow-k8s/scale")
        except ObjectNotFound:
            return None


def _runs_of(deployment_id, namespace: str) -> list:
    """The runs of the deployment for ``namespace``: other tests on the same server run
    ansflow-k8s/scale too, each in a namespace of its own."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[deployment_id])))
    return [r for r in runs if (r.parameters or {}).get("namespace") == namespace]


def test_scale_from_the_run_form_changes_the_replica_count_in_the_cluster(
        serve, deploy, dev_cluster, submit_run_form):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    from playwright.sync_api import expect, sync_playwright

    from ansflow.blocks.kubernetes import KubernetesCluster

    # A second saved block, so the cluster field is a real choice.
    KubernetesCluster.from_kubeconfig_file(dev_cluster.kubeconfig).save("ui-other",
                                                                       overwrite=True)
    ns = dev_cluster.namespace("ui-scale")
    labels = {"app": "shop"}
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop"},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "main", "image": "example.invalid/app:1"}]}}}})
    proc = serve("--manage")

    def deployed():  # served by this process (an earlier serve may have left it behind)
        if proc.proc.poll() is not None:
            raise AssertionError(f"serve exited early:\n{proc.output()}")
        dep = _scale_deployment()
        choices = (dep.parameter_openapi_schema["properties"]["cluster"].get("enum") or []
                   if dep is not None else [])
        return dep if {dev_cluster.block_name, "ui-other"} <= set(choices) else None

    dep = _until(deployed, 90, "ansflow-k8s/scale with both clusters as choices")
    _until(lambda: "serving ansflow-k8s/scale" in proc.output(), 30, "serve to list it")
    time.sleep(2)  # the runner polls once its deployments exist
    ui = os.environ["PREFECT_API_URL"].removesuffix("/api")
    shots = _artifacts_dir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                page.goto(f"{ui}/v2/deployments/deployment/{dep.id}")
                page.get_by_role("button", name="Run", exact=True).click()
                page.get_by_role("menuitem", name="Custom run").click()
                _choose(page, "cluster", dev_cluster.block_name)
                page.get_by_label("namespace (Optional)", exact=True).fill(ns)
                _choose(page, "resource_type", "statefulset")
                _choose(page, "resource_type", "deployment")  # a real choice twice
                page.get_by_label("resource_name", exact=True).fill("shop")
                page.get_by_label("replicas", exact=True).fill("3")
                page.screenshot(path=str(shots / "ui-manage-scale-form.png"), full_page=True)
                for label, value in (("namespace (Optional)", ns), ("resource_name", "shop"),
                                     ("replicas", "3")):
                    expect(page.get_by_label(label, exact=True)).to_have_value(value)
                runs = submit_run_form(page, lambda: _runs_of(dep.id, ns),
                                       "the run the form created")
            except Exception:
                page.screenshot(path=str(shots / "ui-manage-scale-failed.png"), full_page=True)
                (shots / "ui-manage-scale-failed.html").write_text(page.content())
                raise
        finally:
            browser.close()
    [run] = runs
    ended = deploy.wait_final(run.id, timeout=180)
    assert ended.state.is_completed(), ended.state
    assert ended.parameters == {"cluster": dev_cluster.block_name, "namespace": ns,
                                "resource_type": "deployment", "resource_name": "shop",
                                "replicas": 3} | {k: v for k, v in ended.parameters.items()
                                                  if k in ("wait", "timeout")}
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("shop", ns)
    assert d.spec.replicas == 3 and d.status.ready_replicas == 3


def _choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the form's dropdown of field ``label``."""
    page.get_by_role("button", name=f"Select {label}", exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def _artifacts_dir():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    folder = Path(os.environ.get("ANSFLOW_TEST_ARTIFACTS") or root / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
