"""The `ansflow` command line."""

import os
import sys


def main() -> None:
    """Console-script entry: set CLI-friendly Prefect defaults, then run the app.

    Errors the commands did not turn into a message still reach the user as one line (the
    traceback only with ANSFLOW_DEBUG=1): Prefect failing to start its temporary server, or
    anything unforeseen.
    """
    from ansflow.cli.runner import default_environment  # noqa: PLC0415

    default_environment()
    from ansflow.cli.app import app  # noqa: PLC0415

    try:
        app(standalone_mode=True)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("ANSFLOW_DEBUG"):
            raise
        from ansflow.cli.runner import (  # noqa: PLC0415
            ephemeral_server_error,
            is_ephemeral_server_error,
        )

        if is_ephemeral_server_error(exc):
            message = str(ephemeral_server_error(exc))
        else:
            message = (f"internal error: {type(exc).__name__}: {str(exc)[:500]} (run again "
                       "with ANSFLOW_DEBUG=1 for the traceback, and please report it)")
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
