"""Runs a plan's steps as Prefect task runs, resolving the DAG in the flow itself.

Prefect leaves a task whose upstream failed Pending forever, so the scheduler submits a step
only once everything it needs has finished, and records steps that cannot run as NotRun.
Dependencies are passed as `wait_for`, so the run graph shows them as edges.
"""

from __future__ import annotations

import contextvars
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect import allow_failure
from prefect.exceptions import TerminationSignal
from prefect.futures import PrefectFuture
from prefect.utilities.annotations import quote

from ansflow.errors import StepCancelled, StepTimedOut
from ansflow.flows.step_task import Attempts, not_run, run_pipeline_step
from ansflow.flows.tag_limits import limited_tags, mark_unlimited
from ansflow.plan import Plan, PlannedStep
from ansflow.steptypes import step_type
from ansflow.tasks.base import Masker, RunControl, StepContext
from ansflow.tasks.public import PIPELINE_STEP

# Set by the CLI to follow a run live: called with (step, state) on each change.
progress_listener: contextvars.ContextVar[Callable[[PlannedStep, str], None] | None] = (
    contextvars.ContextVar("ansflow_progress_listener", default=None)
)
_BLOCKING = {"failed", "timedout", "cancelled", "not_run"}


@dataclass
class StepRecord:
    step: PlannedStep
    state: str = "pending"
    exit_code: int | None = None
    attempts: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        s = self.step
        return {"id": s.id, "name": s.name, "stage": s.stage, "type": s.type,
                "state": self.state, "exit_code": self.exit_code, "attempts": self.attempts,
                "outputs": self.outputs, "duration_s": round(self.duration_s, 3),
                "message": self.message}


@dataclass
class RunInfo:
    pipeline: str
    run_id: str
    build_number: int
    variables: dict[str, Any]
    secrets: dict[str, str]


class Scheduler:
    """One pipeline run's steps: submit when ready, record every outcome."""

    def __init__(self, plan: Plan, info: RunInfo, control: RunControl) -> None:
        self.plan = plan
        self.info = info
        self.control = control
        self.masker = Masker(list(info.secrets.values()))
        self.records = {s.id: StepRecord(s) for s in plan.steps + plan.finally_steps}
        self.futures: dict[str, PrefectFuture] = {}
        self.attempts = Attempts()
        self.cancelled = False
        self.timed_out = False
        self._done: queue.Queue[str] = queue.Queue()
        self._listener = progress_listener.get()
        self._limited_tags = limited_tags()

    # -- the main loop -------------------------------------------------------------------
    def run(self, deadline: float | None) -> None:
        """Run the main steps, then the `finally` steps (always)."""
        try:
            self._run_graph(self.plan.steps, self.control, deadline)
        finally:
            final_control = RunControl()
            self._run_graph(self.plan.finally_steps, final_control, None, always=True)
            for future in self.futures.values():
                future.wait()  # NotRun records too: the flow must not end before them

    def _run_graph(self, steps: list[PlannedStep], control: RunControl,
                   deadline: float | None, always: bool = False) -> None:
        pending = {s.id: s for s in steps}
        running: set[str] = set()
        previous: str | None = None
        while pending or running:
            try:
                for sid, step in list(pending.items()):
                    deps = step.needs if not always else ([previous] if previous else [])
                    if any(d in pending or d in running for d in deps):
                        continue
                    del pending[sid]
                    previous = sid
                    self._start(step, deps, control, running, always)
                    if always:
                        break  # finally steps run one after the other, in order
                if not running:
                    continue
                try:
                    sid = self._done.get(timeout=0.2)
                except queue.Empty:
                    self._check_deadline(deadline, control)
                    continue
                running.discard(sid)
                self._collect(sid)
            except (KeyboardInterrupt, TerminationSignal):
                # Ctrl-C on `ansflow run`, or the runner terminating a cancelled run:
                # kill what runs, let it report back, record the rest as not run.
                self.cancel(control)

    def cancel(self, control: RunControl) -> None:
        """Stop the run: kill what runs, record what has not started as not run."""
        self.cancelled = True
        control.cancel()

    def _check_deadline(self, deadline: float | None, control: RunControl) -> None:
        if deadline is not None and time.monotonic() > deadline and not self.timed_out:
            self.timed_out = True
            control.cancel()

    # -- one step -------------------------------------------------------------------------
    def _start(self, step: PlannedStep, deps: list[str], control: RunControl,
               running: set[str], always: bool) -> None:
        record = self.records[step.id]
        blockers = [] if always else [
            d for d in deps if self.records[d].state in _BLOCKING
            and not (self.records[d].step.allow_failure
                     and self.records[d].state in ("failed", "timedout"))
        ]
        # allow_failure: the edges show in the run graph without Prefect's NotReady rule.
        wait_for = [allow_failure(self.futures[d]) for d in deps if d in self.futures]
        if (control.cancelled.is_set() and not always) or blockers:
            reason = ("the run was cancelled" if control.cancelled.is_set() else
                      f"needs {', '.join(repr(b) for b in blockers)}, which did not succeed")
            record.state, record.message = "not_run", reason
            # No wait_for here: Prefect turns a task waiting on a cancelled one into NotReady.
            self.futures[step.id] = self._submit(step, lambda _executor: not_run(reason), [])
            self._notify(record)
            return
        ctx = StepContext(
            pipeline=self.plan.name, run_id=self.info.run_id,
            build_number=self.info.build_number, step_id=step.id, step_name=step.name,
            stage=step.stage, step_type=step.type, workspace=self.plan.workspace,
            env={**self.plan.env, **step.env}, timeout=step.timeout, runs_on=step.runs_on,
            masker=self.masker, control=control,
        )
        record.state = "running"
        self._notify(record)
        template_context = self._template_context(step)

        def run(executor):  # noqa: ANN001, ANN202 - called inside the step's task run
            return run_pipeline_step(executor, ctx, step.config, step, template_context,
                                     self.attempts)

        future = self._submit(step, run, wait_for)
        self.futures[step.id] = future
        running.add(step.id)
        future.add_done_callback(lambda _f, sid=step.id: self._done.put(sid))

    def _submit(self, step: PlannedStep, body, wait_for: list) -> PrefectFuture:  # noqa: ANN001
        """Submit the step as a task run of its type's task, running ``body`` inside it.

        The task's own arguments are the step's raw config (its templates are rendered
        inside, just before the step runs); ``body`` reaches the task run through a context
        variable that Prefect copies into the task's thread.
        """
        task = self._task(step_type(step.type).load_task(), step)
        token = PIPELINE_STEP.set(body)
        try:
            return task.submit(**{k: quote(v) for k, v in step.config.items()},
                               wait_for=wait_for)
        finally:
            PIPELINE_STEP.reset(token)

    def _task(self, base, step: PlannedStep):
        # No per-step `id:` tag: Prefect acquires concurrency slots per distinct tag set, and a
        # tag unique to every step cost ~50 ms per step (measured, see README); stage and type
        # tags repeat, so they stay cheap, and a user's tag concurrency limit on them (say
        # `type:k8s_deploy`) is honoured. The id is in the task name and the step's first log.
        tags = [f"stage:{step.stage}", f"type:{step.type}"]
        mark_unlimited(tags, self._limited_tags)
        # A callable, not a string: Prefect would run a string through str.format, which
        # breaks on braces in a step's name and can read the task's parameters into it.
        return base.with_options(task_run_name=lambda name=step.name: name, tags=tags)

    def _collect(self, sid: str) -> None:
        record = self.records[sid]
        future = self.futures[sid]
        future.wait()  # sets the final state in memory (no API round trip)
        state = future.state
        record.attempts = self.attempts.count.get(sid, 0)
        started = self.attempts.started.get(sid)
        record.duration_s = time.monotonic() - started if started else 0.0
        if state.is_completed():
            if state.name == "Skipped":
                record.state, record.message = "skipped", state.message
            else:
                result = future.result()
                record.state = "completed"
                record.exit_code = result.get("exit_code")
                record.outputs = result.get("outputs", {})
        else:
            error = self.attempts.last_error.get(sid)
            record.exit_code = getattr(error, "exit_code", None)
            record.message = self.masker(str(error) if error else (state.message or "failed"))
            record.state = ("timedout" if isinstance(error, StepTimedOut) else
                            "cancelled" if isinstance(error, StepCancelled) else "failed")
        self._notify(record)

    def _notify(self, record: StepRecord) -> None:
        if self._listener is not None:
            self._listener(record.step, record.state)

    def _template_context(self, step: PlannedStep) -> dict[str, Any]:
        return {
            "pipeline": {"name": self.plan.name, "build_number": self.info.build_number,
                         "run_id": self.info.run_id, "type": self.plan.type},
            "vars": dict(self.info.variables),
            "env": {**os.environ, **self.plan.env, **step.env},
            "stage": {"name": step.stage, "id": step.stage},
            "step": {"name": step.name, "id": step.id},
            "steps": {sid: {"outputs": dict(r.outputs), "status": r.state}
                      for sid, r in self.records.items() if r.state != "pending"},
            "secrets": dict(self.info.secrets),
        }

    # -- the outcome ----------------------------------------------------------------------
    def outcome(self) -> tuple[str, str]:
        """The pipeline's state (completed|failed|cancelled) and a one-line message."""
        bad = [r for r in self.records.values()
               if r.state in ("failed", "timedout", "cancelled")
               and not (r.step.allow_failure and r.state != "cancelled")]
        if self.timed_out:
            return "failed", f"pipeline timed out after {self.plan.timeout:g}s"
        if self.cancelled or self.control.cancelled.is_set():
            return "cancelled", "pipeline run cancelled"
        if bad:
            names = ", ".join(r.step.id for r in bad)
            return "failed", f"{len(bad)} step(s) failed: {names}"
        return "completed", "all steps succeeded"
