"""The `delete_namespace` operation: what the namespace holds listed (counts by kind from a
live list) before it goes; the cluster's own namespaces and hostile names refused."""

from __future__ import annotations

import time

import pytest
from kubernetes import client as k8s

from ansflow.errors import StepFailed


def test_delete_namespace_is_registered_destructive_confirmed_by_its_name():
    from ansflow.manage import load_operations

    op = load_operations()["delete_namespace"]
    assert op.destructive and op.needs_confirmation({"resource_name": "review-1"}) == "review-1"


class NoSession:  # any use of the session fails with AttributeError
    pass


@pytest.mark.parametrize("name", ["kube-system", "kube-public", "kube-node-lease", "default"])
def test_the_clusters_own_namespaces_are_refused(name):
    from ansflow.manage.namespace_delete import delete_namespace

    with pytest.raises(StepFailed, match="never deleted"):
        delete_namespace(None, NoSession(), resource_name=name)


@pytest.mark.parametrize("name", ["../x", "a;rm -rf /", "{{ x }}", "a\x00b", "x" * 64, "Web",
                                  "-a", "", "kube-system/.."])
def test_hostile_names_are_refused_by_the_name_rules(name):
    from ansflow.manage.namespace_delete import delete_namespace

    with pytest.raises(StepFailed, match="resource_name"):
        delete_namespace(None, NoSession(), resource_name=name)


@pytest.mark.k8s
def test_delete_namespace_lists_what_it_holds_then_deletes_it(dev_cluster, run_op):
    from ansflow.manage.namespace_delete import delete_namespace

    ns = dev_cluster.namespace("doomed")
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        for i in range(3):
            core.create_namespaced_config_map(ns, {"metadata": {"name": f"c{i}"}})
        core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "data": {"k": "eA=="}})
        core.create_namespaced_service(ns, {"metadata": {"name": "svc"}, "spec": {
            "ports": [{"port": 80}], "selector": {"app": "x"}}})
        result, _ = run_op(delete_namespace, None, resource_name=ns)
        counts = result.before["objects"]
        assert counts["ConfigMap"] == "4"  # three and kube-root-ca.crt
        assert counts["Secret"] == "1" and counts["Service"] == "1"
        assert counts["Deployment"] == "0" and counts["ServiceAccount"] == "1"
        assert "| ConfigMap | 4 |" in result.markdown
        assert result.outputs["state"] in ("deleted", "terminating")
        status = core.read_namespace(ns).status.phase \
            if result.outputs["state"] == "terminating" else "gone"
        assert status in ("Terminating", "gone")
    with pytest.raises(StepFailed, match="not found"):
        run_op(delete_namespace, None, resource_name="ansflow-no-such-namespace")


@pytest.fixture
def served(dev_cluster, prefect_server, tmp_path):
    """`ansflow serve --manage` (its approval timeout 60 s) until the test ends."""
    import os
    import signal
    import subprocess
    import sys

    from polling import until

    log = tmp_path / "serve.log"
    env = {**os.environ, "ANSFLOW_APPROVAL_TIMEOUT": "60"}
    proc = subprocess.Popen([sys.executable, "-m", "ansflow.cli", "serve", "--manage"],
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        until(lambda: proc.poll() is not None
              or "serving ansflow-k8s/delete_namespace" in log.read_text(), 90, "serve")
        assert proc.poll() is None, log.read_text()
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        def deployed():
            with get_client(sync_client=True) as client:
                try:
                    return client.read_deployment_by_name("ansflow-k8s/delete_namespace")
                except ObjectNotFound:
                    return None

        until(deployed, 60, "the deployment")
        time.sleep(2)  # the runner polls for runs once the deployments exist
        yield log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)


def _state(run_id, check, timeout: float = 120):
    from polling import until
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return until(lambda: (lambda r: r if r.state and check(r.state) else None)(
            client.read_flow_run(run_id)), timeout, "the run's state")


@pytest.mark.k8s
@pytest.mark.server
def test_served_delete_namespace_waits_for_approval_a_rejection_keeps_it_confirm_deletes(
        served, dev_cluster):
    from prefect.deployments import run_deployment
    from prefect.flow_runs import resume_flow_run

    ns = dev_cluster.namespace("gated")
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_config_map(ns, {"metadata": {"name": "keep"}})
        started = run_deployment("ansflow-k8s/delete_namespace", timeout=0, parameters={
            "cluster": dev_cluster.block_name, "resource_name": ns})
        _state(started.id, lambda s: s.is_paused())
        assert core.read_namespace(ns).status.phase == "Active"
        resume_flow_run(started.id, run_input={"approve": False, "comment": "no"})
        ended = _state(started.id, lambda s: s.is_final())
        assert ended.state.is_failed()
        assert ended.state.message == (f"delete_namespace of {ns!r} was rejected (no); "
                                       "nothing was changed")
        assert core.read_namespace(ns).status.phase == "Active"
        done = run_deployment("ansflow-k8s/delete_namespace", timeout=180, poll_interval=0.5,
                              parameters={"cluster": dev_cluster.block_name,
                                          "resource_name": ns, "confirm": ns})
        assert done.state.is_completed(), done.state
        try:
            phase = core.read_namespace(ns).status.phase
        except k8s.ApiException as exc:
            assert exc.status == 404
            phase = "gone"
        assert phase in ("Terminating", "gone")
