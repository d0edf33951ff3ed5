"""The secrets a pipeline run loads before its first step: the Secret blocks its templates
name, and the secret values of the credential blocks its steps name literally, so that the
run's masker knows them from the start."""

from __future__ import annotations

from typing import Any

from prefect.blocks.system import Secret

from ansflow.blocknames import check_block_name
from ansflow.errors import AnsflowError
from ansflow.masking import mask_checked
from ansflow.plan import Plan
from ansflow.steptypes import acts_on
from ansflow.templating import references


def secret_names(plan: Plan) -> list[str]:
    """Names used as `secrets.<NAME>` anywhere in the plan's templates."""
    names: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str) and "secrets" in value:
            try:
                refs = references(value)
            except Exception:  # noqa: BLE001 - validation already reported it
                return
            names.update(r.parts[1] for r in refs if r.parts[0] == "secrets" and len(r.parts) > 1)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for step in plan.steps + plan.finally_steps:
        walk(step.config)
        walk(step.env)
        walk(step.when)
    return sorted(names)


def load_secrets(names: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in names:
        check_block_name(name, "secret")
        try:
            value = Secret.load(name, _sync=True).get()
        except ValueError as exc:
            raise AnsflowError(f"secret {name!r} is not saved: create a Prefect Secret block "
                               f"named {name!r} (prefect block create secret)") from exc
        value = value if isinstance(value, str) else str(value)
        mask_checked(None, [(f"secret {name!r}", value)])  # masked by the run, once
        values[name] = value
    return values


def credential_secrets(plan: Plan) -> list[str]:
    """The secret values of the credential blocks the plan's steps name literally (registry
    passwords, cluster tokens / keys / passwords), so that the run masks them from its first
    step on, not only from the step that uses them. A block that cannot be loaded is left to
    the step using it to report. The block modules (the Docker and Kubernetes clients) are
    imported only when a step names one: a plan without such steps does not load them (they
    cost ~12 MB of peak RSS and, imported here for every run, seconds before the first step)."""
    from ansflow.engines.docker_streams import looks_like_registry  # noqa: PLC0415

    registries: set[str] = set()
    clusters: set[str] = set()
    for step in plan.steps + plan.finally_steps:
        config = step.config if isinstance(step.config, dict) else {}
        where = acts_on(step.type, step.runs_on)
        keys = ("registry", "credentials") if where == "docker" else ()
        for key in keys:
            value = config.get(key)
            if isinstance(value, str) and "{{" not in value and value.strip() \
                    and not looks_like_registry(value.strip()):
                registries.add(value.strip())
        cluster = config.get("cluster") if where == "kubernetes" else None
        if isinstance(cluster, str) and cluster and "{{" not in cluster:
            clusters.add(cluster)
    values: list[str] = []
    if registries:
        from prefect_docker import DockerRegistryCredentials  # noqa: PLC0415 - heavy
    if clusters:
        from ansflow.blocks.kubernetes import KubernetesCluster  # noqa: PLC0415 - heavy
    for name in sorted(registries):
        try:
            values.append(DockerRegistryCredentials.load(name, _sync=True)
                          .password.get_secret_value())
        except Exception:  # noqa: BLE001,S112 - the step using it says what is wrong
            continue
    for name in sorted(clusters):
        try:
            values += [v for _what, v in KubernetesCluster.load(name, _sync=True).secret_values()]
        except Exception:  # noqa: BLE001,S112
            continue
    return values
