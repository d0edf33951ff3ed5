"""The engine adapters' own error tree: what a Docker, Kubernetes, SSH, process or archive
adapter raises when the outside world refuses or fails. Its messages are meant for a user.

The adapters know nothing about pipelines: the step runtime turns these into step errors in
one place (:func:`ansflow.errors.step_error`), keeping the message, exit code and hint, and
whether a retry can help (transient, permanent) or the work was stopped (timed out,
cancelled). The Kubernetes object calls have their own, finer tree
(``ansflow.engines.kube_errors``).
"""

from __future__ import annotations


class Failure(Exception):
    """What every failure told to a user carries: its message, the exit code where there is
    one, and a hint (shown on a line of its own). The step errors have the same shape."""

    def __init__(self, message: str, *, exit_code: int | None = None,
                 hint: str | None = None) -> None:
        self.message = message
        self.exit_code = exit_code
        self.hint = hint
        super().__init__(message if not hint else f"{message}\n  hint: {hint}")


class EngineError(Failure):
    """An engine refused or failed the work for good (bad input, a refusal, a bad exit)."""


class EngineTimedOut(EngineError):
    """The work ran past its deadline and was stopped."""


class EngineCancelled(EngineError):
    """The work was stopped because whoever asked for it cancelled."""


class EnginePermanent(EngineError):
    """A failure no retry can fix (an SSH host key or credentials refused)."""


class EngineTransient(EngineError):
    """A failure worth retrying (registry unreachable, API server 5xx, a lost connection)."""


class EngineUnreachable(EngineTransient):
    """The Docker engine, the Kubernetes API server or a host cannot be reached."""
