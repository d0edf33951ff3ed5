"""The engine adapters' own errors and their one translation into step errors
(ansflow.engines.errors, ansflow.errors.step_error, ansflow.runtime.base.step_executor)."""

from __future__ import annotations

import logging

import pytest

from ansflow.engines.errors import (
    EngineCancelled,
    EngineError,
    EnginePermanent,
    EngineTimedOut,
    EngineTransient,
    EngineUnreachable,
)
from ansflow.engines.process import run_process
from ansflow.errors import (
    EngineUnavailable,
    StepCancelled,
    StepFailed,
    StepPermanent,
    StepTimedOut,
    StepTransient,
    step_error,
)
from ansflow.runtime.base import StepContext, StepResult, step_executor


@pytest.mark.parametrize(("engine", "step"), [
    (EngineError, StepFailed), (EngineTimedOut, StepTimedOut),
    (EngineCancelled, StepCancelled), (EnginePermanent, StepPermanent),
    (EngineTransient, StepTransient), (EngineUnreachable, EngineUnavailable)])
def test_each_engine_error_becomes_its_step_error_keeping_code_and_hint(engine, step):
    hostile = "{{ secrets.x }} $(rm -rf /) ../.. \x00 " + "é" * 50
    error = step_error(engine(hostile, exit_code=3, hint="do this"))
    assert type(error) is step
    assert error.exit_code == 3 and error.hint == "do this"
    assert str(error) == f"{hostile}\n  hint: do this"
    assert not isinstance(engine("x"), StepFailed)  # the adapters' errors are their own


def test_engine_errors_are_no_pipeline_errors_until_translated():
    with pytest.raises(EngineError) as caught:
        run_process(["/bin/echo", "a\0b"], cwd="/", env={}, emit=lambda *a: None)
    assert not isinstance(caught.value, StepFailed)


def _ctx(tmp_path) -> StepContext:
    return StepContext(pipeline="p", run_id="r", build_number=1, step_id="s", step_name="s",
                       stage="x", step_type="command", workspace=str(tmp_path),
                       logger=logging.getLogger("ansflow.test.step"))


def test_a_step_executor_raises_step_errors_once_and_lets_the_rest_through(tmp_path):
    calls = []

    def execute(ctx, config, *extra, **named):
        calls.append((config, extra, named))
        if config == "transient":
            raise EngineUnreachable("the engine is gone", hint="start it")
        if config == "step":
            raise StepTimedOut("already a step error")
        if config == "bug":
            raise KeyError("not an engine's")
        return StepResult(exit_code=0)

    wrapped = step_executor(execute)
    assert step_executor(wrapped) is wrapped and wrapped.__name__ == "execute"
    assert wrapped(_ctx(tmp_path), "ok", 1, a=2).exit_code == 0
    assert calls[-1] == ("ok", (1,), {"a": 2})
    with pytest.raises(EngineUnavailable, match="the engine is gone") as caught:
        wrapped(_ctx(tmp_path), "transient")
    assert isinstance(caught.value.__cause__, EngineUnreachable)
    with pytest.raises(StepTimedOut, match="already a step error"):
        wrapped(_ctx(tmp_path), "step")
    with pytest.raises(KeyError):
        wrapped(_ctx(tmp_path), "bug")
