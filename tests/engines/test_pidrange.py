"""The pid range a step's processes can have (narrowing the end-of-step sweep): exact when
no wrap of the pid allocator is possible, unknown otherwise; and real processes agree."""

from __future__ import annotations

import subprocess

from ansflow.engines import pidrange
from ansflow.engines.pidrange import PidCursor, created_range


def test_the_range_is_the_allocations_between_the_two_cursors():
    assert created_range(PidCursor(1000, 400, 50), PidCursor(1040, 420, 90), 32768) == (1000,
                                                                                        1040)


def test_a_wrap_or_enough_forks_to_go_round_means_unknown():
    start = PidCursor(32000, 400, 50)
    assert created_range(start, PidCursor(500, 400, 1500), 32768) is None  # wrapped
    # As many forks as could go round (with the tasks holding pids): a double wrap is possible
    assert created_range(start, PidCursor(32500, 400, 50 + 16200), 32768) is None
    assert created_range(start, PidCursor(32500, 400, 50 + 15000), 32768) == (32000, 32500)
    assert created_range(start, PidCursor(32500, 400, 10), 32768) is None  # counter went back
    assert created_range(None, start, 32768) is None
    assert created_range(start, start, None) is None


def test_real_processes_land_in_the_range():
    start = pidrange.cursor()
    assert start is not None and pidrange.pid_max()
    children = [subprocess.Popen(["sh", "-c", "sleep 0.2 & echo $!"], stdout=subprocess.PIPE,
                                 text=True) for _ in range(5)]
    pids = [c.pid for c in children] + [int(c.communicate()[0]) for c in children]
    end = pidrange.cursor()
    span = created_range(start, end, pidrange.pid_max())
    if span is None:  # only when the allocator may have wrapped meanwhile (busy machine)
        assert end.last_pid < start.last_pid or (
            2 * (end.forks - start.forks) + start.tasks >= pidrange.pid_max() - 300)
        return
    low, high = span
    assert all(low < pid <= high for pid in pids), (span, pids)
