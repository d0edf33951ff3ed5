"""What the end-to-end hostile-values test runs in: a workspace with the files the base
configs name, a namespace with the objects they act on, victims in other namespaces, and the
checks that nothing ran, nothing left the namespace and nothing leaked a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from hostile_values import KEY, config_for, path_text, placed
from kubernetes import client as k8s

from ansflow.spec.steps import PodSettings

VICTIM = "victim"
# A step that pauses the run (approval) would hold every other step of the pipeline.
NOT_IN_PIPELINES = {"approval"}
# Fields of a step in a pod: the real node (one at a time on the machine) is not for this
# test; the render layer covers them.
POD_ONLY = set(PodSettings.model_fields)
# What each engine is run end to end with (the render layer has every value in every field):
# ansible-playbook costs seconds of CPU a run, and is the engine that templates, so it gets
# the values made to be templated or to change the extra-vars file's structure; Docker
# templates nothing, so a Jinja or YAML value is one more string to it.
ENGINE_FAMILIES = {
    "ansible": {"jinja"},
    "docker_build": {"shell", "path", "bytes", "size"},
    "docker_run": {"shell", "path", "bytes", "size"},
    "docker_push": {"shell", "path", "bytes", "size"},
    "docker_pull": {"shell", "path", "bytes", "size"},
}
ENGINE_VALUES = {"ansible": {"yaml-document"}}


# The fields each type is run with end to end in the suite: one per seam a value crosses
# (block name, path, argv, shell text, image reference, Kubernetes name / selector /
# namespace, manifest, Helm, Ansible's vars); ANSFLOW_HOSTILE_FULL=1 runs every field the
# registry has (minutes), and the render layer always has every field.
E2E_FIELDS = {
    "command": {"command", "command.0", "shell", "working_dir", "host", "download.0", "image"},
    "script": {"script", "args.0", "interpreter", "file"},
    "ansible": {"extra_vars.hvkey", "limit", "hosts.0"},
    "docker_build": {"tag", "build_args.hvkey", "host"},
    "docker_run": {"image", "command", "env.hvkey", "volumes.0", "user"},
    "docker_push": {"registry", "credentials"},
    "docker_pull": {"image", "tag"},
    "k8s_deploy": {"cluster", "namespace", "deployment_spec.image", "manifest.hvkey",
                   "helm.values.hvkey", "helm.release"},
    "k8s_wait": {"resource_name", "condition"},
    "k8s_exec": {"pod", "command", "pod_selector"},
    "k8s_scale": {"resource_name"},
    "k8s_restart": {"resource_name"},
    "k8s_rollback": {"resource_name"},
    "k8s_delete": {"resource_name", "label_selector", "resource_type", "namespace"},
    "k8s_logs": {"pod", "container"},
}
FULL_ENV = "ANSFLOW_HOSTILE_FULL"
# (value, step id) not run end to end: it would hold the suite for minutes (the hole is
# reported by the render layer or the full run instead).
TOO_SLOW: dict[tuple[str, str], str] = {}


def runs_end_to_end(step_type: str, path, hostile) -> bool:
    if not os.environ.get(FULL_ENV) and path_text(path) not in E2E_FIELDS.get(step_type, ()):
        return False
    if (hostile.name, step_id(step_type, path)) in TOO_SLOW:
        return False
    families = ENGINE_FAMILIES.get(step_type)
    return families is None or bool(hostile.families & families) or \
        hostile.name in ENGINE_VALUES.get(step_type, ())


@dataclass
class World:
    cluster: str
    namespace: str
    victim_ns: str
    image: str
    registry: str
    ssh_host: str
    started: float = field(default_factory=time.time)


def prepare_cluster(dev_cluster) -> tuple[str, str]:
    """The test's namespace (an object of each kind the base configs name) and a victim
    namespace; a victim ConfigMap there and in kube-system."""
    ns, victim_ns = dev_cluster.namespace("hv"), dev_cluster.namespace("hv-victim")
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        for where in (victim_ns, "kube-system"):
            cm = {"metadata": {"name": VICTIM}, "data": {"k": "v"}}
            try:
                core.create_namespaced_config_map(where, cm)
            except k8s.ApiException as exc:
                if exc.status != 409:
                    raise
        core.create_namespaced_config_map(ns, {"metadata": {"name": "hv-present"},
                                               "data": {"k": "v"}})
        core.create_namespaced_pod(ns, {
            "metadata": {"name": "hv-pod", "labels": {"app": "hv-pod"}},
            "spec": {"containers": [{"name": "main", "image": "hv/app:1"}]}})
    return ns, victim_ns


def victims_intact(dev_cluster, world: World) -> list[str]:
    """What a request outside the test's namespace changed."""
    wrong = []
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        for where in (world.victim_ns, "kube-system"):
            try:
                core.read_namespaced_config_map(VICTIM, where)
            except k8s.ApiException as exc:
                wrong.append(f"configmap {VICTIM} in {where}: {exc.status}")
        names = [c.metadata.name for c in core.list_namespaced_config_map(
            world.victim_ns).items if c.metadata.name != "kube-root-ca.crt"]
        if names != [VICTIM]:
            wrong.append(f"namespace {world.victim_ns} now holds configmaps {names}")
        injected = [f"{c.metadata.namespace}/{c.metadata.name}" for c in
                    core.list_config_map_for_all_namespaces().items
                    if c.metadata.name.startswith("hv-injected")]
        if injected:
            wrong.append(f"injected objects: {injected}")
    return wrong


def audit_mark(dev_cluster) -> int | None:
    """Where the API server's audit log ends now; None when the dev cluster writes none."""
    log = getattr(dev_cluster.paths, "audit_log", None)
    return log.stat().st_size if log is not None and log.exists() else None


_WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def audited_escapes(dev_cluster, world: World, mark: int | None) -> list[str]:
    """Requests since ``mark`` (audit_mark) that reached outside the test's namespace: into
    another namespace, at a victim or an injected object, or a cluster-scoped write; []
    without an audit log (the victims' survival is checked anyway)."""
    if mark is None:
        return []
    with dev_cluster.paths.audit_log.open("rb") as log:
        log.seek(mark if mark <= log.seek(0, 2) else 0)  # rotated meanwhile: all of it
        lines = log.read().splitlines()
    out = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if "OpenAPI-Generator" not in event.get("userAgent", ""):
            continue  # the cluster's own components (Go clients), not ansflow's Python client
        uri, ref = event.get("requestURI", ""), event.get("objectRef") or {}
        namespace, verb = ref.get("namespace"), event.get("verb")
        if (ref.get("name") in (VICTIM, "hv-injected")
                or namespace not in (None, world.namespace)
                or (namespace is None and verb in _WRITES and ref.get("resource"))):
            out.append(f"{verb} {uri[:200]} ({event.get('responseStatus', {}).get('code')})")
    return out


def marks_left(token_prefix: str, *roots: Path) -> list[str]:
    """Files named after the run's mark, under /tmp and ``roots``."""
    name = Path(token_prefix).name
    found = [str(p) for p in Path("/tmp").glob(name + "*")]
    for root in roots:
        proc = subprocess.run(["find", str(root), "-maxdepth", "6", "-name", f"*{name[-12:]}*"],
                              capture_output=True, text=True, check=False)
        found += proc.stdout.split()
    return sorted(set(found))


def write_workspace(ws: Path, base_image: str) -> None:
    """The files the base configs name."""
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "hv-script.sh").write_text("true\n")
    (ws / "hv-inventory.ini").write_text(
        "hvhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n")
    (ws / "hv-playbook.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        f"    - copy: {{content: \"{{{{ {KEY} | default('') }}}}\", "
        "dest: \"{{ playbook_dir }}/hv-ansible-{{ hvstep | default('x') }}.out\"}\n")
    (ws / "hv-context").mkdir(exist_ok=True)
    (ws / "hv-context" / "Dockerfile").write_text(
        f"FROM {base_image}\nARG {KEY}\nRUN true\n")
    (ws / "hv-manifest.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hv-file}\ndata: {k: v}\n")
    chart = ws / "hv-chart"
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: hv-chart\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text(f"{KEY}: x\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hv-helm}\n"
        f"data: {{v: {{{{ .Values.{KEY} | quote }}}}}}\n")


def step_id(step_type: str, path) -> str:
    return re.sub(r"[^a-z0-9_]", "_", f"{step_type}__{path_text(path)}".lower())


def runs_on(step_type: str, path) -> str | None:
    """Where a command or script step with this field templated runs; None: not here."""
    if step_type not in ("command", "script"):
        return None
    top = path[0]
    if top == "image":
        return "docker"
    if top in ("host", "upload_workspace", "download"):
        return "remote"
    if top in POD_ONLY:
        return "skip"
    return "local"


def pipeline_steps(world: World, leaves, hostile=None) -> list[dict]:
    """One step per (type, field) the pipeline for ``hostile`` runs, each with its field
    templated."""
    steps = []
    for step_type, path in leaves:
        if step_type in NOT_IN_PIPELINES or (
                hostile is not None and not runs_end_to_end(step_type, path, hostile)):
            continue
        where = runs_on(step_type, path)
        if where == "skip":
            continue
        config = _filled(config_for(step_type, path), world)
        step = {"id": step_id(step_type, path), "type": step_type, "allow_failure": True,
                "timeout": 30, "config": config}
        if where and where != "local":
            step["runs_on"] = where
            if where == "docker":
                pass
            elif where == "remote" and placed(step_type, path)[0] != "host":
                config["host"] = world.ssh_host
        if where == "docker" and "image" not in config:
            config["image"] = world.image
        if step_type == "ansible":
            config.setdefault("extra_vars", {})
            config["extra_vars"]["hvstep"] = step["id"]
            config["ansible_cfg"] = config.get("ansible_cfg") or {
                "defaults": {"interpreter_python": "/usr/bin/python3"}}
        steps.append(step)
    return steps


def _filled(config, world: World):
    if isinstance(config, str):
        return (config.replace("{image}", world.image).replace("{registry}", world.registry)
                .replace("{ssh_host}", world.ssh_host))
    if isinstance(config, dict):
        return {k: _filled(v, world) for k, v in config.items()}
    if isinstance(config, list):
        return [_filled(v, world) for v in config]
    return config
