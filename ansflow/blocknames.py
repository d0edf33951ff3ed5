"""The one check a Prefect block document name passes before a block is loaded by it.

A name with a control character, a slash or 100 KiB of text would otherwise reach Prefect's
HTTP client as part of a URL and fail there (httpx InvalidURL) with no word about the name."""

from __future__ import annotations

import re

from ansflow.errors import StepFailed

# Prefect's own rule for block document names (prefect.types.names, BlockDocumentName): no
# block can be saved under any other name, so refusing one here loses nothing.
_BLOCK_NAME = re.compile(r"[a-z0-9-]*")
# Prefect sets no length, but the name goes into a URL path, and httpx refuses a URL past
# its limit; no one names a block with more than this.
MAX_LENGTH = 255
SHOWN = 60


def check_block_name(name: str, what: str | None = None) -> str:
    """``name`` unchanged when Prefect could have saved a block under it.

    Raises:
        StepFailed: it has anything but lowercase letters, digits and dashes, or more than
            MAX_LENGTH characters; the message shows at most SHOWN characters of it,
            escaped (repr), so it stays one line.
    """
    if len(name) <= MAX_LENGTH and _BLOCK_NAME.fullmatch(name):
        return name
    prefix = f"{what}: " if what else ""
    raise StepFailed(f"{prefix}{name[:SHOWN]!r} is not a block name: lowercase letters, "
                     f"digits and dashes, at most {MAX_LENGTH} characters")
