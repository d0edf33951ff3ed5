"""The built-in kinds ansflow names itself: the same in every cluster, so no discovery call."""

from __future__ import annotations

from ansflow.engines.kube_objects import Resource

PODS = Resource("v1", "Pod", "pods", True)
SECRETS = Resource("v1", "Secret", "secrets", True)
CONFIGMAPS = Resource("v1", "ConfigMap", "configmaps", True)
SERVICES = Resource("v1", "Service", "services", True)
EVENTS = Resource("v1", "Event", "events", True)
QUOTAS = Resource("v1", "ResourceQuota", "resourcequotas", True)
NAMESPACES = Resource("v1", "Namespace", "namespaces", False)
NODES = Resource("v1", "Node", "nodes", False)
DEPLOYMENTS = Resource("apps/v1", "Deployment", "deployments", True)
REPLICASETS = Resource("apps/v1", "ReplicaSet", "replicasets", True)
CONTROLLER_REVISIONS = Resource("apps/v1", "ControllerRevision", "controllerrevisions", True)
