"""Which executor runs which step type. Executors are imported lazily by dotted path, so a
step type whose executor is not available fails that step with a clear error instead of
breaking the import of everything else."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ansflow.errors import StepFailed

# step type -> "module:function"; the function is ``execute(ctx, config) -> StepResult``.
EXECUTORS: dict[str, str] = {
    "command": "ansflow.tasks.command:execute_command",
    "script": "ansflow.tasks.command:execute_script",
    "ansible": "ansflow.tasks.ansible:execute_ansible",
    "docker_build": "ansflow.tasks.docker_build:execute_docker_build",
    "docker_run": "ansflow.tasks.docker_run:execute_docker_run",
    "docker_push": "ansflow.tasks.docker_push:execute_docker_push",
    "docker_pull": "ansflow.tasks.docker_pull:execute_docker_pull",
    "k8s_deploy": "ansflow.tasks.k8s_deploy:execute_k8s_deploy",
    "k8s_wait": "ansflow.tasks.k8s_wait:execute_k8s_wait",
    "k8s_exec": "ansflow.tasks.k8s_exec:execute_k8s_exec",
    "k8s_scale": "ansflow.tasks.k8s_manage:execute_k8s_scale",
    "k8s_delete": "ansflow.tasks.k8s_manage:execute_k8s_delete",
    "k8s_logs": "ansflow.tasks.k8s_manage:execute_k8s_logs",
    "k8s_rollback": "ansflow.tasks.k8s_manage:execute_k8s_rollback",
}


def load_executor(step_type: str) -> Callable:
    """The executor of ``step_type``; StepFailed('not available') when it does not exist yet."""
    target = EXECUTORS.get(step_type)
    if target is None:
        raise StepFailed(f"step type {step_type!r} is not available in this version of ansflow")
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise StepFailed(
                f"step type {step_type!r} is not available yet in this version of ansflow "
                "(its executor is not implemented)"
            ) from exc
        raise
    return getattr(module, func_name)
