"""The step types, declared once: each type's config model, its Prefect task, the outputs it
publishes and where it acts. The validator, the JSON Schema, `ansflow plan`, the README's
step table and the pipeline runner all read this table (pure data: no Prefect import; tasks
are named by dotted path and imported when a run needs them).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from ansflow.spec import steps as cfg
from ansflow.spec.common import StrictModel
from ansflow.spec.steps_k8s import K8sGetConfig, K8sListConfig

# Where a step acts. `runs_on`: a command or script, run where its `runs_on` says;
# `prefect`: on the flow run itself (an approval pauses it).
Target = Literal["runs_on", "docker", "kubernetes", "remote", "prefect"]


@dataclass(frozen=True)
class StepType:
    """One step type: everything the rest of ansflow needs to know about it."""

    name: str
    config: type[StrictModel]
    task: str | None  # "module:attribute" of its Prefect task; None: not implemented yet
    outputs: frozenset[str] | None  # the outputs it publishes; None: free-form key=value
    target: Target
    summary: str
    lands_with: str = ""  # for a type not implemented yet: the work that brings it

    @property
    def implemented(self) -> bool:
        return self.task is not None

    def load_task(self) -> Any:
        """The type's Prefect task (imports its module)."""
        if self.task is None:
            raise LookupError(f"step type {self.name!r} is not implemented in this version")
        module, attribute = self.task.split(":")
        return getattr(importlib.import_module(module), attribute)


def _t(name: str, config: type[StrictModel], task: str | None, outputs: set[str] | None,
       target: Target, summary: str, lands_with: str = "") -> StepType:
    return StepType(name, config, task, frozenset(outputs) if outputs is not None else None,
                    target, summary, lands_with)


REGISTRY: dict[str, StepType] = {t.name: t for t in (
    _t("command", cfg.CommandConfig, "ansflow.tasks.command:command", None, "runs_on",
       "a shell command line or an argv list"),
    _t("script", cfg.ScriptConfig, "ansflow.tasks.command:script", None, "runs_on",
       "an inline script or a script file, with an interpreter"),
    _t("ansible", cfg.AnsibleConfig, "ansflow.tasks.ansible:ansible",
       {"recap", "ok", "changed", "failed", "unreachable", "skipped"}, "remote",
       "an Ansible playbook (ansible-playbook), on SshHost blocks or an inventory file"),
    _t("docker_build", cfg.DockerBuildConfig, "ansflow.tasks.docker_build:docker_build",
       {"image", "image_id", "tags"}, "docker", "build an image with the Docker engine"),
    _t("docker_run", cfg.DockerRunConfig, "ansflow.tasks.docker_run:docker_run",
       {"exit_code", "container_id"}, "docker", "run a container to completion"),
    _t("docker_push", cfg.DockerPushConfig, "ansflow.tasks.docker_push:docker_push",
       {"digest", "image"}, "docker", "push an image to a registry"),
    _t("docker_pull", cfg.DockerPullConfig, "ansflow.tasks.docker_pull:docker_pull",
       {"image", "image_id", "digest"}, "docker", "pull an image from a registry"),
    _t("k8s_deploy", cfg.K8sDeployConfig, "ansflow.tasks.k8s_deploy:k8s_deploy",
       {"objects", "revision"}, "kubernetes",
       "apply a Deployment, manifests or a Helm chart, then wait for the rollout"),
    _t("k8s_wait", cfg.K8sWaitConfig, "ansflow.tasks.k8s_wait:k8s_wait",
       {"resource", "status"}, "kubernetes", "wait until an object reaches a condition"),
    _t("k8s_exec", cfg.K8sExecConfig, "ansflow.tasks.k8s_exec:k8s_exec",
       {"pod", "container", "stdout_tail"}, "kubernetes", "run a command in a pod"),
    _t("k8s_scale", cfg.K8sScaleConfig, "ansflow.tasks.k8s_scale:k8s_scale",
       {"previous_replicas", "replicas"}, "kubernetes",
       "scale a Deployment, StatefulSet or ReplicaSet, then wait for the new count"),
    _t("k8s_restart", cfg.K8sRestartConfig, "ansflow.tasks.k8s_restart:k8s_restart",
       {"restarted_at", "revision"}, "kubernetes",
       "restart a workload's pods (kubectl rollout restart), then wait for the rollout"),
    _t("k8s_delete", cfg.K8sDeleteConfig, "ansflow.tasks.k8s_delete:k8s_delete",
       {"deleted", "count"}, "kubernetes", "delete objects by name or selector, wait until gone"),
    _t("k8s_logs", cfg.K8sLogsConfig, "ansflow.tasks.k8s_logs:k8s_logs",
       {"pods", "lines"}, "kubernetes", "stream (or follow) the logs of pods"),
    _t("k8s_rollback", cfg.K8sRollbackConfig, "ansflow.tasks.k8s_rollback:k8s_rollback",
       {"revision", "new_revision"}, "kubernetes",
       "roll a workload back to the previous or a given revision, then wait for the rollout"),
    _t("k8s_list", K8sListConfig, "ansflow.tasks.k8s_list:k8s_list",
       {"count", "names", "items", "truncated"}, "kubernetes",
       "list objects of any kind with their health (kubectl get), never a Secret's values"),
    _t("k8s_get", K8sGetConfig, "ansflow.tasks.k8s_get:k8s_get",
       {"found", "kind", "name", "namespace", "uid", "resource_version", "health",
        "health_message", "keys", "object"}, "kubernetes",
       "read one object of any kind with its health; of a Secret, its key names only"),
    # Outputs: approved, comment and the step's own `fields` (validated per step).
    _t("approval", cfg.ApprovalConfig, "ansflow.tasks.approval:approval", None, "prefect",
       "pause the run until someone approves it (Prefect UI form or `ansflow approve`)"),
)}

STEP_TYPES: tuple[str, ...] = tuple(REGISTRY)
# Where command and script steps can run in this version (`runs_on`).
RUNS_ON_IMPLEMENTED: tuple[str, ...] = ("local", "docker", "remote", "kubernetes")
IMPLEMENTED: tuple[str, ...] = tuple(n for n, t in REGISTRY.items() if t.implemented)
CONFIG_MODELS: dict[str, type[StrictModel]] = {n: t.config for n, t in REGISTRY.items()}


def step_type(name: str) -> StepType:
    """The registry entry of ``name`` (KeyError when there is none)."""
    return REGISTRY[name]


def acts_on(name: str, runs_on: str) -> str:
    """Where a step of type ``name`` acts: its type's target, or for a command or script the
    step's ``runs_on`` (local, docker, kubernetes, remote)."""
    target = REGISTRY[name].target
    return runs_on if target == "runs_on" else target


def acts_on_kubernetes(name: str) -> bool:
    """Does a step of this type act on a Kubernetes cluster (cluster/namespace defaults)?"""
    entry = REGISTRY.get(name)
    return entry is not None and entry.target == "kubernetes"
