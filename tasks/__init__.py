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
same tasks (`ansflow.steptypes` maps each type to its task). Note: a task shares its name
with its module (``ansflow.tasks.docker_build``); the package attribute is the task, so
import modules' helpers with ``from ansflow.tasks.docker_build import ...``.
"""

from ansflow.tasks.command import command, script
from ansflow.tasks.docker_build import docker_build
from ansflow.tasks.docker_pull import docker_pull
from ansflow.tasks.docker_push import docker_push
from ansflow.tasks.docker_run import docker_run
from ansflow.tasks.k8s_deploy import k8s_deploy
from ansflow.tasks.k8s_exec import k8s_exec
from ansflow.tasks.k8s_wait import k8s_wait
from ansflow.tasks.public import StepOutput

__all__ = ["StepOutput", "command", "script", "docker_build", "docker_run", "docker_push",
           "docker_pull", "k8s_deploy", "k8s_wait", "k8s_exec"]
