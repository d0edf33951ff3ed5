"""Checks of a resolved plan's steps that need the whole plan or the workspace: a step type
or runs_on this version cannot run, a remote step without a host, a static file path that
leaves the workspace, an ansible step's env reconfiguring Ansible. Each returns its problems
(FILE:LINE:COL), never raises."""

from __future__ import annotations

import os

from ansflow.paths import ALLOWED_HOST_PATHS_ENV, allowed_host_paths, lexically_outside
from ansflow.plan import Plan, PlannedStep
from ansflow.spec.ansible_cfg import ENV_REFUSED, ansible_env_names
from ansflow.spec.yaml_loader import Located, Path, Problem
from ansflow.steptypes import REGISTRY, RUNS_ON_IMPLEMENTED
from ansflow.templating import has_template


def not_implemented(step: PlannedStep, located: Located, file: str,
                     path: Path) -> list[Problem]:
    """A step type (or a runs_on) this version cannot run is refused here, not at run time."""
    entry = REGISTRY[step.type]
    if not entry.implemented:
        return [Problem(file, located.value_pos(path + ("type",)),
                        f"step {step.id!r}: step type {step.type!r} is not implemented in this "
                        f"version of ansflow (it lands with {entry.lands_with})")]
    if entry.target == "runs_on" and step.runs_on not in RUNS_ON_IMPLEMENTED:
        where = path + ("runs_on",) if path + ("runs_on",) in located.values else path + ("type",)
        return [Problem(file, located.value_pos(where),
                        f"step {step.id!r}: runs_on: {step.runs_on} is not implemented in "
                        f"this version of ansflow (implemented: "
                        f"{', '.join(RUNS_ON_IMPLEMENTED)})")]
    return []


def remote_without_host(plan: Plan, located: Located, file: str,
                         path_of: dict[str, Path]) -> list[Problem]:
    """A command or script step on remote must name its SshHost block (or the defaults)."""
    return [Problem(file, located.value_pos(path_of[s.id]),
                    f"step {s.id!r} runs on remote but names no host: set its config.host "
                    "(an SshHost block, see `ansflow host add`) or `defaults.remote.host`")
            for s in plan.steps + plan.finally_steps
            if REGISTRY[s.type].target == "runs_on" and s.runs_on == "remote"
            and not (isinstance(s.config, dict) and s.config.get("host"))]


def pod_without_image_or_cluster(plan: Plan, located: Located, file: str,
                                path_of: dict[str, Path]) -> list[Problem]:
    """A command or script step on kubernetes must have an image and a cluster."""
    problems = []
    for s in plan.steps + plan.finally_steps:
        if not (REGISTRY[s.type].target == "runs_on" and s.runs_on == "kubernetes"):
            continue
        config = s.config if isinstance(s.config, dict) else {}
        if not config.get("image"):
            problems.append(Problem(
                file, located.value_pos(path_of[s.id]),
                f"step {s.id!r} runs on kubernetes but names no image: set its config.image "
                "or `defaults.kubernetes.image`"))
        if not config.get("cluster"):
            problems.append(Problem(
                file, located.value_pos(path_of[s.id]),
                f"step {s.id!r} runs on kubernetes but names no cluster: set its "
                "config.cluster (a KubernetesCluster block, see `ansflow cluster add`) or "
                "`defaults.kubernetes.cluster`"))
    return problems


PATH_FIELDS = {
    "command": ("working_dir",), "script": ("working_dir", "file"),
    "docker_build": ("context", "dockerfile"), "k8s_deploy": ("manifest_path",),
}


def paths_outside(step: PlannedStep, located: Located, file: str,
                   path: Path, workspace: str) -> list[Problem]:
    """Static file paths that leave the workspace (absolute, or `..` out of it) are refused
    here; templated ones are checked at run time, after rendering (ansflow.paths)."""
    config = step.config if isinstance(step.config, dict) else {}
    found: list[tuple[Path, str, str]] = [
        (("config", key), key, config[key]) for key in PATH_FIELDS.get(step.type, ())
        if isinstance(config.get(key), str)]
    helm = config.get("helm")
    if step.type == "k8s_deploy" and isinstance(helm, dict):
        found += [(("config", "helm", k), f"helm.{k}", helm[k]) for k in ("values_file", "chart")
                  if isinstance(helm.get(k), str) and (k != "chart" or helm[k][:1] in "./")]
    volumes = config.get("volumes")
    if step.type == "docker_run" and isinstance(volumes, (list, dict)):
        items = (list(volumes.items()) if isinstance(volumes, dict)
                 else [(v, v) for v in volumes if isinstance(v, str)])
        for i, (key, item) in enumerate(items):
            host = str(key).split(":")[0] if isinstance(volumes, list) else str(key)
            at = ("config", "volumes", key if isinstance(volumes, dict) else i)
            if host.startswith(".") or "/" in host:
                found.append((at, "volume host path", host))
    problems = []
    allowed = allowed_host_paths()
    for at, what, value in found:
        if has_template(value) or not lexically_outside(value, workspace):
            continue
        resolved = os.path.normpath(value)
        if os.path.isabs(resolved) and any(
                resolved == a or resolved.startswith(a.rstrip("/") + "/") for a in allowed):
            continue
        where = path + at if path + at in located.values else path + ("config",)
        problems.append(Problem(file, located.value_pos(where), (
            f"step {step.id!r}: {what} {value!r} is outside the workspace; steps reach only "
            f"files under the pipeline's workspace unless the worker's operator allows a "
            f"host path in {ALLOWED_HOST_PATHS_ENV}")))
    return problems


def ansible_env(step: PlannedStep, located: Located, file: str, path: Path) -> list[Problem]:
    """An ansible step's env (its own and its stage's) may not set ANSIBLE_* variables;
    the step checks its whole env again when it runs."""
    if step.type != "ansible":
        return []
    problems = []
    for key in ansible_env_names(step.env):
        where = path + ("env", key) if path + ("env", key) in located.values else path + ("type",)
        problems.append(Problem(file, located.value_pos(where),
                                f"step {step.id!r}: env {key}: {ENV_REFUSED}"))
    return problems
