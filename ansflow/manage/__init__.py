"""Cluster management operations (`ansflow serve --manage`, deployments `ansflow-k8s/<op>`).

The contract between an operation and the flow that serves it:

* An operation is a plain function ``op(ctx, session, **params) -> OperationResult``.
  ``ctx`` is a :class:`ansflow.runtime.base.StepContext` (log with ``ctx.emit``, deadline,
  cancellation, masker), ``session`` an open :class:`ansflow.runtime.k8s_session.ClusterSession`
  (``session.api``, ``session.name``, ``session.namespace``: the form's namespace, else the
  block's). ``params`` are the operation's own run-form fields: keyword-only, annotated with
  types Prefect renders as form widgets (``Literal`` for dropdowns, ``int``, ``dict[str, str]``
  for key-value editors, ``bool``), with defaults, documented in the Google-style ``Args:``
  section of the docstring (the form's help text). ``cluster``, ``namespace`` and
  ``confirm`` are added by the flow around it; an operation never takes them.
* It raises ``ansflow.errors.StepFailed`` (clear message, nothing changed) on refusal and
  bad input, and never puts a secret value in a log line, output, artifact or parameter.
* A destructive operation names the object a run's ``confirm`` must equal: by default its
  ``resource_name`` (else ``name``) parameter; ``confirm_name=`` (a function of the run's
  params, returning None when this run destroys nothing) for anything else.
* :func:`register` puts it in :data:`OPERATIONS`; the flow builder makes each into a
  Prefect flow and a deployment ``ansflow-k8s/<name>``, emits the event
  ``ansflow.k8s.<name>`` about ``result.target`` and publishes ``result`` as a markdown
  artifact (before / after, plus ``result.markdown``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ObjectRef:
    """The object an operation acted on."""

    cluster: str
    kind: str  # e.g. "Deployment"
    name: str
    namespace: str | None = None  # None for cluster-scoped kinds

    @property
    def resource_id(self) -> str:
        """The Prefect event resource id: ``ansflow.k8s.<kind>.<cluster>.<namespace>.<name>``
        (``_`` for the namespace of a cluster-scoped object)."""
        return (f"ansflow.k8s.{self.kind.lower()}.{self.cluster}."
                f"{self.namespace or '_'}.{self.name}")

    def __str__(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.kind.lower()}/{self.name}{where} (cluster {self.cluster})"


@dataclass
class OperationResult:
    """What an operation did, for the flow's return value, event and artifact."""

    target: ObjectRef
    summary: str  # one line: "scaled deployment/web from 1 to 3 replicas"
    outputs: dict[str, str] = field(default_factory=dict)  # as a step's outputs
    before: dict[str, Any] | None = None  # the fields users look at, before (no secret values)
    after: dict[str, Any] | None = None  # ... and after
    markdown: str = ""  # extra artifact body: a dry-run diff, a describe, a log tail
    changed: bool = True  # False for read-only operations and no-op updates


ConfirmName = Callable[[dict[str, Any]], "str | None"]


def default_confirm_name(params: dict[str, Any]) -> str | None:
    """What ``confirm`` must equal: the ``resource_name`` (else ``name``) parameter."""
    value = params.get("resource_name") or params.get("name")
    return str(value) if value else None


@dataclass(frozen=True)
class Operation:
    name: str  # the deployment is ansflow-k8s/<name>
    func: Callable[..., OperationResult]
    destructive: bool = False  # runs only with confirm == the object's name, or an approval
    read_only: bool = False
    # For a destructive operation: the run's params -> the name `confirm` must equal (None:
    # this run destroys nothing, no confirmation needed).
    confirm_name: ConfirmName = default_confirm_name

    def needs_confirmation(self, params: dict[str, Any]) -> str | None:
        """The name a run with ``params`` must confirm, or None when it needs none."""
        return self.confirm_name(params) if self.destructive else None


OPERATIONS: dict[str, Operation] = {}


def register(name: str, *, destructive: bool = False, read_only: bool = False,
             confirm_name: ConfirmName | None = None,
             ) -> Callable[[Callable[..., OperationResult]], Callable[..., OperationResult]]:
    """Decorator: register ``func`` as management operation ``name``."""

    def wrap(func: Callable[..., OperationResult]) -> Callable[..., OperationResult]:
        OPERATIONS[name] = Operation(name, func, destructive, read_only,
                                     confirm_name or default_confirm_name)
        return func

    return wrap


# The modules that register operations (imported by load_operations; a module not there yet
# in this checkout is skipped).
OPERATION_MODULES = ("ansflow.manage.workloads", "ansflow.manage.objects",
                     "ansflow.manage.listing", "ansflow.manage.revert",
                     "ansflow.manage.namespace_delete")


def load_operations() -> dict[str, Operation]:
    """Import every module of :data:`OPERATION_MODULES` that exists; the registry."""
    import importlib  # noqa: PLC0415
    import importlib.util  # noqa: PLC0415

    for module in OPERATION_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    return OPERATIONS
