"""The exception tree of the pipeline language, the step runtime and the step tasks, and the
one translation of the engine adapters' own errors into it (:func:`step_error`)."""

from __future__ import annotations

from ansflow.engines.errors import (
    EngineCancelled,
    EngineError,
    EnginePermanent,
    EngineTimedOut,
    EngineTransient,
    EngineUnreachable,
    Failure,
)

# A failure message a user sees (a task run's state, a log line, a summary) is bounded: a
# refusal names the problem, it does not dump a 100 KiB value back.
MAX_MESSAGE = 2000


def bounded(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to at most ``limit`` characters, saying how much was left out. Cut
    after masking, so that no cut leaves part of a secret the masker would not know."""
    if len(text) <= limit:
        return text
    kept = max(0, limit - 40)
    return f"{text[:kept]}... ({len(text) - kept} more characters)"


class AnsflowError(Exception):
    """Base of every error ansflow raises on purpose; its message is meant for a user."""


class UsageError(AnsflowError):
    """The user asked for something that cannot be done (missing file, bad flag)."""


class SpecError(AnsflowError):
    """A pipeline file is invalid; carries every problem found, each with a position."""

    def __init__(self, problems: list) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StepFailed(AnsflowError, Failure):
    """A step failed for good (bad exit code, engine refused, ...). Not retried unless the
    step's retry policy says so. Carries ``message``, ``exit_code`` and ``hint``."""


class StepTimedOut(StepFailed):
    """A step ran past its deadline and was killed."""


class StepCancelled(StepFailed):
    """A step was stopped because its pipeline run was cancelled."""


class StepPermanent(StepFailed):
    """A failure a retry cannot fix (an SSH host key or credentials refused): never retried,
    whatever the step's retry policy."""


class StepTransient(StepFailed):
    """A failure worth retrying (registry unreachable, API server 5xx, ...): a step with
    retries retries it even when its retry_on_exit_codes do not match."""


class EngineUnavailable(StepTransient):
    """The Docker engine or the Kubernetes API server cannot be reached (worth a retry)."""


# Most specific first: an EngineUnreachable is an EngineTransient too.
_STEP_ERRORS: tuple[tuple[type[EngineError], type[StepFailed]], ...] = (
    (EngineUnreachable, EngineUnavailable), (EngineTransient, StepTransient),
    (EnginePermanent, StepPermanent), (EngineTimedOut, StepTimedOut),
    (EngineCancelled, StepCancelled), (EngineError, StepFailed))


def step_error(exc: EngineError) -> StepFailed:
    """The step error an engine adapter's error means (raise it ``from exc``): the same
    message, exit code and hint; retryable, permanent, timed out or cancelled as it was."""
    cls = next(step for engine, step in _STEP_ERRORS if isinstance(exc, engine))
    return cls(exc.message, exit_code=exc.exit_code, hint=exc.hint)
