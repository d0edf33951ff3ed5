"""What the `ansflow` sub-commands share: the one-line error exit, the table of saved
blocks of one type and how one is saved, and the flow run a run id names."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NoReturn

import typer

from ansflow.errors import AnsflowError, UsageError


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: MESSAGE`` on stderr and exit with ``code`` (no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def list_blocks(slug: str, what: str, add_command: str, load: Callable[[str], Any],
                columns: list[tuple[str, int]], row: Callable[[Any], tuple[str, ...]]) -> None:
    """Print the saved blocks of type ``slug``, one row each, by name.

    Args:
        slug: The block type's slug.
        what: What they are, for the messages ("cluster", "host").
        add_command: The command that adds one (named when there is none).
        load: Loads a block by name.
        columns: (header, width) of the columns after NAME; the last one is not padded.
        row: The column values of a loaded block; a block that cannot be loaded is shown
            as "unreadable".
    """
    from ansflow.blocks.saved import saved_block_names

    try:
        names = saved_block_names(slug, f"{what} blocks")
    except AnsflowError as exc:
        fail(str(exc))
    if not names:
        typer.echo(f"no {what} blocks (add one with `{add_command}`)")
        return

    def line(name: str, values: tuple[str, ...]) -> str:
        cells = [f"{v:<{w}}" for v, (_, w) in zip(values[:-1], columns[:-1])]
        return f"{name:<24}" + "".join(cells) + values[-1]

    typer.echo(line("NAME", tuple(h for h, _ in columns)))
    for name in names:
        try:
            values = row(load(name))
        except Exception:  # noqa: BLE001 - one broken block must not hide the others
            values = ("unreadable",) + ("-",) * (len(columns) - 1)
        typer.echo(line(name, values))


def save_block(block: Any, what: str, name: str, overwrite: bool) -> None:
    """Save ``block`` as ``name``; a refusal exits with a one-line error.

    Args:
        block: The block to save.
        what: What it is, for the messages ("cluster", "host").
        name: The block's name.
        overwrite: Replace a block of that name (else its existence is the error).
    """
    try:
        block.save(name, overwrite=overwrite)
    except ValueError as exc:
        if "already" in str(exc).lower():
            fail(f"a {what} block named {name!r} exists: pass --overwrite to replace it")
        fail(f"{what} {name!r}: {str(exc)[:300]}")
    except Exception as exc:
        fail(f"{what} {name!r}: cannot save the block ({type(exc).__name__}: "
             f"{str(exc)[:200]})")


def parse_run_id(run_id: str) -> uuid.UUID:
    """A RUN_ID argument as a flow run id.

    Raises:
        UsageError: not a UUID (the argument shown cut to 80 characters).
    """
    try:
        return uuid.UUID(run_id.strip())
    except ValueError:
        raise UsageError(f"{run_id[:80]!r} is not a flow run id (a UUID)") from None


def read_flow_run(client: Any, flow_run_id: uuid.UUID) -> Any:
    """The flow run from the Prefect server ``client`` talks to.

    Raises:
        AnsflowError: the server has no such run.
    """
    from prefect.exceptions import ObjectNotFound  # noqa: PLC0415 - imports Prefect

    try:
        return client.read_flow_run(flow_run_id)
    except ObjectNotFound:
        raise AnsflowError(f"run {flow_run_id} is not on this Prefect server") from None
