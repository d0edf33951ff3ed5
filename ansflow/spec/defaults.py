"""Defaults that make the seed's examples mean what their authors meant.

- A k8s_* step without cluster/namespace takes them from `defaults.k8s`, else from the
  nearest earlier k8s step that names them; with neither, it is an error naming the step.
- A k8s_deploy with no deployment_spec/manifest/manifest_path/helm deploys the image of the
  pipeline's one earlier docker_build step (Deployment named after image_name, label
  app=<image_name>, one replica).
"""

from __future__ import annotations

from ansflow.plan import Plan, PlannedStep
from ansflow.spec.yaml_loader import Located, Path, Problem
from ansflow.steptypes import acts_on_kubernetes

_SOURCES = ("deployment_spec", "manifest", "manifest_path", "helm")


def apply_step_defaults(plan: Plan, located: Located, file: str,
                        path_of: dict[str, Path]) -> list[Problem]:
    problems: list[Problem] = []
    k8s_defaults = plan.defaults.get("k8s", {})
    last = {"cluster": k8s_defaults.get("cluster"), "namespace": k8s_defaults.get("namespace")}
    ordered = plan.steps + plan.finally_steps
    for index, step in enumerate(ordered):
        if not acts_on_kubernetes(step.type):
            continue
        for key in ("cluster", "namespace"):
            if step.config.get(key):
                if not k8s_defaults.get(key):
                    last[key] = step.config[key]
                continue
            value = k8s_defaults.get(key) or last[key]
            if value:
                step.config[key] = value
            else:
                problems.append(Problem(
                    file, located.value_pos(path_of[step.id]),
                    f"step {step.name!r} ({step.type}) names no {key}, and neither "
                    f"`defaults.k8s.{key}` nor an earlier k8s step gives one"))
        if step.type == "k8s_deploy" and not any(step.config.get(k) for k in _SOURCES):
            problem = _implicit_deployment(step, ordered[:index], located, file, path_of)
            if problem:
                problems.append(problem)
    return problems


def _implicit_deployment(step: PlannedStep, earlier: list[PlannedStep], located: Located,
                         file: str, path_of: dict[str, Path]) -> Problem | None:
    builds = [s for s in earlier if s.type == "docker_build"]
    if len(builds) != 1:
        why = "there is none" if not builds else (
            f"there are {len(builds)} ({', '.join(b.id for b in builds)})")
        return Problem(file, located.value_pos(path_of[step.id]),
                       f"step {step.name!r} (k8s_deploy) gives no deployment_spec, manifest, "
                       "manifest_path or helm, so it deploys the image of the pipeline's "
                       f"earlier docker_build step, but {why}")
    build = builds[0]
    name = str(build.config.get("image_name", "app"))
    step.config["deployment_spec"] = {
        "name": name,
        "image": "{{ steps.%s.outputs.image }}" % build.id,
        "replicas": 1,
        "labels": {"app": name},
    }
    return None
