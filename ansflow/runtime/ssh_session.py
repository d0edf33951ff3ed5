"""The SSH host a remote or Ansible step names: its SshHost block (and jump hosts) loaded,
its secrets added to the run's masker, as an engine `Target`."""

from __future__ import annotations

import shlex
import threading
import time
from typing import Any

from ansflow.blocknames import check_block_name
from ansflow.engines.ssh import Target
from ansflow.errors import StepFailed
from ansflow.runtime.base import mask_secrets

MAX_JUMPS = 5
CACHE_SECONDS = 30.0  # a run's steps re-use a block loaded this recently
_cache: dict[tuple[str, str], tuple[float, Any]] = {}
_cache_lock = threading.Lock()


def load_host_block(name: str, run_id: str | None = None) -> Any:
    """The saved SshHost block ``name``, or a StepFailed saying how to save one. Within a
    run (``run_id``) a block loaded in the last CACHE_SECONDS is re-used (each remote step
    would otherwise pay a round trip to the Prefect API)."""
    from ansflow.blocks.ssh import SshHost  # noqa: PLC0415

    now = time.monotonic()
    if run_id is not None:
        with _cache_lock:
            for key, (at, _) in list(_cache.items()):
                if now - at > CACHE_SECONDS:
                    del _cache[key]
            hit = _cache.get((run_id, name))
        if hit is not None:
            return hit[1]
    block = _load(SshHost, name)
    if run_id is not None:
        with _cache_lock:
            _cache[(run_id, name)] = (now, block)
    return block


def _load(model: Any, name: str) -> Any:
    check_block_name(name, "host")
    try:
        return model.load(name)
    except ValueError as exc:
        if "unable to find" in str(exc).lower() or "not found" in str(exc).lower():
            raise StepFailed(f"no saved SSH host block named {name!r}",
                             hint=f"save one: ansflow host add {shlex.quote(name)} --hostname ... "
                                  "--user ... --key-file ... --known-host-key ...") from None
        raise StepFailed(f"host {name!r}: cannot load its block: {str(exc)[:300]}") from None
    except RuntimeError as exc:
        # Prefect's answer to a stored block its class no longer accepts (one saved before a
        # check was added, or written through the API): say which check, not Prefect's text.
        if "failed validation" not in str(exc):
            raise
        raise StepFailed(f"host {name!r}: its saved block is refused: {_invalid(exc)}",
                         hint=f"save it again: ansflow host add {shlex.quote(name)} ... --overwrite"
                         ) from None


def _invalid(exc: BaseException) -> str:
    from pydantic import ValidationError  # noqa: PLC0415

    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ValidationError):
        return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in cause.errors())
    return "it does not validate"


def host_target(name: str | None, ctx: Any = None, block: Any = None) -> Target:
    """The connection target of host block ``name`` (a given ``block`` object wins), its
    jump hosts resolved; every secret it holds is added to ``ctx.masker``.

    Raises:
        StepFailed: no name, no such block, a jump-host cycle, or a secret too short to mask.
    """
    if block is None and not name:
        raise StepFailed("no host given: set the step's `host:` (an SshHost block name) or "
                         "`defaults.remote.host`")
    seen: list[str] = []
    chain: list[tuple[str, Any]] = []
    current_name, current = name or "given", block
    while True:
        if current_name in seen:
            raise StepFailed(f"host {name!r}: its jump hosts form a cycle: "
                             f"{' -> '.join([*seen, current_name])}")
        if len(seen) > MAX_JUMPS:
            raise StepFailed(f"host {name!r}: more than {MAX_JUMPS} jump hosts")
        seen.append(current_name)
        current = current if current is not None else load_host_block(
            current_name, getattr(ctx, "run_id", None))
        mask_secrets(ctx, f"host {current_name!r}", current.secret_values())
        chain.append((current_name, current))
        if not current.jump_host:
            break
        current_name, current = current.jump_host, None
    target: Target | None = None
    for host_name, host_block in reversed(chain):
        target = Target.from_block(host_name, host_block, jump=target)
    assert target is not None
    return target


