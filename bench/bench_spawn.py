"""Per-spawn cost of the ways to start a step process so that it dies with the worker.

Each variant spawns `true` the way run_process does (pipes, own session, a fresh token in the
environment) and waits for it; the median of 5 batches is shown. ``--ballast-mb`` touches that
much memory first: fork+exec copies the page tables of the whole worker (a pipeline worker is
~130-150 MB), vfork does not. Not a test: compare figures only within one run.

    python bench/bench_spawn.py --spawns 500 --ballast-mb 150
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ansflow.engines import reaper

_HELPER_C = r"""
#include <sys/prctl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
  pid_t parent = (pid_t)atoi(argv[1]);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(137);
  execvp(argv[2], argv + 2);
  _exit(127);
}
"""


def _spawn(argv: list[str], **kw) -> None:
    proc = subprocess.Popen(argv, cwd="/", env={**os.environ, reaper.TOKEN_ENV: uuid.uuid4().hex},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, **kw)
    proc.communicate()


def _variants(work: Path) -> dict:
    true = shutil.which("true") or "/bin/true"
    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def preexec() -> None:
        prctl(1, 9, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(137)

    def reaped() -> None:
        assert reaper.guard() is None, "the reaper did not start"
        proc = subprocess.Popen([true], cwd="/", env={**os.environ,
                                                      reaper.TOKEN_ENV: reaper.new_token()},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        reaper.track(proc.pid)
        proc.communicate()
        reaper.untrack(proc.pid)

    variants = {
        "fork+exec: preexec_fn with PR_SET_PDEATHSIG (before)": lambda: _spawn(
            [true], preexec_fn=preexec),
        "vfork, no parent-death kill (floor)": lambda: _spawn([true]),
        "vfork + per-process reaper (ansflow now)": reaped,
    }
    setpriv = shutil.which("setpriv")
    if setpriv:
        variants["vfork + exec through `setpriv --pdeathsig KILL`"] = lambda: _spawn(
            [setpriv, "--pdeathsig", "KILL", "--", true])
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        source, helper = work / "pd.c", work / "pd"
        source.write_text(_HELPER_C)
        built = subprocess.run([cc, "-O2", "-static", "-o", str(helper), str(source)],
                               capture_output=True)
        if built.returncode == 0:
            variants["vfork + exec through a static C prctl helper"] = lambda: _spawn(
                [str(helper), str(parent), true])
    return variants


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spawns", type=int, default=500)
    parser.add_argument("--ballast-mb", type=int, default=150)
    args = parser.parse_args()
    ballast = bytearray(args.ballast_mb << 20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    work = Path(tempfile.mkdtemp(prefix="ansflow-bench-spawn-"))
    try:
        variants = _variants(work)
        batch = max(args.spawns // 5, 1)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(5):
            for name, spawn in variants.items():
                start = time.perf_counter()
                for _ in range(batch):
                    spawn()
                times[name].append((time.perf_counter() - start) / batch * 1000)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"| spawn ({args.ballast_mb} MB worker) | median ms | best ms |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
