"""Finding saved blocks of one type: their names, and one loaded by name with an error that
says how to save it. Every caller (the CLI's lists and checks, the upkeep and management
flows, the step runtime) goes through these two, so that a missing block reads the same
everywhere."""

from __future__ import annotations

from typing import Any

from ansflow.blocknames import check_block_name
from ansflow.errors import AnsflowError, StepFailed


class BlockNotFound(StepFailed):
    """No saved block of that type and name, or its block cannot be loaded."""


def saved_block_names(slug: str, what: str) -> list[str]:
    """The names of the saved (named, not anonymous) blocks of type ``slug``, sorted; none
    when the block type was never registered.

    Args:
        slug: the block type's slug.
        what: what they are, plural, for the message ("Kubernetes clusters").

    Raises:
        AnsflowError: the Prefect API cannot be reached or refused the listing.
    """
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.exceptions import ObjectNotFound  # noqa: PLC0415

    try:
        with get_client(sync_client=True) as client:
            docs = client.read_block_documents_by_type(slug, include_secrets=False)
    except Exception as exc:  # noqa: BLE001 - any API failure is one line to the user
        response = getattr(exc, "response", None)
        if isinstance(exc, ObjectNotFound) or getattr(response, "status_code", None) == 404:
            return []  # the block type was never registered: none saved
        raise AnsflowError(f"cannot list the saved {what}: the Prefect API failed "
                           f"({type(exc).__name__})") from None
    return sorted({str(d.name) for d in docs if d.name and not d.is_anonymous})


def _not_found(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (type(exc).__name__ == "ObjectNotFound" or "not found" in text
            or "unable to find" in text)


def load_saved_block(model: Any, name: str, what: str, kind: str, save_hint: str,
                     error: type[BlockNotFound] = BlockNotFound) -> Any:
    """The saved block ``name`` of ``model``'s type.

    Args:
        model: the Block class.
        name: the block's name (checked by Prefect's rule for block names first).
        what: what the name stands for, for the messages ("cluster").
        kind: the block type as users know it ("Kubernetes cluster").
        save_hint: the command that saves one, for the hint.
        error: the BlockNotFound subclass to raise.

    Raises:
        StepFailed: ``name`` is not a block name (nothing asked of Prefect).
        BlockNotFound: no such block, or it cannot be loaded (the reason named, no value).
    """
    check_block_name(name, what)
    try:
        return model.load(name)
    except Exception as exc:  # noqa: BLE001 - ObjectNotFound, ValueError, API errors
        if _not_found(exc):
            raise error(f"no saved {kind} block named {name!r}",
                        hint=f"save one: {save_hint}") from None
        raise error(f"{what} {name!r}: cannot load its block "
                    f"({type(exc).__name__}: {str(exc)[:200]})") from None
