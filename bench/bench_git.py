"""A git source's checkout into a fresh workspace against `git clone` of the same repository.

The repository (10,000 files, 200 commits by default) is made with git, then served by git's
own `git http-backend` behind the tests' Basic-auth loopback server (tests/fixtures_git.py).
Each round, interleaved:

- ansflow: what a run does before its first step: `git ls-remote` (resolving the ref), then
  the adapter's checkout (init, remote, one fetch of that commit, checkout) with the token
  given through the credential helper, into an empty folder;
- git clone: `git clone` of the same URL (the token in the URL, the peer's simplest way),
  into an empty folder.

Full history (`depth: 0` against a plain clone) and shallow (`depth: 1` against
`git clone --depth 1`). Medians of the rounds; compare ratios only within one run.

    python bench/bench_git.py --files 10000 --commits 200 --rounds 5
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures_git import COMMIT_ENV, GitHttpServer, git  # noqa: E402

from ansflow.engines.git import (  # noqa: E402
    CheckoutOptions,
    GitCredentials,
    checkout,
    ls_remote,
    resolve_ref,
)


def make_repository(root: Path, files: int, commits: int) -> Path:
    """A bare repository with ``files`` files (1 KiB each, 100 per folder) and ``commits``
    commits (the first adds them all, each later one changes 50), made with fast-import."""
    bare = root / "big.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    stream: list[bytes] = []
    mark = 0
    body = lambda i, c: (f"file {i} at commit {c}\n" + "x" * 1000 + "\n").encode()  # noqa: E731
    when = 1_700_000_000
    previous = 0
    for c in range(commits):
        changed = range(files) if c == 0 else [(c * 50 + k) % files for k in range(50)]
        blobs = {}
        for i in changed:
            mark += 1
            data = body(i, c)
            stream.append(b"blob\nmark :%d\ndata %d\n" % (mark, len(data)) + data + b"\n")
            blobs[i] = mark
        mark += 1
        message = f"commit {c}\n".encode()
        head = [b"commit refs/heads/main\n", b"mark :%d\n" % mark,
                b"committer Ada Tester <ada@example.test> %d +0000\n" % (when + c),
                b"data %d\n" % len(message), message]
        if previous:
            head.append(b"from :%d\n" % previous)
        previous = mark
        stream.extend(head)
        stream.extend(b"M 100644 :%d d%03d/f%05d.txt\n" % (m, i // 100, i)
                      for i, m in blobs.items())
        stream.append(b"\n")
    proc = subprocess.run(["git", "fast-import", "--quiet"], cwd=bare, input=b"".join(stream),
                          env={**os.environ, **COMMIT_ENV}, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.decode(errors="replace"))
    git("repack", "-a", "-d", "-q", cwd=bare)
    return bare


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-git-"))
    server = GitHttpServer(root=work, user="ci", token="bench-token-0123456789")
    try:
        started = time.perf_counter()
        bare = make_repository(work, args.files, args.commits)
        count = git("rev-list", "--count", "main", cwd=bare)
        print(f"repository: {args.files} files, {count} commits, made in "
              f"{time.perf_counter() - started:.1f} s")
        server.start()
        url = server.url("big")
        peer_url = url.replace("http://", f"http://{server.user}:{server.token}@")
        creds = GitCredentials(username=server.user, token=server.token)
        results: dict[str, dict[str, list[float]]] = {}
        for label, depth in (("full history", 0), ("depth 1", 1)):
            times: dict[str, list[float]] = {"ansflow": [], "git clone": []}
            for n in range(args.rounds):
                ours, theirs = work / f"ours-{label[0]}{n}", work / f"theirs-{label[0]}{n}"

                def ansflow_checkout(dest: Path = ours, depth: int = depth) -> None:
                    target = resolve_ref(ls_remote(url, creds), "main", url)
                    checkout(url, str(dest), target, creds=creds,
                             options=CheckoutOptions(depth=depth or None))

                def git_clone(dest: Path = theirs, depth: int = depth) -> None:
                    extra = ["--depth", str(depth)] if depth else []
                    subprocess.run(["git", "clone", "-q", *extra, peer_url, str(dest)],
                                   check=True, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})

                pair = [("ansflow", ansflow_checkout), ("git clone", git_clone)]
                for name, fn in pair if n % 2 == 0 else reversed(pair):
                    times[name].append(timed(fn))
                assert len(list(ours.rglob("*.txt"))) == args.files
                assert len(list(theirs.rglob("*.txt"))) == args.files
                shutil.rmtree(ours)
                shutil.rmtree(theirs)
            results[label] = times
        print(f"\n{args.rounds} rounds each, medians (seconds); machine: {os.cpu_count()} cores\n")
        print("| checkout | ansflow (ls-remote + checkout) | git clone | ratio |")
        print("|---|---|---|---|")
        for label, times in results.items():
            ours_s = statistics.median(times["ansflow"])
            theirs_s = statistics.median(times["git clone"])
            print(f"| {label} | {ours_s:.3f} | {theirs_s:.3f} | {ours_s / theirs_s:.2f}x |")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
