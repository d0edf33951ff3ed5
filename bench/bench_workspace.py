"""Per-run workspace figures: filling a run's workspace from a 100 MB pipeline folder vs `cp -a`.

    python bench/bench_workspace.py [--small 20000] [--small-size 2048] [--big 4]
                                    [--big-mb 15] [--reps 5]

Makes a pipeline folder in a temp directory: SMALL files of SMALL_SIZE bytes in 200 folders
(with a few links inside the folder) and BIG files of BIG_MB MiB (defaults: 20,000 x 2 KiB +
4 x 15 MiB, about 100 MB of data). Then measures, alternately and REPS times each, into a
fresh directory on the same file system:

1. `workspace`: what a run does before its first step (ansflow.workspaces.open_workspace
   with the folder copy of ansflow.workspace_copy: the run's directory, its lock, the copy
   into a staging directory, the rename, meta.json);
2. `copy only`: ansflow.workspace_copy.fill_from_folder alone;
3. `cp -a SRC DST` (GNU coreutils).

Each copy is removed before the next, outside the timing. Prints the medians and the ratios
against `cp -a` (target: workspace <= 1.2x). Everything is made under one temp directory,
removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_folder(root: Path, small: int, small_size: int, big: int, big_mb: int) -> int:
    """The pipeline folder; returns its bytes."""
    total = 0
    chunk = os.urandom(small_size)
    for i in range(small):
        sub = root / "src" / f"pkg{i % 200:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"mod{i}.py").write_bytes(chunk)
        total += small_size
    (root / "assets").mkdir()
    block = os.urandom(1 << 20)
    for i in range(big):
        with open(root / "assets" / f"blob{i}.bin", "wb") as fh:
            for _ in range(big_mb):
                fh.write(block)
        total += big_mb << 20
    for i in range(10):
        os.symlink(f"../src/pkg{i:03d}", root / "assets" / f"link{i}")
    (root / "pipeline.yaml").write_text("steps:\n  - {type: command, config: {command: ls}}\n")
    return total


def timed(fn) -> float:  # noqa: ANN001
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=20000)
    ap.add_argument("--small-size", type=int, default=2048)
    ap.add_argument("--big", type=int, default=4)
    ap.add_argument("--big-mb", type=int, default=15)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    from ansflow.workspace_copy import fill_from_folder
    from ansflow.workspaces import finish_workspace, open_workspace, remove_run_home

    base = Path(tempfile.mkdtemp(prefix="bench-ws-", dir=os.environ.get("BENCH_DIR")))
    try:
        src = base / "project"
        src.mkdir()
        size = make_folder(src, args.small, args.small_size, args.big, args.big_mb)
        root = base / "workspaces"
        out = base / "out"
        subprocess.run(["cp", "-a", str(src), str(base / "warm")], check=True)  # warm caches
        shutil.rmtree(base / "warm")
        times: dict[str, list[float]] = {"workspace": [], "copy only": [], "cp -a": []}
        for rep in range(args.reps):
            run_id = f"bench-{rep}"

            def workspace(run_id: str = run_id) -> None:
                ws = open_workspace(run_id, "bench",
                                    lambda d: fill_from_folder(str(src), str(d)).as_dict(),
                                    root=root)
                finish_workspace(ws, "failed", keep=3600)  # kept: the removal is not timed

            def copy_only() -> None:
                out.mkdir()
                fill_from_folder(str(src), str(out))

            def cp_a() -> None:
                subprocess.run(["cp", "-a", str(src), str(out)], check=True)

            for name, fn in (("workspace", workspace), ("copy only", copy_only),
                             ("cp -a", cp_a))[::1 if rep % 2 == 0 else -1]:
                times[name].append(timed(fn))
                if name == "workspace":
                    remove_run_home(root / run_id)
                else:
                    shutil.rmtree(out)
        peer = statistics.median(times["cp -a"])
        files = args.small + args.big + 1
        print(f"pipeline folder: {files} files + 10 links, {size / 1e6:.0f} MB; "
              f"{args.reps} runs each, medians")
        print(f"{'what':<12} {'median s':>9} {'min s':>7} {'vs cp -a':>9}")
        for name, values in times.items():
            med = statistics.median(values)
            print(f"{name:<12} {med:9.3f} {min(values):7.3f} {med / peer:8.2f}x")
        ratio = statistics.median(times["workspace"]) / peer
        print(f"target workspace <= 1.2x cp -a: {'met' if ratio <= 1.2 else 'NOT met'} "
              f"({ratio:.2f}x)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
