"""The contract every step type implements: the context a step runs in and what it returns.

A step executor is a plain function ``execute(ctx: StepContext, config: <ConfigModel>) ->
StepResult``. It validates before any I/O, streams its output through ``ctx.emit`` (masked,
bounded, live), enforces its own deadline (``ctx.budget()``), stops when
``ctx.cancelled`` is set, registers a cleanup for anything it creates outside the process
(``ctx.on_cancel``), and raises ``StepFailed`` (or a subclass) on failure.
``ansflow.runtime.public`` turns each executor into the step type's public Prefect task.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from ansflow.engines.errors import EngineError
from ansflow.errors import step_error
from ansflow.masking import MIN_SECRET_LEN, Masker, mask_checked
from ansflow.stepenv import ansflow_env

MAX_LINE_CHARS = 8192
# The one log cap: what a step logs beyond it is counted, not sent (the step runs on).
MAX_LOG_ENV = "ANSFLOW_MAX_LOG_BYTES"
DEFAULT_MAX_LOG_BYTES = 2 * 1024 * 1024
LABEL_PREFIX = "ansflow.dev/"
# A stdout line `::add-mask::VALUE` (as in GitHub Actions) is not logged; VALUE is masked
# from then on, in this step and the later steps of the run.
ADD_MASK = "::add-mask::"


class StepResult(BaseModel):
    """What a step hands back: small and serializable, never an SDK object."""

    exit_code: int | None = None
    outputs: dict[str, str] = Field(default_factory=dict)


@dataclass
class RunControl:
    """Run-wide cancellation: one per pipeline run, shared by all its steps (in-process)."""

    cancelled: threading.Event = field(default_factory=threading.Event)
    _cleanups: dict[int, Callable[[], None]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0

    def on_cancel(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Register ``fn`` to run if the run is cancelled; returns a function unregistering it."""
        with self._lock:
            key = self._next
            self._next += 1
            self._cleanups[key] = fn

        def unregister() -> None:
            with self._lock:
                self._cleanups.pop(key, None)

        return unregister

    def cancel(self) -> None:
        """Set the cancelled flag and run every registered cleanup (each at most once)."""
        self.cancelled.set()
        with self._lock:
            fns = list(self._cleanups.values())
            self._cleanups.clear()
        for fn in fns:
            try:
                fn()
            except Exception:  # noqa: BLE001 - cleanup must go on for the other resources
                logging.getLogger("ansflow").exception("cleanup after cancel failed")


@dataclass
class StepContext:
    """Everything a step needs to know about the run it belongs to."""

    pipeline: str
    run_id: str
    build_number: int
    step_id: str
    step_name: str
    stage: str
    step_type: str
    workspace: str
    env: dict[str, str] = field(default_factory=dict)
    # Worker variables (names / globs) a local step inherits beyond ansflow.stepenv's base.
    env_passthrough: list[str] = field(default_factory=list)
    timeout: float | None = None
    runs_on: str = "local"
    # Credentials given as block objects rather than block names (a task called directly).
    blocks: dict[str, Any] = field(default_factory=dict)
    masker: Masker = field(default_factory=Masker)
    control: RunControl = field(default_factory=RunControl)
    logger: logging.Logger | logging.LoggerAdapter | None = None
    attempt: int = 1
    started: float = field(default_factory=time.monotonic)
    logged_bytes: int = 0
    dropped_lines: int = 0
    max_log_bytes: int = field(default_factory=lambda: max_log_bytes())

    @property
    def labels(self) -> dict[str, str]:
        """Labels put on every container / object a step creates, so cleanup can find them."""
        return {
            f"{LABEL_PREFIX}pipeline": label_value(self.pipeline),
            f"{LABEL_PREFIX}run-id": self.run_id,
            f"{LABEL_PREFIX}step": label_value(self.step_id),
        }

    def ansflow_env(self, workspace: str | None = None,
                    output: str | None = None) -> dict[str, str]:
        """The ``ANSFLOW_*`` variables (and CI) of this step's process; ``workspace`` and
        ``output`` as its process sees them (see :func:`ansflow.stepenv.ansflow_env`)."""
        return ansflow_env(pipeline=self.pipeline, build_number=self.build_number,
                           run_id=self.run_id, step_id=self.step_id, workspace=workspace,
                           output=output)

    @property
    def cancelled(self) -> bool:
        return self.control.cancelled.is_set()

    def on_cancel(self, fn: Callable[[], None]) -> Callable[[], None]:
        return self.control.on_cancel(fn)

    def remaining(self) -> float | None:
        """Seconds left before the step's deadline, None when it has none."""
        if self.timeout is None:
            return None
        return self.timeout - (time.monotonic() - self.started)

    def budget(self, own_timeout: float | None = None) -> float | None:
        """The one deadline rule: seconds a piece of work may take, the tighter of its own
        timeout and what is left of the step's; None when neither sets a limit."""
        limits = [t for t in (own_timeout, self.remaining()) if t is not None]
        return max(0.0, min(limits)) if limits else None

    def emit(self, line: str, *, stream: str = "stdout") -> None:
        """Send one line of step output to the Prefect task log, masked and bounded.

        A stdout line ``::add-mask::VALUE`` is not logged: VALUE is added to the run's masker.
        """
        line = line.rstrip("\r\n")
        if stream == "stdout" and line.lstrip().startswith(ADD_MASK):
            self._add_mask(line.lstrip()[len(ADD_MASK):].strip())
            return
        line = self.masker(line)
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + f"... [{len(line) - MAX_LINE_CHARS} chars cut]"
        log = self.logger or logging.getLogger("ansflow.step")
        self.logged_bytes += len(line) + 1
        if self.logged_bytes > self.max_log_bytes:
            self._note_dropped()
            return
        if stream == "stderr":
            log.warning(line)
        else:
            log.info(line)

    def emit_lines(self, lines: list[str], *, stream: str = "stdout") -> list[str]:
        """``emit`` for a burst of lines (a chunk read from a stream) as one log record:
        one entry in the Prefect log instead of one per line, masked in one pass.
        ``::add-mask::`` lines take effect for the lines after them, as with ``emit``.

        Returns:
            The lines as logged (masked, cut to MAX_LINE_CHARS), without the dropped ones.
        """
        logged: list[str] = []
        batch: list[str] = []

        def flush() -> None:
            if not batch:
                return
            masked = self.masker("\n".join(batch)).split("\n")
            batch.clear()
            keep, dropped = [], 0
            for line in masked:
                if len(line) > MAX_LINE_CHARS:
                    line = line[:MAX_LINE_CHARS] + f"... [{len(line) - MAX_LINE_CHARS} chars cut]"
                self.logged_bytes += len(line) + 1
                if self.logged_bytes > self.max_log_bytes:
                    dropped += 1
                    continue
                keep.append(line)
            if keep:
                log = self.logger or logging.getLogger("ansflow.step")
                (log.warning if stream == "stderr" else log.info)("\n".join(keep))
                logged.extend(keep)
            for _ in range(dropped):
                self._note_dropped()

        for raw in lines:
            line = raw.rstrip("\r\n")
            if stream == "stdout" and line.lstrip().startswith(ADD_MASK):
                flush()
                self._add_mask(line.lstrip()[len(ADD_MASK):].strip())
                continue
            batch.append(line)
        flush()
        return logged

    def _note_dropped(self) -> None:
        if self.dropped_lines == 0:
            log = self.logger or logging.getLogger("ansflow.step")
            log.warning(f"[ansflow] output beyond {self.max_log_bytes} bytes is not logged "
                        f"(the step keeps running; {MAX_LOG_ENV} sets the limit)")
        self.dropped_lines += 1

    def _add_mask(self, value: str) -> None:
        log = self.logger or logging.getLogger("ansflow.step")
        if len(value) < MIN_SECRET_LEN:
            log.warning(f"[ansflow] {ADD_MASK} ignored: the value has fewer than "
                        f"{MIN_SECRET_LEN} characters (it would mask ordinary text)")
            return
        self.masker.add(value)


def max_log_bytes() -> int:
    """The per-step log cap: ``ANSFLOW_MAX_LOG_BYTES`` (bytes), else 2 MiB."""
    raw = os.environ.get(MAX_LOG_ENV, "").strip()
    try:
        return max(0, int(raw)) if raw else DEFAULT_MAX_LOG_BYTES
    except ValueError:
        return DEFAULT_MAX_LOG_BYTES


def label_value(value: str) -> str:
    """A Kubernetes/Docker-safe label value (<= 63 chars of [A-Za-z0-9_.-])."""
    cleaned = "".join(c if (c.isascii() and (c.isalnum() or c in "-_.")) else "-" for c in value)
    cleaned = cleaned.strip("-_.")[:63].strip("-_.")
    return cleaned or "x"


@contextmanager
def engine_errors() -> Iterator[None]:
    """Where the step runtime calls into the engine adapters: their errors become step
    errors (:func:`ansflow.errors.step_error`), message, exit code and hint kept."""
    try:
        yield
    except EngineError as exc:
        raise step_error(exc) from exc


def step_executor(executor: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator of a step type's executor ``(ctx, config, ...) -> StepResult``: the engine
    adapters' errors raised inside reach whoever runs it (a pipeline, a task in a user's
    flow, a management operation) as step errors. Idempotent.

    Every executor takes ``ctx``, the step's :class:`StepContext` (workspace, deadline,
    cancellation, labels, log, masker), and ``config``, its step type's rendered and
    validated config model; its docstring says what it does, returns and raises.
    """
    if getattr(executor, "ansflow_step_errors", False):
        return executor

    @functools.wraps(executor)
    def run(ctx: StepContext, config: Any, *args: Any, **kwargs: Any) -> Any:
        with engine_errors():
            return executor(ctx, config, *args, **kwargs)

    run.ansflow_step_errors = True  # type: ignore[attr-defined]
    return run


def mask_secrets(ctx: Any, owner: str, values: list[tuple[str, str]]) -> None:
    """Add a block's secret values to the run's masker (when ``ctx`` has one), once none of
    them is too short to be masked (a short one would hide ordinary text in the logs).

    Raises:
        StepFailed: a value shorter than the minimum, named ``"<owner>: <what>"``.
    """
    mask_checked(getattr(ctx, "masker", None),
                 [(f"{owner}: {what}", value) for what, value in values])


def step_deadline(ctx: StepContext, timeout: float | None) -> float:
    """The monotonic deadline of a wait: its own timeout, cut by the step's deadline."""
    budget = ctx.budget(timeout)
    return time.monotonic() + (budget if budget is not None else 3600.0)
