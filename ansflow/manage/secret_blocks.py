"""Which Prefect Secret blocks the manage `secret` form may read: the operator's decision,
``ANSFLOW_MANAGE_SECRET_BLOCKS`` (comma-separated glob patterns of block names, e.g.
``app-*,shared-db-password``; unset or empty: none). Anyone who may start a manage run may
name any block in the form, so without this setting the form would hand any Secret block on
the server (another team's, prod's) to whoever can then read it out of the cluster.

The values of the allowed blocks are what manage runs put into clusters: every manage run
loads them into its masker (:func:`mask_allowed_values`), so a later run's `logs`, `describe`
or error message shows them as ``***``.
"""

from __future__ import annotations

import fnmatch
import json
import os
from typing import Any

from ansflow.errors import StepFailed

SECRET_BLOCKS_ENV = "ANSFLOW_MANAGE_SECRET_BLOCKS"
SECRET_BLOCK_SLUG = "secret"  # Prefect's own Secret block type


def allowed_patterns() -> list[str]:
    """The glob patterns of ``ANSFLOW_MANAGE_SECRET_BLOCKS`` (empty: no block allowed)."""
    raw = os.environ.get(SECRET_BLOCKS_ENV, "")
    return [p.strip() for p in raw.replace("\n", ",").split(",") if p.strip()]


def is_allowed(block: str, patterns: list[str] | None = None) -> bool:
    """Whether the operator allowed the secret form to read Prefect Secret block ``block``
    (a case-sensitive glob match of the whole name)."""
    patterns = allowed_patterns() if patterns is None else patterns
    return any(fnmatch.fnmatchcase(block, p) for p in patterns)


def check_allowed(keys: dict[str, str]) -> None:
    """Refuse a secret form naming any block the operator did not allow, before any block is
    read.

    Raises:
        StepFailed: naming each refused key and block (never a value).
    """
    patterns = allowed_patterns()
    refused = [f"key {key!r}: block {str(block).strip()!r}" for key, block in keys.items()
               if not is_allowed(str(block).strip(), patterns)]
    if not refused:
        return
    allowed = ", ".join(patterns) if patterns else "none (it is not set)"
    raise StepFailed(
        f"secret: refused, nothing was changed: the operator has not allowed this form to read "
        f"{'; '.join(refused)} ({SECRET_BLOCKS_ENV}: {allowed})",
        hint=f"the operator lists the Prefect Secret blocks the form may read in "
             f"{SECRET_BLOCKS_ENV} (comma-separated globs) where the manage flows run")


def _text(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"value"}:
        value = value["value"]
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return value if isinstance(value, str) else json.dumps(value)


def allowed_values() -> dict[str, str]:
    """Block name -> value of every saved Prefect Secret block the form may read (one request
    to the server; none when the setting is empty).

    Raises:
        StepFailed: the server cannot list them (a manage run then does not start: its logs
            would not be masked).
    """
    patterns = allowed_patterns()
    if not patterns:
        return {}
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.exceptions import ObjectNotFound  # noqa: PLC0415

    try:
        with get_client(sync_client=True) as client:
            docs = client.read_block_documents_by_type(SECRET_BLOCK_SLUG, include_secrets=True)
    except ObjectNotFound:
        return {}
    except Exception as exc:  # noqa: BLE001 - the server's error, never a value
        raise StepFailed(f"the Prefect Secret blocks of {SECRET_BLOCKS_ENV} could not be read "
                         f"for masking ({type(exc).__name__})") from None
    return {str(d.name): _text(d.data.get("value")) for d in docs
            if d.name and is_allowed(str(d.name), patterns) and "value" in (d.data or {})}


def mask_allowed_values(masker: Any) -> int:
    """Add the value of every Prefect Secret block the form may read to ``masker``; how many."""
    values = allowed_values()
    for value in values.values():
        masker.add(value)
    return len(values)
