"""Fast task starts when no concurrency limit uses a step's tags.

Prefect acquires tag concurrency slots (one API call) for every task run that has tags, and
each distinct tag set costs a round trip; with a tag per step id, 16 parallel steps started
over ~6 s instead of at once (measured here, Prefect 3.9.1, see bench/). Prefect keeps a
short-lived cache of tag sets known to have no limits; we fill it for our steps' tag sets after
checking once per run that no limit names any of them. A limit the user did set (say on
`type:k8s_deploy`) is honoured as usual: those tag sets are never put in the cache.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from prefect.client.orchestration import get_client

log = logging.getLogger("ansflow.flows")


def limited_tags() -> set[str] | None:
    """Every tag that a v1 tag limit or a v2 `tag:` limit names; None if it cannot be known."""
    tags: set[str] = set()
    try:
        with get_client(sync_client=True) as client:
            offset = 0
            while True:
                page = client.read_concurrency_limits(limit=200, offset=offset)
                tags.update(limit.tag for limit in page)
                if len(page) < 200:
                    break
                offset += 200
            offset = 0
            while True:
                page = client.read_global_concurrency_limits(limit=200, offset=offset)
                tags.update(g.name.removeprefix("tag:") for g in page if g.name.startswith("tag:"))
                if len(page) < 200:
                    break
                offset += 200
    except Exception:  # noqa: BLE001 - unknown: leave Prefect's normal path alone
        log.debug("could not read concurrency limits", exc_info=True)
        return None
    return tags


def mark_unlimited(tags: list[str], limited: set[str] | None) -> None:
    """Tell Prefect's client that ``tags`` have no concurrency limit (when that is known)."""
    if limited is None or limited.intersection(tags):
        return
    try:
        from prefect.concurrency import services  # noqa: PLC0415

        with services._cache_lock:
            services._no_limits_cache[frozenset(f"tag:{t}" for t in tags)] = True
    except (ImportError, AttributeError):  # another Prefect version: nothing to speed up
        return


_shortcut_lock = threading.Lock()
_shortcut_installed = False


def skip_known_unlimited() -> None:
    """Let Prefect's task engine answer a tag set in its no-limits cache on the spot.

    Prefect checks that cache only after handing the acquisition to its event loop thread and
    a slot service thread and waiting for their answer (~2-8 ms per task run with tags on a
    busy machine, measured in bench/bench_core.py's profile); a cached "no limits" answer
    there means the engine takes no slot. The shortcut gives the same answer from the same
    cache in the task's own thread; any other tag set (or a tag set whose entry expired) takes
    Prefect's own path. Installed once per process; nothing changes on a Prefect version
    without these internals.
    """
    global _shortcut_installed
    with _shortcut_lock:
        if _shortcut_installed:
            return
        try:
            from prefect import task_engine  # noqa: PLC0415
            from prefect.concurrency import services  # noqa: PLC0415

            original = task_engine._concurrency
            cache, cache_lock = services._no_limits_cache, services._cache_lock
            uses_cache = services._should_use_cache
        except (ImportError, AttributeError):  # another Prefect version: its own path
            return

        def concurrency(names, *args, holder=None, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if names and uses_cache(names, holder):
                with cache_lock:
                    known = cache.get(frozenset(names), False)
                if known:
                    return contextlib.nullcontext()
            return original(names, *args, holder=holder, **kwargs)

        task_engine._concurrency = concurrency
        _shortcut_installed = True
