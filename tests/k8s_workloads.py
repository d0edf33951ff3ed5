"""Object bodies, waits and a k8s_deploy call shared by the Kubernetes step tests."""

from __future__ import annotations

from kubernetes import client as k8s
from polling import until

from ansflow.spec.steps import K8sDeployConfig
from ansflow.tasks.k8s_deploy import execute_k8s_deploy

REVISION = "deployment.kubernetes.io/revision"


def deployment_body(name: str, replicas: int = 2, image: str = "example.invalid/app:1",
                    **pod_spec) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "containers": [{"name": "main", "image": image}], **pod_spec}}},
    }


def statefulset_body(name: str, replicas: int = 2, image: str = "example.invalid/db:1") -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "containers": [{"name": "main", "image": image}]}}},
    }


def ready_deployment(dev_cluster, ns: str, body: dict):
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        apps.create_namespaced_deployment(ns, body)
        name, want = body["metadata"]["name"], body["spec"]["replicas"]
        until(lambda: (apps.read_namespaced_deployment(name, ns).status.ready_replicas or 0)
              == want)


def set_image(dev_cluster, ns: str, name: str, image: str, revision: str) -> None:
    """A new pod template (a new revision), rolled out."""
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        apps.patch_namespaced_deployment(name, ns, {"spec": {"template": {"spec": {
            "containers": [{"name": "main", "image": image}]}}}})

        def rolled_out():
            d = apps.read_namespaced_deployment(name, ns)
            return (d.metadata.annotations.get(REVISION) == revision
                    and d.status.updated_replicas == d.spec.replicas
                    and (d.status.ready_replicas or 0) == d.spec.replicas
                    and (d.status.replicas or 0) == d.spec.replicas)

        until(rolled_out)


def daemonset_body(name: str, image: str) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": "main", "image": image}]}}}}


def configmap_body(name: str, **meta) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **meta},
            "data": {"a": "b"}}


def deploy(make_ctx, dev_cluster, ns, **kw):
    """Run k8s_deploy on the dev cluster (60 s timeout unless given); (ctx, result)."""
    ctx = make_ctx("k8s_deploy")
    kw.setdefault("timeout", 60)
    cfg = K8sDeployConfig(cluster=dev_cluster.block_name, namespace=ns, **kw)
    return ctx, execute_k8s_deploy(ctx, cfg)
