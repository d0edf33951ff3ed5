"""Kubernetes kinds without a cluster: where a kind's objects live in the REST API
(:class:`Resource`), the built-in kinds ansflow names itself (the same in every cluster, so no
discovery call), and the one table of the names users write for common kinds (``deploy``,
``svc``, ``statefulsets``...).

Pure: no client import, so the pipeline language and the inventory can read the table without
loading the Kubernetes client.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from ansflow.engines.kube_names import check_name, check_namespace


@dataclass(frozen=True)
class Resource:
    """Where objects of one kind live in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of the kind (in `namespace`), or of one object.

        Raises:
            KubeNameError: `namespace` or `name` breaks the API server's rules for it (a
                ``..`` would otherwise reach another namespace or kind).
        """
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if namespace:
            check_namespace(namespace)  # even where unused: a bad value is a mistake
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is None:
            return base
        return f"{base}/{quote(check_name(name, self.kind), safe='')}"

    def ref(self, name: str, namespace: str | None = None) -> str:
        """`kind/name` (with the namespace when it has one), for messages."""
        where = f" in namespace {namespace}" if self.namespaced and namespace else ""
        return f"{self.kind.lower()}/{name}{where}"


PODS = Resource("v1", "Pod", "pods", True)
SECRETS = Resource("v1", "Secret", "secrets", True)
CONFIGMAPS = Resource("v1", "ConfigMap", "configmaps", True)
SERVICES = Resource("v1", "Service", "services", True)
EVENTS = Resource("v1", "Event", "events", True)
QUOTAS = Resource("v1", "ResourceQuota", "resourcequotas", True)
NAMESPACES = Resource("v1", "Namespace", "namespaces", False)
NODES = Resource("v1", "Node", "nodes", False)
PVCS = Resource("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True)
SERVICE_ACCOUNTS = Resource("v1", "ServiceAccount", "serviceaccounts", True)
DEPLOYMENTS = Resource("apps/v1", "Deployment", "deployments", True)
STATEFULSETS = Resource("apps/v1", "StatefulSet", "statefulsets", True)
DAEMONSETS = Resource("apps/v1", "DaemonSet", "daemonsets", True)
REPLICASETS = Resource("apps/v1", "ReplicaSet", "replicasets", True)
CONTROLLER_REVISIONS = Resource("apps/v1", "ControllerRevision", "controllerrevisions", True)
JOBS = Resource("batch/v1", "Job", "jobs", True)
CRONJOBS = Resource("batch/v1", "CronJob", "cronjobs", True)
INGRESSES = Resource("networking.k8s.io/v1", "Ingress", "ingresses", True)
HPAS = Resource("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True)

# The names users write for common kinds (singular, plural, kubectl's short name) -> the kind;
# any other name goes to the cluster's discovery documents.
KIND_ALIASES: dict[str, Resource] = {name: res for names, res in (
    (("deployment", "deployments", "deploy"), DEPLOYMENTS),
    (("statefulset", "statefulsets", "sts"), STATEFULSETS),
    (("daemonset", "daemonsets", "ds"), DAEMONSETS),
    (("replicaset", "replicasets", "rs"), REPLICASETS),
    (("job", "jobs"), JOBS),
    (("cronjob", "cronjobs", "cj"), CRONJOBS),
    (("pod", "pods", "po"), PODS),
    (("service", "services", "svc"), SERVICES),
    (("configmap", "configmaps", "cm"), CONFIGMAPS),
    (("secret", "secrets"), SECRETS),
    (("namespace", "namespaces", "ns"), NAMESPACES),
    (("persistentvolumeclaim", "persistentvolumeclaims", "pvc"), PVCS),
    (("serviceaccount", "serviceaccounts", "sa"), SERVICE_ACCOUNTS),
    (("ingress", "ingresses", "ing"), INGRESSES),
    (("horizontalpodautoscaler", "horizontalpodautoscalers", "hpa"), HPAS),
) for name in names}


def names_of(*kinds: str) -> dict[str, str]:
    """Every name users write for these kinds (``"Deployment"``...) -> the kind."""
    return {name: res.kind for name, res in KIND_ALIASES.items() if res.kind in kinds}
