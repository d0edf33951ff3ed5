"""Management operations as Prefect flows and deployments `ansflow-k8s/<operation>`.

Every registered operation (ansflow.manage) becomes a flow named `ansflow-k8s` whose
parameters are `cluster` (a saved KubernetesCluster block: a choice in the UI), `namespace`,
the operation's own keyword parameters (typed and documented from its signature and
docstring, so the run form shows dropdowns, number fields and help text) and, for a
destructive operation, `confirm`. The flows are attributes of this module made on demand
(`manage_<operation>`, PEP 562 `__getattr__`), so the deployments' entrypoints are plain
module paths that every flow-run process and work-pool worker can import.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import os
import shlex
import threading
from typing import Any

from prefect import Flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.input import RunInput
from prefect.states import Failed, State
from pydantic import Field

from ansflow.blocks.kubernetes import saved_cluster_names
from ansflow.errors import AnsflowError, StepFailed, bounded
from ansflow.flows.deployment import RunFormSchema
from ansflow.flows.manage_publish import publish_failure, publish_result
from ansflow.manage import ObjectRef, Operation, load_operations
from ansflow.manage.secret_blocks import mask_allowed_values
from ansflow.runtime.base import StepContext
from ansflow.runtime.k8s_session import cluster_session
from ansflow.runtime.public import cancellation_watch, standalone_context
from ansflow.spec.steps_k8s import check_kube_field

FLOW_NAME = "ansflow-k8s"
TAGS = ["ansflow", "ansflow-k8s"]
ATTRIBUTE_PREFIX = "manage_"
RESERVED = ("cluster", "namespace", "confirm")
APPROVAL_TIMEOUT_ENV = "ANSFLOW_APPROVAL_TIMEOUT"
DEFAULT_APPROVAL_TIMEOUT = 3600
APPROVAL_POLL_SECONDS = 2
CLUSTER_REFRESH_ENV = "ANSFLOW_CLUSTER_REFRESH_SECONDS"
DEFAULT_CLUSTER_REFRESH = 30.0
PAUSE_MARGIN = 120  # seconds the server's pause outlives ours (see wait_for_approval)
MAX_COMMENT = 500

FLOW_ARGS_DOC = """\
    cluster: The saved KubernetesCluster block to act on.
    namespace: The namespace (empty: the cluster block's namespace)."""
CONFIRM_DOC = """\
    confirm: The object's name, to confirm this destructive operation (empty or another
        name: the run waits for an approval in the Prefect UI)."""


ENGINE_ERROR = "Engine execution exited with unexpected exception"


class QuietRefusal(logging.Filter):
    """Drops the engine's traceback of a run that ended on its own refusal: the flow returns
    a Failed state, which Prefect's engine re-raises and logs with a traceback (the run's
    state message and our log line already say what happened)."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.exceptions import FailedRun  # noqa: PLC0415

        exc = record.exc_info[1] if record.exc_info else None
        return not (record.msg == ENGINE_ERROR and isinstance(exc, FailedRun)
                    and str(exc) == self.message)


class Approval(RunInput):
    """Approve or reject the destructive operation this run is waiting for."""

    approve: bool = Field(False, description="Tick to let the operation run.")
    comment: str = Field("", description="Why (kept in the run's log).")


def operation_parameters(op: Operation) -> list[inspect.Parameter]:
    """The operation's own form fields: its keyword-only parameters, annotations resolved.

    Raises:
        TypeError: an operation that takes a name the flow adds itself.
    """
    params = [p for p in inspect.signature(op.func, eval_str=True).parameters.values()
              if p.kind is inspect.Parameter.KEYWORD_ONLY]
    for p in params:
        if p.name in RESERVED:
            raise TypeError(f"operation {op.name!r}: parameter {p.name!r} is added by the flow")
    return params


def flow_docstring(op: Operation) -> str:
    """The operation's docstring, its ``Args:`` preceded by the flow's own fields."""
    doc = inspect.getdoc(op.func) or f"The {op.name} operation."
    ours = FLOW_ARGS_DOC + ("\n" + CONFIRM_DOC if op.destructive else "")
    head, sep, args = doc.partition("\nArgs:\n")
    if not sep:
        return f"{doc}\n\nArgs:\n{ours}"
    return f"{head}\nArgs:\n{ours}\n{args}"


def flow_attribute(name: str) -> str:
    return ATTRIBUTE_PREFIX + name


def operation_flow(op: Operation) -> Flow:
    """The flow of ``op``: cluster, namespace, the op's parameters, confirm if destructive."""

    def run(**params: Any) -> Any:
        return run_operation(op, params)

    signature = [
        inspect.Parameter("cluster", inspect.Parameter.KEYWORD_ONLY, annotation=str),
        inspect.Parameter("namespace", inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=str | None),
        *operation_parameters(op),
    ]
    if op.destructive:
        signature.append(inspect.Parameter("confirm", inspect.Parameter.KEYWORD_ONLY,
                                           default=None, annotation=str | None))
    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        signature, return_annotation=dict[str, str])
    run.__name__ = run.__qualname__ = flow_attribute(op.name)
    run.__module__ = __name__
    run.__doc__ = flow_docstring(op)
    return Flow(run, name=FLOW_NAME, description=run.__doc__.split("\n\n")[0],
                persist_result=False, log_prints=False, validate_parameters=True)


def __getattr__(attr: str) -> Flow:
    """`manage_<operation>`: the flow of a registered operation (deployment entrypoints)."""
    if not attr.startswith(ATTRIBUTE_PREFIX):
        raise AttributeError(attr)
    op = load_operations().get(attr[len(ATTRIBUTE_PREFIX):])
    if op is None:
        raise AttributeError(attr)
    return operation_flow(op)


def check_cluster(name: str) -> None:
    """Refuse a cluster that is not a saved block, listing the saved ones (a Prefect API
    that cannot list them fails the run with one line too)."""
    try:
        names = saved_cluster_names()
    except AnsflowError as exc:
        raise StepFailed(str(exc)) from None
    if name in names:
        return
    listed = ", ".join(names) if names else "none"
    raise StepFailed(f"no saved Kubernetes cluster block named {name!r} (saved: {listed})",
                     hint=f"save one: ansflow cluster add {shlex.quote(name)} --kubeconfig FILE")


def approval_timeout() -> int:
    """Seconds a run waits for an approval: ANSFLOW_APPROVAL_TIMEOUT, else one hour."""
    try:
        return max(1, int(os.environ.get(APPROVAL_TIMEOUT_ENV, "")))
    except ValueError:
        return DEFAULT_APPROVAL_TIMEOUT


def wait_for_approval(timeout: int) -> Approval | None:
    """Pause the run for an Approval (the UI's Resume form); None when none came in time.

    Prefect's own pause timeout is left to expire later than ours: when the server expires a
    pause it fails the run with its own message ("never resumed"), so our deadline comes
    first and the run fails with ours. The pause waits in a thread (with the run's context)
    we stop waiting for at the deadline; it ends with the process.
    """
    from prefect.exceptions import FlowPauseTimeout  # noqa: PLC0415
    from prefect.flow_runs import pause_flow_run  # noqa: PLC0415

    outcome: dict[str, Any] = {}
    run_context = contextvars.copy_context()

    def pause() -> None:
        try:
            outcome["answer"] = run_context.run(
                pause_flow_run, wait_for_input=Approval, timeout=timeout + PAUSE_MARGIN,
                poll_interval=APPROVAL_POLL_SECONDS)
        except FlowPauseTimeout:
            pass
        except Exception as exc:  # noqa: BLE001 - re-raised in the flow's thread
            outcome["error"] = exc

    waiter = threading.Thread(target=pause, daemon=True, name="ansflow-approval")
    waiter.start()
    waiter.join(timeout)
    if "error" in outcome:
        raise StepFailed(f"could not pause the run for an approval: {outcome['error']}")
    return outcome.get("answer")


def confirm_or_wait_for_approval(op: Operation, params: dict[str, Any], confirm: str | None,
                                 ctx: StepContext) -> None:
    """Return when the run may go on: ``confirm`` names the object, or someone approved.

    Raises:
        StepFailed: rejected, or not approved in time (nothing was changed).
    """
    wanted = op.needs_confirmation(params)
    if wanted is None:
        return
    if confirm is not None and confirm == wanted:
        ctx.emit(f"{op.name} of {wanted!r} confirmed by its name")
        return
    why = "no confirm given" if not confirm else f"confirm {confirm!r} is not {wanted!r}"
    timeout = approval_timeout()
    ctx.emit(f"{op.name} of {wanted!r} is destructive and {why}: waiting up to {timeout} s "
             "for an approval (Resume this run in the Prefect UI)", stream="stderr")
    answer = wait_for_approval(timeout)
    if answer is None:
        raise StepFailed(f"{op.name} of {wanted!r} was not approved within {timeout} s; "
                         "nothing was changed",
                         hint=f"run again with confirm={wanted}")
    comment = " ".join(str(answer.comment or "").split())[:MAX_COMMENT]
    said = f" ({comment})" if comment else ""
    if not answer.approve:
        raise StepFailed(f"{op.name} of {wanted!r} was rejected{said}; nothing was changed")
    ctx.emit(f"{op.name} of {wanted!r} approved{said}")


def guessed_target(op: Operation, cluster: str, namespace: str | None,
                   params: dict[str, Any]) -> ObjectRef:
    """What a failed run was about, from its parameters (for the failure event)."""
    kind = str(params.get("resource_type") or op.name)
    name = params.get("resource_name") or params.get("name") or params.get("pod") or \
        params.get("label_selector") or params.get("pod_selector") or "?"
    return ObjectRef(cluster, kind, str(name), namespace)


# Form fields that name something in the cluster (a path segment or a selector).
NAME_FIELDS = ("resource_name", "pod", "container", "label_selector", "pod_selector")


def check_names(op: Operation, namespace: str | None, params: dict[str, Any]) -> None:
    """The names a run was given, by the API server's rules, before anything else: a
    destructive operation never asks for an approval of a name it could not act on (the
    adapter checks them again before any request).

    Raises:
        StepFailed: one is not valid (the field, the value and the rule named).
    """
    for field, value in (("namespace", namespace), *((f, params.get(f)) for f in NAME_FIELDS)):
        try:
            check_kube_field(value, field)
        except ValueError as exc:
            raise StepFailed(f"{op.name}: {exc}") from None


def run_operation(op: Operation, params: dict[str, Any]) -> dict[str, str] | State:
    """One run of ``op``: check the cluster, confirm, act, publish; a refusal fails the run
    with its one-line message (no traceback) and changes nothing."""
    # An optional field a form sent empty means "not given" (its default, None).
    optional = {p.name for p in operation_parameters(op) if p.default is None}
    params = {k: (None if k in optional and v == "" else v) for k, v in params.items()}
    cluster = str(params.pop("cluster"))
    namespace = params.pop("namespace", None) or None
    confirm = params.pop("confirm", None)
    flow_ctx = FlowRunContext.get()
    run_id = str(flow_ctx.flow_run.id) if flow_ctx and flow_ctx.flow_run else None
    ctx = standalone_context(f"k8s_{op.name}")
    try:
        with cancellation_watch(ctx):
            check_cluster(cluster)
            check_names(op, namespace, params)
            # What manage runs may have put into a cluster stays masked in any later run.
            mask_allowed_values(ctx.masker)
            confirm_or_wait_for_approval(op, params, confirm, ctx)
            with cluster_session(ctx, cluster, namespace) as session:
                result = op.func(ctx, session, **params)
    except StepFailed as exc:
        message = bounded(ctx.masker(str(exc)))
        get_run_logger().error(message)
        publish_failure(op.name, guessed_target(op, cluster, namespace, params), message,
                        ctx.masker, run_id)
        # This process runs this one flow run: the filter lasts as long as the run.
        logging.getLogger("prefect.flow_runs").addFilter(QuietRefusal(message))
        return Failed(message=message)
    ctx.emit(result.summary)
    publish_result(op.name, result, ctx.masker, run_id)
    return {k: ctx.masker(str(v)) for k, v in result.outputs.items()}


def plain_optional(prop: dict[str, Any]) -> dict[str, Any]:
    """An optional field (``X | None = None``) as a plain field of type X, not required: the
    UI then shows a text box, number field or key-value editor instead of a type switch, and
    a field left empty is not sent (the parameter's default, None, applies)."""
    variants = prop.get("anyOf")
    if not (isinstance(variants, list) and len(variants) == 2 and prop.get("default") is None
            and {"type": "null"} in variants):
        return prop
    [kept] = [v for v in variants if v != {"type": "null"}]
    flat = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**kept, **flat}


def operation_deployment(op: Operation, clusters: list[str] | None) -> RunnerDeployment:
    """The served deployment ``ansflow-k8s/<op>``; ``clusters`` (the saved block names) become
    the cluster field's choices (None or empty: a free text field)."""
    flow = operation_flow(op)
    deployment = flow.to_deployment(name=op.name, description=flow.description, tags=TAGS,
                                    entrypoint_type=EntrypointType.MODULE_PATH)
    schema = deployment._parameter_openapi_schema.model_dump()
    for name, prop in schema["properties"].items():
        schema["properties"][name] = plain_optional(prop)
    if clusters:
        schema["properties"]["cluster"]["enum"] = list(clusters)
    schema["additionalProperties"] = False  # a misspelled field is refused by the server
    deployment._parameter_openapi_schema = RunFormSchema(**schema)
    return deployment


def manage_deployments(clusters: list[str] | None) -> list[RunnerDeployment]:
    """One deployment per registered operation, by name."""
    operations = load_operations()
    return [operation_deployment(operations[name], clusters) for name in sorted(operations)]


def refresh_cluster_choices(stop: threading.Event, every: float,
                            served: list[str] | None) -> None:
    """Until ``stop``: every ``every`` seconds, when the saved cluster blocks differ from the
    served choices, set the new list as the cluster choices of every served `ansflow-k8s`
    deployment (a block saved after serve started becomes a choice; a failure is retried at
    the next round, serving goes on)."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415

    current = list(served or [])
    while not stop.wait(every):
        try:
            names = saved_cluster_names()
            if not names or names == current:
                continue
            with get_client(sync_client=True) as client:
                for name in sorted(load_operations()):
                    dep = client.read_deployment_by_name(f"{FLOW_NAME}/{name}")
                    schema = dict(dep.parameter_openapi_schema or {})
                    cluster = (schema.get("properties") or {}).get("cluster")
                    if cluster is None:
                        continue
                    cluster["enum"] = names
                    client.request("PATCH", "/deployments/{id}", path_params={"id": dep.id},
                                   json={"parameter_openapi_schema": schema})
            current = names
        except Exception:  # noqa: BLE001 - the server away for a moment: next round
            continue


def cluster_refresh_seconds() -> float:
    """How often serve looks for new cluster blocks: ANSFLOW_CLUSTER_REFRESH_SECONDS (30)."""
    try:
        return max(1.0, float(os.environ.get(CLUSTER_REFRESH_ENV, "")))
    except ValueError:
        return DEFAULT_CLUSTER_REFRESH


def form_fields(op: Operation) -> list[str]:
    """The run-form field names of ``op``'s deployment, in order (for `serve --check`)."""
    names = ["cluster", "namespace", *(p.name for p in operation_parameters(op))]
    return names + (["confirm"] if op.destructive else [])
