"""One poller for the tests: wait until a condition holds, or fail saying what it waited for."""

from __future__ import annotations

import time


def until(predicate, timeout: float = 60, what: str = "condition"):
    """``predicate()``'s first truthy value, polled every 0.3 s for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")
