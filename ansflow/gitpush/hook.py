"""The post-receive hook `ansflow git-hook install` puts in a bare repository.

git gives the hook one line per updated ref on stdin, ``<old> <new> <ref>``. For each:

- a deleted ref (new = 000...) starts nothing (its event says `deleted`);
- a tag: `after` is the tagged commit (an annotated tag's object is peeled), paths are not
  looked at (GitHub's rule);
- a new branch: the changed paths are those of the commits no other ref had, against the
  parent of the deepest one (GitHub's "two-dot diff against the parent of the ancestor of
  the deepest commit pushed"); a branch made at an existing commit changed no path;
- an updated branch, force-pushed or not: ``git diff --name-only old new``.

Ten commits pushed at once are one ref update: one event, one run of the head commit. The
hook talks to the Prefect server given at install time (PREFECT_API_URL in the hook script;
PREFECT_API_AUTH_STRING, if the server needs it, from the git server's environment) and
says in one line per ref what it started; git shows it to the pusher as `remote: ...`.
"""

from __future__ import annotations

import os
import subprocess
import sys

from ansflow.gitpush.events import ZERO, ApiError, PrefectApi, Push, PushError, deliver

REPOSITORY_ENV = "ANSFLOW_PUSH_REPOSITORY"
_GIT_TIMEOUT = 60


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", "core.quotepath=off", *args], capture_output=True,
                          timeout=_GIT_TIMEOUT)


def _names(output: bytes) -> list[str]:
    return [p.decode("utf-8", errors="surrogateescape") for p in output.split(b"\0") if p]


def _empty_tree() -> str:
    proc = _git("hash-object", "-t", "tree", "--stdin")
    return proc.stdout.decode().strip() if proc.returncode == 0 else \
        "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def changed_paths(old: str, new: str, ref: str) -> list[str] | None:
    """The paths a branch update changed (None when git cannot tell)."""
    if not old.strip("0"):
        # Every other ref (not --all: it adds HEAD, which may point at this very ref).
        proc = _git("rev-list", "--topo-order", "--reverse", new, "--not",
                    f"--exclude={ref}", "--glob=refs/*")
        if proc.returncode != 0:
            return None
        commits = proc.stdout.decode().split()
        if not commits:
            return []  # a branch at a commit another ref has: nothing changed
        parent = _git("rev-parse", "-q", "--verify", f"{commits[0]}^")
        base = parent.stdout.decode().strip() if parent.returncode == 0 else _empty_tree()
    else:
        base = old
    proc = _git("diff", "--no-renames", "--name-only", "-z", base, new, "--")
    return _names(proc.stdout) if proc.returncode == 0 else None


def push_of(line: str, repository: str) -> Push:
    old, new, ref = line.split(" ", 2)
    after = new
    paths: list[str] | None = []
    extra: dict[str, str] = {}
    if new.strip("0") and ref.startswith("refs/tags/"):
        peeled = _git("rev-parse", "-q", "--verify", f"{new}^{{commit}}")
        if peeled.returncode == 0:
            after = peeled.stdout.decode().strip()
            if after != new:
                extra["tag_object"] = new
    elif new.strip("0") and ref.startswith("refs/heads/"):
        paths = changed_paths(old, new, ref)
    return Push(repositories=[repository], ref=ref, before=old, after=after, paths=paths,
                source="git-hook", pusher=os.environ.get("GL_USERNAME")
                or os.environ.get("REMOTE_USER") or os.environ.get("USER"), extra=extra)


def main(stdin=None, out=None) -> int:
    stdin = stdin or sys.stdin
    out = out or sys.stderr
    repository = os.environ.get(REPOSITORY_ENV) or "file://" + os.path.abspath(
        os.environ.get("GIT_DIR", "."))
    lines = [line.strip() for line in stdin.read().splitlines() if line.strip()]
    try:
        api = PrefectApi()
    except ApiError as exc:
        print(f"ansflow: no push event sent: {exc}", file=out)
        return 1
    status = 0
    for line in lines:
        if line.count(" ") < 2:
            continue
        try:
            push = push_of(line, repository)
            started = deliver(push, api)
        except (PushError, ApiError, subprocess.SubprocessError) as exc:
            print(f"ansflow: {line.split(' ', 2)[-1]}: no push event sent: {exc}", file=out)
            status = 1
            continue
        if push.after == ZERO or push.deleted:
            print(f"ansflow: {push.ref} deleted: nothing started", file=out)
        elif started:
            print(f"ansflow: {push.ref} {push.after[:12]}: starting {', '.join(started)}",
                  file=out)
        else:
            print(f"ansflow: {push.ref} {push.after[:12]}: no pipeline is started by this "
                  "push", file=out)
    return status


if __name__ == "__main__":
    sys.exit(main())
