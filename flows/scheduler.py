"""Runs a plan's steps as Prefect task runs, resolving the DAG in the flow itself.

Prefect leaves a task whose upstream failed Pending forever, so the scheduler submits a step
only once everything it needs has finished, and records steps that cannot run as NotRun.
Dependencies are passed as `wait_for`, so the run graph shows them as edges.
"""

from __future__ import annotations

import contextvars
import functools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from prefect import Task, allow_failure
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import TerminationSignal
from prefect.futures import PrefectFuture
from prefect.utilities.annotations import quote

from ansflow.errors import StepCancelled, StepTimedOut, bounded
from ansflow.flows.run_records import RunInfo, StepRecord, max_parallel  # noqa: F401
from ansflow.flows.step_task import Attempts, not_run, run_pipeline_step
from ansflow.flows.tag_limits import limited_tags, mark_unlimited, skip_known_unlimited
from ansflow.plan import Plan, PlannedStep
from ansflow.runtime.base import Masker, RunControl, StepContext
from ansflow.runtime.public import Executor, executor_of
from ansflow.stepenv import ansflow_env, inherited_env
from ansflow.steptypes import step_type
from ansflow.templating import GIT_KEYS, has_template

# Set by the CLI to follow a run live: called with (step, state) on each change. A context
# variable, not a parameter: the pipeline flow's parameters are JSON the server records, and
# a callback into the terminal is not.
progress_listener: contextvars.ContextVar[Callable[[PlannedStep, str], None] | None] = (
    contextvars.ContextVar("ansflow_progress_listener", default=None)
)
_BLOCKING = {"failed", "timedout", "cancelled", "not_run"}
# After a cancel, a step that has not reported back within this many seconds (stuck in a
# template or a blocked call that no kill reaches) is given up on: recorded as cancelled,
# and the `finally` steps go on without it.
CANCEL_GRACE = 8.0


class Scheduler:
    """One pipeline run's steps: submit when ready, record every outcome."""

    def __init__(self, plan: Plan, info: RunInfo, control: RunControl,
                 reused: dict[str, dict[str, Any]] | None = None) -> None:
        self.plan = plan
        self.reused = reused or {}  # a retry: steps done in the earlier attempt (flows.rerun)
        self.info = info
        self.control = control
        self.masker = Masker(list(info.secrets.values()))
        self.records = {s.id: StepRecord(s) for s in plan.steps + plan.finally_steps}
        self.futures: dict[str, PrefectFuture] = {}
        self.attempts = Attempts()
        self.cancelled = False
        self.timed_out = False
        self.abandoned: set[str] = set()
        self._cancel_seen_at: float | None = None
        self._done: queue.Queue[str] = queue.Queue()
        self._tasks: dict[tuple, Task] = {}
        self._executors: dict[str, Executor] = {}
        self._inherited_env: dict[str, str] | None = None
        self._plan_env_templated = _any_template(plan.env)
        self._listener = progress_listener.get()
        self._limited_tags = limited_tags()
        skip_known_unlimited()
        self.max_parallel = max_parallel(plan)
        # Matrix steps: a control per matrix (fail_fast cancels its combinations only; a
        # cancel of the run reaches it), how many of its combinations run, who failed first.
        self.matrix_controls: dict[str, RunControl] = {}
        self.matrix_running: dict[str, int] = {}
        self.failed_fast: dict[str, str] = {}
        for sid in plan.matrices:
            self.matrix_controls[sid] = RunControl()
            self.matrix_running[sid] = 0
            control.on_cancel(self.matrix_controls[sid].cancel)

    # -- the main loop -------------------------------------------------------------------
    def run(self, deadline: float | None) -> None:
        """Run the main steps, then the `finally` steps (always)."""
        try:
            self._run_graph(self.plan.steps, self.control, deadline)
        finally:
            final_control = RunControl()
            self._run_graph(self.plan.finally_steps, final_control, None, always=True)
            for sid, future in self.futures.items():
                if sid not in self.abandoned:
                    future.wait()  # NotRun records too: the flow must not end before them

    def _run_graph(self, steps: list[PlannedStep], control: RunControl,
                   deadline: float | None, always: bool = False) -> None:
        pending = {s.id: s for s in steps}
        running: set[str] = set()
        previous: str | None = None
        while pending or running:
            try:
                for sid, step in list(pending.items()):
                    if len(running) >= self.max_parallel:
                        break  # the others wait for a free slot
                    deps = step.needs if not always else ([previous] if previous else [])
                    if any(d in pending or d in running for d in deps):
                        continue
                    if step.matrix_of and self._matrix_full(step.matrix_of):
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
                    self._abandon_stuck(control, running)
                    continue
                if sid in self.abandoned:
                    continue
                running.discard(sid)
                self._collect(sid)
                self._matrix_done(sid)
            except (KeyboardInterrupt, TerminationSignal):
                # Ctrl-C on `ansflow run`, or the runner terminating a cancelled run:
                # kill what runs, let it report back, record the rest as not run.
                self.cancel(control)

    def cancel(self, control: RunControl) -> None:
        """Stop the run: kill what runs, record what has not started as not run."""
        self.cancelled = True
        control.cancel()

    def _abandon_stuck(self, control: RunControl, running: set[str]) -> None:
        if not control.cancelled.is_set() or not running:
            return
        now = time.monotonic()
        if self._cancel_seen_at is None:
            self._cancel_seen_at = now
            return
        if now - self._cancel_seen_at < CANCEL_GRACE:
            return
        for sid in list(running):
            record = self.records[sid]
            record.state = "cancelled"
            record.message = (f"did not stop within {CANCEL_GRACE:g} s of the cancel; "
                              "given up on")
            self.abandoned.add(sid)
            running.discard(sid)
            self._notify(record)

    def _check_deadline(self, deadline: float | None, control: RunControl) -> None:
        if deadline is not None and time.monotonic() > deadline and not self.timed_out:
            self.timed_out = True
            control.cancel()

    # -- one step -------------------------------------------------------------------------
    def _start(self, step: PlannedStep, deps: list[str], control: RunControl,
               running: set[str], always: bool) -> None:
        record = self.records[step.id]
        if not always and step.id in self.reused:
            self._reuse(step, deps)
            return
        blockers = [] if always else [
            d for d in deps if self.records[d].state in _BLOCKING
            and not (self.records[d].step.allow_failure
                     and self.records[d].state in ("failed", "timedout"))
        ]
        # allow_failure: the edges show in the run graph without Prefect's NotReady rule.
        wait_for = [allow_failure(self.futures[d]) for d in deps if d in self.futures]
        fast = self.failed_fast.get(step.matrix_of or "")
        if (control.cancelled.is_set() and not always) or blockers or fast:
            shown = ", ".join(repr(b) for b in self._shown(blockers))
            reason = ("the run was cancelled" if control.cancelled.is_set() else
                      f"needs {shown}, which did not succeed" if blockers else
                      f"fail_fast: combination {fast!r} failed")
            record.state, record.message = "not_run", reason
            # No wait_for here: Prefect turns a task waiting on a cancelled one into NotReady.
            self.futures[step.id] = self._submit(step, not_run, (reason,), [])
            self._notify(record)
            return
        ctx = StepContext(
            pipeline=self.plan.name, run_id=self.info.run_id,
            build_number=self.info.build_number, step_id=step.id, step_name=step.name,
            stage=step.stage, step_type=step.type, workspace=self.plan.workspace,
            env={**self.plan.env, **step.env}, env_passthrough=list(self.plan.env_passthrough),
            timeout=step.timeout, runs_on=step.runs_on,
            masker=self.masker, control=self.matrix_controls.get(step.matrix_of or "", control),
        )
        if step.matrix_of:
            self.matrix_running[step.matrix_of] += 1
        record.state = "running"
        self._notify(record)
        # A step without a template anywhere never reads the names templates see: building
        # them (the steps' states and outputs so far, copied) cost O(steps) at every step.
        template_context = self._template_context(step) if self._templated(step) else {}
        executor = self._executors.get(step.type)
        if executor is None:
            executor = self._executors[step.type] = executor_of(step_type(step.type).load_task())
        future = self._submit(step, run_pipeline_step, (executor, ctx, step.config, step,
                                                        template_context, self.attempts),
                              wait_for)
        self.futures[step.id] = future
        running.add(step.id)
        future.add_done_callback(lambda _f, sid=step.id: self._done.put(sid))

    def _reuse(self, step: PlannedStep, deps: list[str]) -> None:
        """A step the earlier attempt of this run completed: its stored result, a task run
        that says so (Completed, "Reused"), not executed again."""
        from ansflow.flows.rerun import reused_state  # noqa: PLC0415

        result = self.reused[step.id]
        record = self.records[step.id]
        outputs = {k: str(v) for k, v in (result.get("outputs") or {}).items()}
        record.state, record.exit_code = result["state"], result.get("exit_code")
        record.outputs = {k: self.masker(v) for k, v in outputs.items()}
        record.message = "reused from an earlier attempt of this run"
        with self.attempts.lock:
            self.attempts.outputs[step.id] = outputs
        wait_for = [allow_failure(self.futures[d]) for d in deps if d in self.futures]
        build, state = self.info.build_number, record.state
        self.futures[step.id] = self._submit(step, reused_state, (build, state), wait_for,
                                             reused=True)
        self._notify(record)

    def _submit(self, step: PlannedStep, body: Callable[..., Any], args: tuple,
                wait_for: list, reused: bool = False) -> PrefectFuture:
        """Submit the step as a task run named after its type that calls ``body(*args)``:
        run_pipeline_step with the type's executor and what the step needs (its raw config
        is rendered inside, just before the step runs), or a NotRun / Reused record.

        The arguments are quoted: they are in-process objects that Prefect must neither
        walk for futures nor send anywhere.
        """
        tags = self._tags(step, reused)
        if body is run_pipeline_step:
            # One Task per type and tag set, the task run named from its `step` argument:
            # copying a Task per step (with_options) cost ~1-3 ms of the flow's thread.
            key = (body, step.type, tuple(tags))
            task = self._tasks.get(key)
            if task is None:
                task = self._tasks[key] = Task(
                    fn=_named(body, step.type), name=step.type, cache_policy=NO_CACHE,
                    persist_result=False, log_prints=False, tags=tags,
                    task_run_name=_step_run_name)
        else:
            key = (body, step.type)
            base = self._tasks.get(key)
            if base is None:
                base = self._tasks[key] = Task(fn=_named(body, step.type), name=step.type,
                                               cache_policy=NO_CACHE, persist_result=False,
                                               log_prints=False)
            # A callable, not a string: Prefect would run a string through str.format, which
            # breaks on braces in a step's name and can read the task's parameters into it.
            task = base.with_options(task_run_name=lambda name=step.name: name, tags=tags)
        return task.submit(*(quote(a) for a in args), wait_for=wait_for)

    def _tags(self, step: PlannedStep, reused: bool = False) -> list[str]:
        # No per-step `id:` tag: Prefect acquires concurrency slots per distinct tag set, and a
        # tag unique to every step cost ~50 ms per step (measured, see README); stage and type
        # tags repeat, so they stay cheap, and a user's tag concurrency limit on them (say
        # `type:k8s_deploy`) is honoured. The id is in the task name and the step's first log.
        tags = [f"stage:{step.stage}", f"type:{step.type}"] + (["ansflow:reused"] if reused
                                                                 else [])
        mark_unlimited(tags, self._limited_tags)
        return tags

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
                # What the step returned, kept in-process by run_pipeline_step: reading it
                # back from the state (future.result()) is a hop through Prefect's event loop.
                with self.attempts.lock:
                    result = self.attempts.results.get(sid)
                if result is None:
                    result = future.result()
                record.state = "completed"
                record.exit_code = result.get("exit_code")
                record.outputs = result.get("outputs", {})
        else:
            error = self.attempts.last_error.get(sid)
            record.exit_code = getattr(error, "exit_code", None)
            shown = str(error) if error else (state.message or "failed")
            record.message = bounded(self.masker(shown))
            record.state = ("timedout" if isinstance(error, StepTimedOut) else
                            "cancelled" if isinstance(error, StepCancelled) else "failed")
        self._notify(record)

    def _shown(self, ids: list[str]) -> list[str]:
        """Step ids as written: a matrix step's combinations once, by the step's id."""
        return list(dict.fromkeys(self.records[i].step.matrix_of or i for i in ids))

    # -- matrix steps --------------------------------------------------------------------
    def _matrix_full(self, matrix_id: str) -> bool:
        limit = self.plan.matrices[matrix_id].get("max_parallel")
        return bool(limit) and self.matrix_running[matrix_id] >= limit

    def _matrix_done(self, sid: str) -> None:
        """A combination ended: free its slot; with fail_fast, a failure cancels the rest."""
        record = self.records[sid]
        matrix_id = record.step.matrix_of
        if not matrix_id:
            return
        self.matrix_running[matrix_id] -= 1
        matrix = self.plan.matrices[matrix_id]
        if (matrix.get("fail_fast", True) and record.state in ("failed", "timedout")
                and not record.step.allow_failure and matrix_id not in self.failed_fast):
            self.failed_fast[matrix_id] = record.step.matrix_key or sid
            threading.Thread(target=self.matrix_controls[matrix_id].cancel, daemon=True,
                             name="ansflow-fail-fast").start()

    def matrix_state(self, matrix_id: str) -> str:
        """A matrix step's own state: the worst of its combinations'."""
        states = [self.records[c].state
                  for c in self.plan.matrices[matrix_id]["combinations"].values()]
        for state in ("failed", "timedout", "cancelled", "running", "pending"):
            if state in states:
                return state
        if all(s == "not_run" for s in states):
            return "not_run"
        if "not_run" in states:
            return "failed"
        return "skipped" if all(s == "skipped" for s in states) else "completed"

    def matrix_summary(self) -> dict[str, Any]:
        return {mid: {"name": m["name"], "state": self.matrix_state(mid),
                      "combinations": dict(m["combinations"])}
                for mid, m in self.plan.matrices.items()}

    def _notify(self, record: StepRecord) -> None:
        if self._listener is not None:
            self._listener(record.step, record.state)

    def _templated(self, step: PlannedStep) -> bool:
        """Whether rendering the step reads its template context: a `when:` expression, or a
        template in its config or in the environment it gets (run_pipeline_step renders
        nothing else)."""
        return (self._plan_env_templated or not (step.when is None or isinstance(step.when, bool))
                or _any_template(step.config) or _any_template(step.env))

    def _template_context(self, step: PlannedStep) -> dict[str, Any]:
        return {
            "pipeline": {"name": self.plan.name, "build_number": self.info.build_number,
                         "run_id": self.info.run_id, "type": self.plan.type},
            "run": {"workspace": self.plan.workspace},  # the run's own (flows.run_workspace)
            "git": {**dict.fromkeys(GIT_KEYS, ""), **self.info.git},  # its commit, if any
            "vars": dict(self.info.variables),
            # What the step's process sees (ansflow.stepenv), never the worker's credentials.
            "env": {**self._worker_env(), **self._ansflow_env(step),
                    **self.plan.env, **step.env},
            "stage": {"name": step.stage, "id": step.stage},
            "step": {"name": step.name, "id": step.id},
            "steps": self._steps_context(),
            "secrets": dict(self.info.secrets),
            "matrix": ({k: step.matrix.get(k, "")
                        for k in self.plan.matrices[step.matrix_of]["keys"]}
                       if step.matrix_of and step.matrix is not None else {}),
        }

    def _steps_context(self) -> dict[str, Any]:
        steps = {sid: {"outputs": dict(self.attempts.outputs.get(sid, r.outputs)),
                       "status": r.state}
                 for sid, r in self.records.items() if r.state != "pending"}
        for mid, m in self.plan.matrices.items():
            combos = {key: steps[cid] for key, cid in m["combinations"].items() if cid in steps}
            if combos:
                steps[mid] = {"outputs": {}, "status": self.matrix_state(mid), "matrix": combos}
        return steps

    def _worker_env(self) -> dict[str, str]:
        """The worker variables the run's local steps inherit (read once per run)."""
        if self._inherited_env is None:
            self._inherited_env = inherited_env(self.plan.env_passthrough)
        return self._inherited_env

    def _ansflow_env(self, step: PlannedStep) -> dict[str, str]:
        return ansflow_env(pipeline=self.plan.name, build_number=self.info.build_number,
                           run_id=self.info.run_id, step_id=step.id,
                           workspace=self.plan.workspace)

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


def _any_template(value: Any) -> bool:
    """Whether a template string is anywhere in ``value`` (dict values and list items walked,
    as render_value walks them)."""
    if isinstance(value, dict):
        return any(_any_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_any_template(v) for v in value)
    return has_template(value)


def _step_run_name(parameters: dict[str, Any]) -> str:
    """A pipeline step's task run name: its step's name (Prefect calls this with the task
    run's parameters; a string would go through str.format, which breaks on braces in a
    step's name and can read the task's parameters into it)."""
    return parameters["step"].name


def _named(body: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``body`` under the step type's name (its signature kept): Prefect keys a task by its
    function's name, so a run's task runs are keyed by step type (`command-...`), as the
    public tasks are."""
    @functools.wraps(body)
    def step(*args: Any, **kwargs: Any) -> Any:
        return body(*args, **kwargs)

    step.__name__ = step.__qualname__ = name
    return step
