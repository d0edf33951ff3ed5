"""The `ansflow` command line."""


def main() -> None:
    """Console-script entry: set CLI-friendly Prefect defaults, then run the app."""
    from ansflow.cli.runner import default_environment  # noqa: PLC0415

    default_environment()
    from ansflow.cli.app import app  # noqa: PLC0415

    app()
