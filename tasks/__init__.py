"""The step types as public Prefect tasks, one per implemented type, named as the type.

Use them in any flow, as prefect-docker's tasks are used::

    from prefect import flow
    from ansflow.tasks import command, docker_build, k8s_deploy

    @flow
    def release():
        image = docker_build(image_name="shop/web", tag="1.4")["outputs"]["image"]
        k8s_deploy(cluster="prod", namespace="shop",
                   deployment_spec={"name": "web", "image": image})

Each module holds one step type (or a small family): pure helpers, the executor (what a
pipeline step of that type does) and the public task that runs it. A pipeline run runs the
same tasks (`ansflow.steptypes` maps each type to its task).

A task is loaded on first use, so a flow that only runs commands never imports the Docker
or Kubernetes clients. A task shares its name with its module (``ansflow.tasks.docker_build``);
the package attribute is always the task, so import a module's helpers with
``from ansflow.tasks.docker_build import ...`` (or ``importlib.import_module``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from ansflow.steptypes import REGISTRY

# type name -> the module that defines its task (from the registry: declared once).
_TASK_MODULES = {name: entry.task.split(":")[0] for name, entry in REGISTRY.items()
                 if entry.task is not None}

__all__ = ["StepOutput", *_TASK_MODULES]


class _TasksPackage(types.ModuleType):
    """This package: its step-type names are the public tasks, imported on first use; the
    import system naming a submodule of the same name never puts the module in their place."""

    def __getattr__(self, name: str) -> Any:
        if name == "StepOutput":
            from ansflow.runtime.public import StepOutput  # noqa: PLC0415

            return StepOutput
        module = _TASK_MODULES.get(name)
        if module is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        task = getattr(importlib.import_module(module), name)
        types.ModuleType.__setattr__(self, name, task)
        return task

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _TASK_MODULES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *__all__})


sys.modules[__name__].__class__ = _TasksPackage
