"""The objects the create-or-update forms apply (pure): each builder checks every field of
its form against Kubernetes' rules first, then returns the manifest; a refused form raises one
StepFailed naming every problem, before anything reaches the cluster."""

from __future__ import annotations

import base64
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ansflow.errors import StepFailed
from ansflow.manage.validation import (
    Problems,
    check_data_keys,
    check_dns_1035,
    check_dns_label,
    check_env_names,
    check_int_or_percent,
    check_labels,
    check_port,
    check_port_name,
    check_quantity,
    check_subdomain,
    int_or_percent,
    shown,
)

QUOTA_NAME = "ansflow-quota"
MAX_DATA_BYTES = 1024 * 1024  # a ConfigMap's / Secret's data limit in etcd (1 MiB)
MAX_REPLICAS = 10_000
MAX_IMAGE_CHARS = 1024
SECRET_TYPES = ("Opaque", "kubernetes.io/basic-auth", "kubernetes.io/ssh-auth",
                "kubernetes.io/tls", "kubernetes.io/dockerconfigjson")
SecretType = Literal["Opaque", "kubernetes.io/basic-auth", "kubernetes.io/ssh-auth",
                     "kubernetes.io/tls", "kubernetes.io/dockerconfigjson"]
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]
Strategy = Literal["RollingUpdate", "Recreate"]
PullPolicy = Literal["IfNotPresent", "Always", "Never"]


class ServicePort(BaseModel):
    """One port of a Service (a nested form in the UI)."""

    model_config = ConfigDict(extra="forbid")

    port: int
    target_port: int | str | None = None  # default: the same as port; a name is allowed
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    node_port: int | None = None  # NodePort / LoadBalancer only; default: the server picks
    name: str = ""  # required when the Service has several ports


def _text_map(problems: Problems, where: str, value: dict | None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(f"{where} must be a mapping of names to text")
        return {}
    bad = [k for k, v in value.items() if not isinstance(v, str)]
    for key in bad:
        problems.add(f"{where}: the value of {shown(key)} must be text")
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def namespace_objects(name: str, labels: dict[str, str] | None, quota_cpu: str,
                      quota_memory: str, quota_pods: int | None) -> tuple[dict, dict | None]:
    """The Namespace and, when any quota field is set, its ResourceQuota ``ansflow-quota``
    (hard limits ``limits.cpu``, ``limits.memory``, ``pods``)."""
    problems = Problems("namespace")
    check_dns_label(problems, "name", name)
    labels = _text_map(problems, "labels", labels)
    check_labels(problems, "labels", labels)
    check_quantity(problems, "quota_cpu", quota_cpu)
    check_quantity(problems, "quota_memory", quota_memory)
    if quota_pods is not None and (isinstance(quota_pods, bool) or not isinstance(quota_pods, int)
                                   or quota_pods < 0):
        problems.add(f"quota_pods {shown(quota_pods)} must be a whole number >= 0")
    problems.raise_if_any()
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": name, **({"labels": labels} if labels else {})}}
    hard = {key: value for key, value in (("limits.cpu", quota_cpu),
                                          ("limits.memory", quota_memory),
                                          ("pods", None if quota_pods is None
                                           else str(quota_pods)))
            if value not in (None, "")}
    quota = {"apiVersion": "v1", "kind": "ResourceQuota",
             "metadata": {"name": QUOTA_NAME, "namespace": name},
             "spec": {"hard": {k: v.strip() for k, v in hard.items()}}} if hard else None
    return namespace, quota


def configmap_object(name: str, data: dict[str, str] | None,
                     labels: dict[str, str] | None) -> dict:
    """A ConfigMap of ``data`` (text values)."""
    problems = Problems("configmap")
    check_subdomain(problems, "name", name)
    data = _text_map(problems, "data", data)
    check_data_keys(problems, "data", list(data))
    labels = _text_map(problems, "labels", labels)
    check_labels(problems, "labels", labels)
    size = sum(len(k) + len(v.encode("utf-8")) for k, v in data.items())
    if size > MAX_DATA_BYTES:
        problems.add(f"data is {size} bytes: a ConfigMap holds at most {MAX_DATA_BYTES}")
    problems.raise_if_any()
    meta: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def check_secret_form(name: str, secret_type: str, keys: dict[str, str] | None,
                      labels: dict[str, str] | None) -> tuple[dict[str, str], dict[str, str]]:
    """The checked ``keys`` (secret key -> Prefect Secret block name) and labels of a secret
    form, before any block is loaded."""
    problems = Problems("secret")
    check_subdomain(problems, "name", name)
    if secret_type not in SECRET_TYPES:
        problems.add(f"type {shown(secret_type)} is not one of {', '.join(SECRET_TYPES)}")
    keys = _text_map(problems, "keys", keys)
    if not keys:
        problems.add("keys is empty: map each key of the Secret to the name of a saved "
                     "Prefect Secret block holding its value")
    check_data_keys(problems, "keys", list(keys))
    for key, block in keys.items():
        if not block.strip():
            problems.add(f"keys: {shown(key)} names no Prefect Secret block")
    labels = _text_map(problems, "labels", labels)
    check_labels(problems, "labels", labels)
    problems.raise_if_any()
    return keys, labels


def secret_object(name: str, secret_type: str, values: dict[str, str],
                  labels: dict[str, str]) -> dict:
    """A Secret whose ``data`` holds ``values`` base64-encoded (values already loaded)."""
    size = sum(len(k) + len(v.encode("utf-8")) for k, v in values.items())
    if size > MAX_DATA_BYTES:
        raise StepFailed(f"secret: refused, nothing was changed: the values are {size} bytes; "
                         f"a Secret holds at most {MAX_DATA_BYTES}")
    data = {k: base64.b64encode(v.encode("utf-8")).decode("ascii") for k, v in values.items()}
    meta: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": secret_type,
            "data": data}


def _resources(problems: Problems, requests_cpu: str, requests_memory: str, limits_cpu: str,
               limits_memory: str) -> dict:
    out: dict[str, dict[str, str]] = {}
    for group, key, value in (("requests", "cpu", requests_cpu),
                              ("requests", "memory", requests_memory),
                              ("limits", "cpu", limits_cpu), ("limits", "memory", limits_memory)):
        check_quantity(problems, f"{group}_{key}", value)
        if value:
            out.setdefault(group, {})[key] = value.strip()
    return out


def deployment_object(*, name: str, image: str, replicas: int, ports: list[int] | None,
                      env: dict[str, str] | None, requests_cpu: str, requests_memory: str,
                      limits_cpu: str, limits_memory: str, strategy: str, max_surge: str,
                      max_unavailable: str, labels: dict[str, str] | None,
                      image_pull_policy: str | None) -> dict:
    """A Deployment of one container (named as the Deployment), selector ``app=<name>``."""
    problems = Problems("deployment")
    check_subdomain(problems, "name", name)
    if len(name or "") > 63:
        problems.add(f"name {shown(name)} is longer than 63 characters (its pods' label "
                     "app=<name> could not hold it)")
    if not isinstance(image, str) or not image.strip() or len(image) > MAX_IMAGE_CHARS \
            or any(c.isspace() for c in image.strip()):
        problems.add(f"image {shown(image)} is not an image reference (e.g. nginx:1.27)")
    if isinstance(replicas, bool) or not isinstance(replicas, int) \
            or not 0 <= replicas <= MAX_REPLICAS:
        problems.add(f"replicas {shown(replicas)} must be a whole number 0-{MAX_REPLICAS}")
    ports = list(ports or [])
    for index, port in enumerate(ports):
        check_port(problems, f"ports[{index}]", port)
    if len(set(p for p in ports if isinstance(p, int))) != len(ports):
        problems.add("ports: a port is listed twice")
    env = _text_map(problems, "env", env)
    check_env_names(problems, "env", list(env))
    resources = _resources(problems, requests_cpu, requests_memory, limits_cpu, limits_memory)
    labels = _text_map(problems, "labels", labels)
    check_labels(problems, "labels", labels)
    if labels.get("app", name) != name:
        problems.add(f"labels: app must be the Deployment's name {shown(name)} (its selector)")
    if strategy not in ("RollingUpdate", "Recreate"):
        problems.add(f"strategy {shown(strategy)} is not RollingUpdate or Recreate")
    if strategy == "RollingUpdate":
        check_int_or_percent(problems, "max_surge", max_surge)
        check_int_or_percent(problems, "max_unavailable", max_unavailable)
        if not problems.items and int_or_percent(max_surge) in (0, "0%") \
                and int_or_percent(max_unavailable) in (0, "0%"):
            problems.add("max_surge and max_unavailable cannot both be 0")
    if image_pull_policy not in (None, "", "IfNotPresent", "Always", "Never"):
        problems.add(f"image_pull_policy {shown(image_pull_policy)} is not IfNotPresent, "
                     "Always or Never")
    problems.raise_if_any()
    all_labels = {"app": name, **labels}
    container: dict[str, Any] = {"name": name, "image": image.strip()}
    if image_pull_policy:
        container["imagePullPolicy"] = image_pull_policy
    if ports:
        container["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in ports]
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if resources:
        container["resources"] = resources
    spec_strategy: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        # Set explicitly, so that ansflow owns them and a later switch to Recreate drops them.
        spec_strategy["rollingUpdate"] = {"maxSurge": int_or_percent(max_surge),
                                          "maxUnavailable": int_or_percent(max_unavailable)}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(all_labels)},
        "spec": {"replicas": replicas, "strategy": spec_strategy,
                 "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": dict(all_labels)},
                              "spec": {"containers": [container]}}},
    }


def _service_ports(problems: Problems, ports: list | None, service_type: str) -> list[dict]:
    parsed: list[ServicePort] = []
    for index, raw in enumerate(ports or []):
        try:
            parsed.append(raw if isinstance(raw, ServicePort) else ServicePort.model_validate(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            problems.add(f"ports[{index}]{'.' + where if where else ''}: {first.get('msg')}")
    if not parsed and not problems.items:
        problems.add("ports is empty: a Service needs at least one port")
    out = []
    for index, port in enumerate(parsed):
        where = f"ports[{index}]"
        check_port(problems, f"{where}.port", port.port)
        if isinstance(port.target_port, str):
            check_port_name(problems, f"{where}.target_port", port.target_port)
        else:
            check_port(problems, f"{where}.target_port", port.target_port, optional=True)
        check_port(problems, f"{where}.node_port", port.node_port, optional=True)
        if port.node_port is not None and service_type == "ClusterIP":
            problems.add(f"{where}.node_port is set, but a ClusterIP Service has no node ports "
                         "(choose NodePort or LoadBalancer)")
        check_port_name(problems, f"{where}.name", port.name)
        if len(parsed) > 1 and not port.name:
            problems.add(f"{where}.name is empty: every port needs a name when there are "
                         "several")
        entry: dict[str, Any] = {"port": port.port, "protocol": port.protocol,
                                 "targetPort": port.target_port if port.target_port is not None
                                 else port.port}
        if port.name:
            entry["name"] = port.name
        if port.node_port is not None:
            entry["nodePort"] = port.node_port
        out.append(entry)
    keys = [(p["port"], p["protocol"]) for p in out]
    if len(set(keys)) != len(keys):
        problems.add("ports: the same port and protocol are listed twice")
    names = [p["name"] for p in out if p.get("name")]
    if len(set(names)) != len(names):
        problems.add("ports: two ports have the same name")
    return out


def service_object(*, name: str, service_type: str, ports: list | None,
                   selector: dict[str, str] | None, labels: dict[str, str] | None) -> dict:
    """A Service of ``service_type`` (selector default ``app=<name>``)."""
    problems = Problems("service")
    check_dns_1035(problems, "name", name)
    if service_type not in ("ClusterIP", "NodePort", "LoadBalancer"):
        problems.add(f"type {shown(service_type)} is not ClusterIP, NodePort or LoadBalancer")
    port_list = _service_ports(problems, ports, service_type)
    selector = _text_map(problems, "selector", selector)
    check_labels(problems, "selector", selector)
    labels = _text_map(problems, "labels", labels)
    check_labels(problems, "labels", labels)
    problems.raise_if_any()
    meta: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"type": service_type, "ports": port_list,
                     "selector": selector or {"app": name}}}
