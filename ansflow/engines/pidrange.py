"""Which pids a step can have created: narrows the end-of-step token sweep of /proc.

Linux allocates pids cyclically in a pid namespace: each new process (or thread) takes the next
free number after the last one allocated, wrapping to 300 past ``pid_max``. So when no wrap
can have happened between a step's start and its end, every process created meanwhile (the
only ones that can carry the step's token) has a pid in ``(last at start, last at end]``, and
the sweep reads the environment of those alone instead of every process's (~1-3 ms a step
on a busy machine). Whether a wrap can have happened is decided from the kernel's count of
all forks since boot: a full round needs ``pid_max - 300`` numbers, each either allocated
during the step or held by a task (process or thread) that was already there or was created
during the step, so ``2 * created + tasks at start < pid_max - 300`` cannot go round. When
that is not certain, or /proc does not say, the sweep reads every process. (A process in a
child pid namespace still gets a pid of ours, from the same cursor.)

Not covered: a privileged step that rewinds ``/proc/sys/kernel/ns_last_pid`` (such a step can
leave the sweep's reach in other ways too, e.g. ``env -i`` and a new session).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

RESERVED_PIDS = 300  # where the kernel wraps to


class PidCursor(NamedTuple):
    last_pid: int  # the last pid allocated in this pid namespace (/proc/loadavg)
    tasks: int  # processes and threads alive, all namespaces (/proc/loadavg)
    forks: int  # processes and threads created since boot, all namespaces (/proc/stat)


def cursor() -> PidCursor | None:
    """The pid allocator's position now, or None when /proc does not tell."""
    try:
        with open("/proc/loadavg", "rb") as fh:
            fields = fh.read().split()
        last, tasks = int(fields[4]), int(fields[3].split(b"/")[1])
        with open("/proc/stat", "rb") as fh:
            stat = fh.read()
        at = stat.index(b"\nprocesses ") + len(b"\nprocesses ")
        forks = int(stat[at:stat.index(b"\n", at)])
    except (OSError, ValueError, IndexError):
        return None
    return PidCursor(last, tasks, forks)


@functools.lru_cache(maxsize=1)
def pid_max() -> int | None:
    try:
        with open("/proc/sys/kernel/pid_max", "rb") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return None


def created_range(start: PidCursor | None, end: PidCursor | None,
                  limit: int | None) -> tuple[int, int] | None:
    """``(low, high)``: every process created between ``start`` and ``end`` has
    ``low < pid <= high``; None when that cannot be known (then sweep every process).

    Args:
        start: The cursor before the step's process was started.
        end: The cursor now.
        limit: ``pid_max``.
    """
    if start is None or end is None or limit is None:
        return None
    created = end.forks - start.forks
    if created < 0 or end.last_pid < start.last_pid:
        return None  # wrapped (or a counter we do not understand)
    if 2 * created + start.tasks >= limit - RESERVED_PIDS:
        return None  # enough allocations to have gone all the way round
    return start.last_pid, end.last_pid
