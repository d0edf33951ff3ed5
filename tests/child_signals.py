"""Children that a test will interrupt get the default disposition of the signals a test
sends, however the suite was started.

A shell running a command in the background (`bash scripts/test.sh &` in a script, a CI
agent without job control) starts it with SIGINT and SIGQUIT ignored, and an ignored signal
stays ignored across exec: Python then installs no KeyboardInterrupt handler, so a test
pressing Ctrl-C on a child would wait out its timeout. Pass ``preexec_fn=default_signals``.
"""

from __future__ import annotations

import signal


def default_signals() -> None:
    """In the child, before exec: SIGINT and SIGQUIT back to their default disposition."""
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
