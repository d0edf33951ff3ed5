"""Per-run workspaces: every pipeline run works in a directory of its own on the worker.

Layout under the root (``ANSFLOW_WORKSPACES``, else ``$ANSFLOW_HOME/workspaces``)::

    <root>/<run id>/workspace/   what the steps get (ANSFLOW_WORKSPACE, {{ run.workspace }})
    <root>/<run id>/meta.json    the run, its pipeline, state (running | kept), kept_until,
                                 the owner process, what the filler reported
    <root>/<run id>/lock         held (flock) by the process running the run

A run opens its workspace (:func:`open_workspace`): a kept workspace of an earlier attempt of
the same run (a retry) is reused, else a new one is filled by a *filler* (the folder copy of
:mod:`ansflow.workspace_copy`, or a source checkout) into a staging directory that is renamed
into place only when complete. When the run ends (:func:`finish_workspace`) the workspace
is removed after a success, and kept for ``ANSFLOW_WORKSPACE_KEEP`` (default 24h) after a
failure or cancellation. The cleanup removes kept workspaces once expired, and those whose
process died (the lock is free while meta.json says running).

``ANSFLOW_WORKSPACE_MODE=in-place`` keeps the old behaviour: the run works in the pipeline's
folder itself, shared by every run of it (for local development).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansflow.errors import AnsflowError

ROOT_ENV = "ANSFLOW_WORKSPACES"
KEEP_ENV = "ANSFLOW_WORKSPACE_KEEP"
MODE_ENV = "ANSFLOW_WORKSPACE_MODE"
MODES = ("per-run", "in-place")
DEFAULT_KEEP_SECONDS = 24 * 3600.0
WORKSPACE_DIR = "workspace"
META_FILE = "meta.json"
LOCK_FILE = "lock"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_STAGING = ".staging-"

# A filler fills the empty directory it is given (the run's workspace-to-be) and returns
# facts to keep with the workspace (e.g. {"git": {"sha": ...}}), or None. It raises
# AnsflowError for a failure the run reports (the run then fails before any step).
Filler = Callable[[Path], "dict[str, Any] | None"]


class WorkspaceError(AnsflowError):
    """The run's workspace cannot be made, reused or removed."""


@dataclass
class RunWorkspace:
    """A run's workspace while the run holds it."""

    run_id: str
    path: Path  # what the steps work in
    reused: bool = False  # the kept workspace of an earlier attempt of this run
    in_place: bool = False  # the pipeline's folder itself (ANSFLOW_WORKSPACE_MODE=in-place)
    facts: dict[str, Any] = field(default_factory=dict)  # what the filler returned
    home: Path | None = None  # <root>/<run id>
    lock_fd: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "reused": self.reused, "in_place": self.in_place}


def workspace_mode() -> str:
    raw = os.environ.get(MODE_ENV, "").strip() or "per-run"
    if raw not in MODES:
        raise WorkspaceError(f"{MODE_ENV} must be one of {', '.join(MODES)}, got {raw[:40]!r}")
    return raw


def keep_seconds() -> float:
    """How long a failed run's workspace is kept: ``ANSFLOW_WORKSPACE_KEEP`` (seconds, or
    '30m', '24h', '7d' style), default 24h; 0 removes it at once."""
    raw = os.environ.get(KEEP_ENV, "").strip()
    if not raw:
        return DEFAULT_KEEP_SECONDS
    days = re.fullmatch(r"(\d+(?:\.\d+)?)d", raw)
    try:
        if days:
            return float(days.group(1)) * 86400
        from ansflow.spec.common import parse_duration  # noqa: PLC0415

        value = parse_duration(raw)
    except ValueError:
        value = None
    if not isinstance(value, float) or value > 10 * 365 * 86400:
        raise WorkspaceError(f"{KEEP_ENV} must be a duration such as 3600, '30m', '24h' or "
                             f"'7d', got {raw[:40]!r}")
    return value


def workspaces_root() -> Path:
    """The root: ``ANSFLOW_WORKSPACES`` (absolute; a link there is followed once, as the
    operator's choice), else ``$ANSFLOW_HOME/workspaces``."""
    raw = os.environ.get(ROOT_ENV, "").strip()
    if raw:
        if not raw.startswith("/") or "\0" in raw:
            raise WorkspaceError(f"{ROOT_ENV} must be an absolute path, got {raw[:200]!r}")
        root = os.path.realpath(raw)
        bad = sorted({c for c in root if c in ":\n\r"})
        if bad:  # a Docker bind mount (SRC:DST) cannot name such a path; a line breaks logs
            raise WorkspaceError(f"{ROOT_ENV} {root[:200]!r} holds {', '.join(map(repr, bad))}: "
                                 "choose a path without ':' or line breaks")
        return Path(root)
    from ansflow.store import ansflow_home  # noqa: PLC0415

    return Path(os.path.realpath(ansflow_home())) / "workspaces"


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise WorkspaceError(f"{str(run_id)[:80]!r} is not a run id (letters, digits, '-', "
                             "'_'; at most 64)")
    return run_id


def check_root_outside(root: Path, folder: str) -> None:
    """Refuse a root inside the pipeline's folder (each copy would copy the copies) or
    holding it."""
    folder = os.path.realpath(folder)
    text = str(root)
    if text == folder or text.startswith(folder.rstrip("/") + "/"):
        raise WorkspaceError(f"the workspaces root {root} is inside the pipeline's folder "
                             f"{folder}; set {ROOT_ENV} to a directory outside it")
    if folder.startswith(text.rstrip("/") + "/"):
        raise WorkspaceError(f"the pipeline's folder {folder} is inside the workspaces root "
                             f"{root}; keep pipelines outside {ROOT_ENV}")


def in_place(run_id: str, folder: str) -> RunWorkspace:
    return RunWorkspace(run_id=run_id, path=Path(folder), in_place=True)


def open_workspace(run_id: str, pipeline: str, fill: Filler, *,
                   root: Path | None = None) -> RunWorkspace:
    """The run's workspace, held by this process until :func:`finish_workspace`.

    A kept workspace of an earlier attempt of ``run_id`` (a retry on this machine) is
    reused as it was left; otherwise a new one is filled by ``fill``.

    Raises:
        WorkspaceError: a bad run id or root, the run's workspace held by another live
            process, or the filler failed (its partial copy is removed).
    """
    check_run_id(run_id)
    root = root or workspaces_root()
    _make_root(root)
    home = root / run_id
    fd = _lock(home)
    try:
        meta = read_meta(home)
        ws = home / WORKSPACE_DIR
        if meta is not None and _is_real_dir(ws):
            meta.update(state="running", **_owner())
            meta.pop("kept_until", None)
            _write_meta(home, meta)
            return RunWorkspace(run_id, ws, reused=True, facts=meta.get("facts") or {},
                                home=home, lock_fd=fd)
        _clear(home)
        facts = _fill(home, fill)
        _write_meta(home, {"run_id": run_id, "pipeline": pipeline, "state": "running",
                           "created": time.time(), "facts": facts, **_owner()})
        return RunWorkspace(run_id, ws, facts=facts, home=home, lock_fd=fd)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise WorkspaceError(f"no space left for the run's workspace in {home}") from None
        raise WorkspaceError(f"the run's workspace could not be made in {home}: "
                             f"{exc.strerror or exc}") from None
    except BaseException:
        os.close(fd)
        raise


def finish_workspace(ws: RunWorkspace, state: str, keep: float | None = None) -> str:
    """End the run's hold: after ``completed`` the workspace is removed; otherwise it is
    kept for ``keep`` seconds (default ``ANSFLOW_WORKSPACE_KEEP``; 0 removes it). Returns
    what happened, for the run's log.

    Raises:
        WorkspaceError: it could not be removed (what is left is named).
    """
    if ws.in_place or ws.home is None:
        return f"the run worked in the pipeline's folder {ws.path} (in-place mode)"
    try:
        seconds = 0.0 if state == "completed" else (keep_seconds() if keep is None else keep)
        if seconds <= 0:
            remove_run_home(ws.home)
            return f"workspace {ws.path} removed"
        meta = read_meta(ws.home) or {"run_id": ws.run_id}
        until = time.time() + seconds
        meta.update(state="kept", kept_until=until, ended_state=state)
        _write_meta(ws.home, meta)
        return (f"workspace {ws.path} kept until "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(until))} for debugging "
                "and `ansflow retry`")
    finally:
        if ws.lock_fd is not None:
            os.close(ws.lock_fd)
            ws.lock_fd = None


@dataclass
class WorkspaceEntry:
    """One entry of the root, as the cleanup sees it."""

    run_id: str
    home: Path
    meta: dict[str, Any] | None
    held: bool  # a live process holds its lock
    is_link: bool = False


def list_workspaces(root: Path | None = None) -> Iterator[WorkspaceEntry]:
    """Every run's entry under the root (names that are not run ids are left alone)."""
    root = root or workspaces_root()
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise WorkspaceError(f"the workspaces root {root} cannot be read: "
                             f"{exc.strerror or exc}") from None
    for name in names:
        if not _RUN_ID.match(name):
            continue
        home = root / name
        if os.path.islink(home):
            yield WorkspaceEntry(name, home, None, held=False, is_link=True)
            continue
        if not home.is_dir():
            continue
        yield WorkspaceEntry(name, home, read_meta(home), held=is_held(home))


def is_held(home: Path) -> bool:
    """True while a process holds the run's lock (the run is going on)."""
    try:
        fd = os.open(home / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def held_for_removal(home: Path) -> Iterator[dict[str, Any] | None]:
    """The run's lock taken without waiting (WorkspaceError when a process holds it), and
    its meta read under it: what the cleanup re-checks just before removing."""
    try:
        fd = _lock(home, wait=False, create=False)
    except BlockingIOError:
        raise WorkspaceError(f"{home} is in use by a running run") from None
    try:
        yield read_meta(home)
    finally:
        os.close(fd)


def read_meta(home: Path) -> dict[str, Any] | None:
    try:
        fd = os.open(home / META_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            data = json.loads(fh.read(1024 * 1024))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_run_home(home: Path) -> None:
    """Remove ``<root>/<run id>`` and everything below, never following a link (a link in
    its place is unlinked, not followed); read-only folders a step left are made writable
    first.

    Raises:
        WorkspaceError: something could not be removed.
    """
    if os.path.islink(home):
        os.unlink(home)
        return
    try:
        for dirpath, _dirs, _files, dfd in os.fwalk(home, follow_symlinks=False):
            mode = os.fstat(dfd).st_mode
            if stat.S_IMODE(mode) & stat.S_IRWXU != stat.S_IRWXU:
                os.chmod(dfd, stat.S_IMODE(mode) | stat.S_IRWXU)
            del dirpath
    except OSError:
        pass  # removal below reports what stays
    failures: list[str] = []
    shutil.rmtree(home, onerror=lambda _f, path, exc: failures.append(
        f"{path}: {getattr(exc[1], 'strerror', None) or exc[1]}"))
    if failures and os.path.lexists(home):
        raise WorkspaceError(f"could not remove {home}: {failures[0]}"
                             + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""))


def _make_root(root: Path) -> None:
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkspaceError(f"the workspaces root {root} cannot be made: "
                             f"{exc.strerror or exc}") from None
    if not root.is_dir() or os.path.islink(root):
        raise WorkspaceError(f"the workspaces root {root} is not a directory")


def _lock(home: Path, *, wait: bool = True, create: bool = True) -> int:
    """An exclusive flock on ``home/lock`` (made with ``home`` when ``create``), on the file
    that is still there once the lock is held (a cleanup may have removed ``home``
    meanwhile)."""
    for _ in range(50):
        try:
            if not create:
                if not _is_real_dir(home):
                    raise WorkspaceError(f"{home} is gone")
            else:
                os.mkdir(home, 0o700)
        except FileExistsError:
            if os.path.islink(home) or not home.is_dir():
                raise WorkspaceError(f"{home} is not a directory of ansflow's") from None
        except OSError as exc:
            raise WorkspaceError(f"cannot make {home}: {exc.strerror or exc}") from None
        try:
            fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
        except FileNotFoundError:
            continue  # removed between the mkdir and the open
        except OSError as exc:
            raise WorkspaceError(f"cannot open {home / LOCK_FILE}: {exc.strerror or exc}") \
                from None
        try:
            if wait:
                _flock_waiting(fd, home)
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                same = os.stat(home / LOCK_FILE, follow_symlinks=False).st_ino == \
                    os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)
    raise WorkspaceError(f"{home} keeps disappearing; is a cleanup removing it in a loop?")


def _flock_waiting(fd: int, home: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                owner = (read_meta(home) or {}).get("pid", "?")
                raise WorkspaceError(f"the run's workspace {home} is in use by another "
                                     f"process (pid {owner}); is the run already running?") \
                    from None
            time.sleep(0.2)


def _fill(home: Path, fill: Filler) -> dict[str, Any]:
    staging = home / f"{_STAGING}{os.getpid()}"
    os.mkdir(staging, 0o700)
    try:
        facts = fill(staging) or {}
        os.rename(staging, home / WORKSPACE_DIR)
    except BaseException:
        with contextlib.suppress(WorkspaceError, OSError):
            remove_tree(staging)
        raise
    return facts


def remove_tree(path: Path) -> None:
    """Remove a directory tree without following links (see :func:`remove_run_home`)."""
    remove_run_home(path)


def _clear(home: Path) -> None:
    """What a failed or crashed earlier fill left in ``home`` (not the lock)."""
    for name in os.listdir(home):
        if name == LOCK_FILE:
            continue
        path = home / name
        if os.path.isdir(path) and not os.path.islink(path):
            remove_run_home(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "updated": time.time()}


def _write_meta(home: Path, meta: dict[str, Any]) -> None:
    tmp = home / f"{META_FILE}.{os.getpid()}.tmp"
    # ASCII: a file name that is not UTF-8 (a lone surrogate here) reads back as it was.
    data = json.dumps(meta, default=str).encode("ascii")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, home / META_FILE)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise WorkspaceError(f"no space left to record the workspace in {home}") from None
        raise WorkspaceError(f"cannot record the workspace in {home}: "
                             f"{exc.strerror or exc}") from None
