"""Defaults that make the seed's examples mean what their authors meant.

- A Kubernetes step without cluster/namespace takes them from `defaults.k8s`, else from the
  nearest k8s step that runs before it (by the run order: stage order and `needs`, not the
  order the file is written in); with neither, it is an error naming the step.
- Docker steps take `defaults.docker.host` (the engine) when they name none; docker_push /
  docker_pull take `defaults.docker.registry` / `.credentials` when they name neither; a
  command or script step that runs on docker takes `defaults.docker.image` and `.host`.
  Resolved here, so the steps themselves never read pipeline defaults.
- A k8s_deploy with no deployment_spec/manifest/manifest_path/helm deploys the image of the
  pipeline's one earlier docker_build step (Deployment named after image_name, label
  app=<image_name>, one replica).
"""

from __future__ import annotations

from ansflow.plan import Plan, PlannedStep, ancestors, topological
from ansflow.spec.yaml_loader import Located, Path, Problem
from ansflow.steptypes import acts_on_kubernetes, step_type

_SOURCES = ("deployment_spec", "manifest", "manifest_path", "helm")


def apply_step_defaults(plan: Plan, located: Located, file: str, path_of: dict[str, Path],
                        deps: dict[str, list[str]]) -> list[Problem]:
    problems: list[Problem] = []
    k8s_defaults = plan.defaults.get("k8s", {})
    main = [s.id for s in plan.steps]
    # The order the steps run in (dependencies first), then `finally`, which runs after all.
    order = topological(deps, main) + [s.id for s in plan.finally_steps]
    rank = {sid: i for i, sid in enumerate(order)}
    before = ancestors(deps)
    by_id = {s.id: s for s in plan.steps + plan.finally_steps}
    for index, sid in enumerate(order):
        step = by_id[sid]
        if not acts_on_kubernetes(step.type):
            continue
        runs_before = order[:index] if step.is_finally else before.get(sid, set())
        earlier_k8s = sorted((by_id[a] for a in runs_before if acts_on_kubernetes(by_id[a].type)),
                             key=lambda s: rank[s.id], reverse=True)
        for key in ("cluster", "namespace"):
            if step.config.get(key):
                continue
            value = k8s_defaults.get(key) or next(
                (s.config[key] for s in earlier_k8s if s.config.get(key)), None)
            if value:
                step.config[key] = value
            else:
                problems.append(Problem(
                    file, located.value_pos(path_of[step.id]),
                    f"step {step.name!r} ({step.type}) names no {key}, and neither "
                    f"`defaults.k8s.{key}` nor a k8s step that runs before it gives one"))
        if step.type == "k8s_deploy" and not any(step.config.get(k) for k in _SOURCES):
            earlier = [by_id[a] for a in order[:index]]
            problem = _implicit_deployment(step, earlier, located, file, path_of)
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


def apply_docker_defaults(plan: Plan) -> None:
    """Fill in `defaults.docker` where a step that talks to the Docker engine leaves it open."""
    docker = plan.defaults.get("docker") or {}
    for step in plan.steps + plan.finally_steps:
        target = step_type(step.type).target
        on_docker = target == "docker" or (target == "runs_on" and step.runs_on == "docker")
        if not on_docker:
            continue
        if docker.get("host") and not step.config.get("host"):
            step.config["host"] = docker["host"]
        if target == "runs_on" and docker.get("image") and not step.config.get("image"):
            step.config["image"] = docker["image"]
        if step.type in ("docker_push", "docker_pull") and not (
                step.config.get("registry") or step.config.get("credentials")):
            for key in ("registry", "credentials"):
                if docker.get(key):
                    step.config[key] = docker[key]
