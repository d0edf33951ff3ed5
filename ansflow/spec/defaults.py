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

from ansflow.plan import Plan, PlannedStep, topological
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
    by_id = {s.id: s for s in plan.steps + plan.finally_steps}
    # The nearest k8s step before each step that gives a key, found in one pass in run
    # order (linear: a step's nearest is the best of its dependencies' own and nearest, so
    # no ancestor set is ever built). `finally` steps look at every step before them.
    rank = {sid: i for i, sid in enumerate(order)}
    nearest: dict[str, dict[str, str | None]] = {"cluster": {}, "namespace": {}}
    last_in_order: dict[str, str | None] = {"cluster": None, "namespace": None}
    builds: list[PlannedStep] = []
    for sid in order:
        step = by_id[sid]
        if acts_on_kubernetes(step.type):
            for key in ("cluster", "namespace"):
                if step.config.get(key):
                    continue
                source = (last_in_order[key] if step.is_finally
                          else _nearest(key, deps.get(sid, ()), by_id, nearest, rank))
                value = k8s_defaults.get(key) or (by_id[source].config[key] if source else None)
                if value:
                    step.config[key] = value
                else:
                    problems.append(Problem(
                        file, located.value_pos(path_of[step.id]),
                        f"step {step.name!r} ({step.type}) names no {key}, and neither "
                        f"`defaults.k8s.{key}` nor a k8s step that runs before it gives one"))
            if step.type == "k8s_deploy" and not any(step.config.get(k) for k in _SOURCES):
                problem = _implicit_deployment(step, builds, located, file, path_of)
                if problem:
                    problems.append(problem)
        for key in ("cluster", "namespace"):
            if not step.is_finally:
                nearest[key][sid] = _nearest(key, deps.get(sid, ()), by_id, nearest, rank)
            if acts_on_kubernetes(step.type) and step.config.get(key):
                last_in_order[key] = sid
        if step.type == "docker_build":
            builds.append(step)
    return problems


def _nearest(key: str, needs, by_id: dict[str, PlannedStep],  # noqa: ANN001
             nearest: dict[str, dict[str, str | None]], rank: dict[str, int]) -> str | None:
    """The latest (in run order) k8s step among ``needs`` and their ancestors giving ``key``."""
    best: str | None = None
    for dep in needs:
        step = by_id[dep]
        for candidate in ((dep if acts_on_kubernetes(step.type) and step.config.get(key)
                           else None), nearest[key].get(dep)):
            if candidate is not None and (best is None or rank[candidate] > rank[best]):
                best = candidate
    return best


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


def apply_remote_defaults(plan: Plan) -> None:
    """A command or script step that runs on remote takes `defaults.remote.host`."""
    host = (plan.defaults.get("remote") or {}).get("host")
    for step in plan.steps + plan.finally_steps:
        if (host and step_type(step.type).target == "runs_on" and step.runs_on == "remote"
                and not step.config.get("host")):
            step.config["host"] = host


_POD_KEYS = ("service_account", "node_selector", "tolerations", "resources")


def apply_kubernetes_defaults(plan: Plan) -> None:
    """A command or script step that runs on kubernetes (in a pod) takes its image, cluster,
    namespace and pod settings from `defaults.kubernetes`; image, cluster and namespace fall
    back to `defaults.docker.image` and `defaults.k8s`."""
    kube = plan.defaults.get("kubernetes") or {}
    k8s = plan.defaults.get("k8s") or {}
    docker = plan.defaults.get("docker") or {}
    fallback = {"image": kube.get("image") or docker.get("image"),
                "cluster": kube.get("cluster") or k8s.get("cluster"),
                "namespace": kube.get("namespace") or k8s.get("namespace")}
    fallback.update({key: kube.get(key) for key in _POD_KEYS})
    for step in plan.steps + plan.finally_steps:
        if not (step_type(step.type).target == "runs_on" and step.runs_on == "kubernetes"
                and isinstance(step.config, dict)):
            continue
        for key, value in fallback.items():
            if value and not step.config.get(key):
                step.config[key] = value

