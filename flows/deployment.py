"""Pipelines as Prefect deployments: one deployment per pipeline, its variables as parameters.

Prefect binds a flow run's parameters to the flow function's signature, so every pipeline
gets a flow whose keyword parameters are its variables. These flows are attributes of this
module made on demand (`pipeline_<hex of the name>`, PEP 562 `__getattr__`), which keeps the
deployments' entrypoints plain module paths: the serve process and each flow-run process
build the same flow from the served map (ansflow.serving) of their machine.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

from prefect import Flow, get_run_logger
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron
from prefect.states import Failed, State
from prefect.utilities.callables import ParameterSchema
from pydantic import ConfigDict

from ansflow.errors import AnsflowError
from ansflow.flows.pipeline import pipeline_flow, run_pipeline_file
from ansflow.plan import Plan
from ansflow.serving import flow_parameters, parameter_schema, served_entry

FLOW_NAME = "ansflow-pipeline"
SERVED_TAG = "ansflow-served"  # on served runs: the lost-run Automation watches only these
TAGS = ["ansflow", SERVED_TAG]
ATTRIBUTE_PREFIX = "pipeline_"
_EXTRA = "ansflow_more_variables"


class RunFormSchema(ParameterSchema):
    """A deployment parameter schema that keeps `additionalProperties: false`."""

    model_config = ConfigDict(extra="allow")


class VariablesFlow(Flow):
    """A pipeline's flow: its parameters are the pipeline's variables, passed on as given.

    The server has checked names and types against the deployment's schema; the pipeline
    checks them again against the file it runs (which may have changed since).
    """

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        values = {k: v for k, v in parameters.items() if k != _EXTRA and v is not None}
        values.update(parameters.get(_EXTRA) or {})
        return {_EXTRA: values}


def flow_attribute(name: str) -> str:
    """The module attribute (and entrypoint tail) of pipeline ``name``'s flow."""
    return ATTRIBUTE_PREFIX + name.encode("utf-8").hex()


def run_served(name: str, values: dict[str, Any]) -> State:
    """Run the file served as pipeline ``name`` on this machine with ``values``."""
    try:
        file = served_entry(name)["file"]
    except AnsflowError as exc:
        get_run_logger().error(str(exc))
        return Failed(message=str(exc))
    get_run_logger().info(f"pipeline file: {file}")
    # The file comes from this machine's signed served map, not from the run form.
    return run_pipeline_file(file, values, confined=False, run_form=True)


def pipeline_deployment_flow(name: str, variables: list[str]) -> VariablesFlow:
    """The flow of pipeline ``name``: one keyword parameter per variable."""

    def run(**values: Any) -> State:
        return run_served(name, values.get(_EXTRA, values))

    params = [inspect.Parameter(v, inspect.Parameter.KEYWORD_ONLY, default=None)
              for v in variables if v.isidentifier() and v != _EXTRA]
    params.append(inspect.Parameter(_EXTRA, inspect.Parameter.VAR_KEYWORD))
    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__name__ = run.__qualname__ = flow_attribute(name)
    run.__module__ = __name__
    run.__doc__ = f"Run the pipeline {name!r} (its variables are the parameters)."
    return VariablesFlow(
        run,
        name=FLOW_NAME,
        persist_result=False,
        log_prints=False,
        validate_parameters=True,
        on_cancellation=pipeline_flow.on_cancellation_hooks,
        on_crashed=pipeline_flow.on_crashed_hooks,
    )


def __getattr__(attr: str) -> VariablesFlow:
    """`pipeline_<hex>`: the flow of a pipeline served on this machine (entrypoints)."""
    if not attr.startswith(ATTRIBUTE_PREFIX):
        raise AttributeError(attr)
    try:
        name = bytes.fromhex(attr[len(ATTRIBUTE_PREFIX):]).decode("utf-8")
    except ValueError:
        raise AttributeError(attr) from None
    try:
        variables = list(served_entry(name).get("variables") or [])
    except AnsflowError:
        variables = []  # not served here: the run fails with run_served's message
    return pipeline_deployment_flow(name, variables)


def file_version(file: Path) -> str:
    """A short content hash, shown as the deployment's version (changes when the file does)."""
    return hashlib.sha256(file.read_bytes()).hexdigest()[:12]


def build_deployment(plan: Plan, file: Path) -> RunnerDeployment:
    """The served deployment of ``plan`` (read from ``file``): schedule, form, description."""
    schedules = None
    if plan.schedule:
        schedules = [Cron(plan.schedule["cron"],
                          timezone=plan.schedule.get("timezone") or "UTC")]
    flow = pipeline_deployment_flow(plan.name, flow_parameters(plan))
    deployment = flow.to_deployment(
        name=plan.name,
        description=plan.description or f"Pipeline {plan.name!r} ({file.name})",
        tags=TAGS,
        version=file_version(file),
        schedules=schedules,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    deployment._parameter_openapi_schema = RunFormSchema(**parameter_schema(plan))
    deployment.parameters = {}
    return deployment


LOST_RUNS_AUTOMATION = "ansflow: crash pipeline runs that stopped sending heartbeats"


def lost_run_window(heartbeat_seconds: int) -> int:
    """Seconds without a heartbeat after which a served run counts as lost: three periods,
    or ``ANSFLOW_LOST_RUN_AFTER`` (at least one period plus 5 s, so a beat on time never
    trips it)."""
    import os  # noqa: PLC0415

    floor = heartbeat_seconds + 5
    raw = os.environ.get("ANSFLOW_LOST_RUN_AFTER", "").strip()
    if not raw:
        return 3 * heartbeat_seconds
    try:
        wanted = int(raw)
    except ValueError:
        raise AnsflowError(f"ANSFLOW_LOST_RUN_AFTER={raw!r} is not a number of seconds"
                           ) from None
    if wanted < floor:
        raise AnsflowError(f"ANSFLOW_LOST_RUN_AFTER={wanted} is shorter than one heartbeat "
                           f"period plus 5 s ({floor} s): every run would be marked lost")
    return wanted


def lost_run_automation(heartbeat_seconds: int):
    """The Automation that ends a pipeline run Crashed once its process is gone.

    A flow-run process killed with its serve process (SIGKILL, a machine lost) cannot report
    its end; it stops emitting `prefect.flow-run.heartbeat`. Prefect's documented remedy:
    a proactive trigger per flow run that fires when no heartbeat or final state follows a
    heartbeat within three heartbeat periods (:func:`lost_run_window`), and sets the run
    Crashed.
    """
    from datetime import timedelta  # noqa: PLC0415

    from prefect.client.schemas.objects import StateType  # noqa: PLC0415
    from prefect.events.actions import ChangeFlowRunState  # noqa: PLC0415
    from prefect.events.schemas.automations import (  # noqa: PLC0415
        AutomationCore,
        EventTrigger,
        Posture,
    )

    return AutomationCore(
        name=LOST_RUNS_AUTOMATION,
        description="Created by `ansflow serve`: a pipeline run whose process vanished "
                    "(no heartbeat) is marked Crashed instead of staying Running.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                    "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                    "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            # Only served runs: they beat every `heartbeat_seconds` (serve sets it); other
            # runs of the pipeline flow may beat at Prefect's slower default.
            match_related={"prefect.resource.role": "tag",
                           "prefect.resource.id": f"prefect.tag.{SERVED_TAG}"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=lost_run_window(heartbeat_seconds)),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"the process running this pipeline stopped (no heartbeat for "
                    f"{3 * heartbeat_seconds} s): its machine or serve process was killed")],
    )


def ensure_lost_run_automation(heartbeat_seconds: int) -> None:
    """Create (or update) the lost-run Automation on the server; idempotent by name."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415

    wanted = lost_run_automation(heartbeat_seconds)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(LOST_RUNS_AUTOMATION)
        if existing:
            client.update_automation(existing[0].id, wanted)
            for extra in existing[1:]:
                client.delete_automation(extra.id)
        else:
            client.create_automation(wanted)
