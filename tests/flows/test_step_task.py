"""The pipeline's retry rule (flows/step_task.should_retry): pure logic."""

from ansflow.errors import EngineUnavailable, StepCancelled, StepFailed, StepTransient
from ansflow.flows.step_task import should_retry
from ansflow.plan import PlannedStep


def step(**kw) -> PlannedStep:
    return PlannedStep(id="s", name="s", type="command", stage="main", config={}, **kw)


def test_without_retry_on_exit_codes_every_failure_but_a_cancel_is_retried():
    assert should_retry(step(retries=1), StepFailed("boom", exit_code=4))
    assert should_retry(step(retries=1), StepFailed("no exit code"))
    assert not should_retry(step(retries=1), StepCancelled("cancelled"))


def test_retry_on_exit_codes_filters_exit_codes_but_not_transient_failures():
    only_5 = step(retries=2, retry_on_exit_codes=[5])
    assert should_retry(only_5, StepFailed("exit 5", exit_code=5))
    assert not should_retry(only_5, StepFailed("exit 4", exit_code=4))
    assert not should_retry(only_5, StepFailed("refused"))
    assert should_retry(only_5, StepTransient("registry unreachable"))
    assert should_retry(only_5, EngineUnavailable("no Docker engine answers"))
    assert not should_retry(only_5, StepCancelled("cancelled", exit_code=5))
