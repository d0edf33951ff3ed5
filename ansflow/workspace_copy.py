"""Filling a run's workspace from the pipeline's folder: a copy that never leaves the folder.

What is copied, from the folder the pipeline works in (the pipeline file's directory, or its
``workspace:`` key):

- regular files, with their permission bits and modification time (not their owner, hard
  links, extended attributes or ACLs: the copy belongs to the worker's user);
- directories, with their permission bits and modification time;
- symbolic links whose target lies inside the folder (an absolute target inside is rewritten
  relative, so the link points into the workspace, never back into the folder).

Skipped, each one reported: links whose target leaves the folder (or cannot be resolved),
FIFOs, sockets and device files (a FIFO is never opened), files that cannot be read, and
whatever a ``.ansflowignore`` excludes. ``.ansflowignore`` files (the folder's and any
subfolder's) follow gitignore's rules (``*``, ``**``, ``?``, ``[...]``, ``!`` negation, a
leading or middle ``/`` anchors to the file's folder, a trailing ``/`` matches folders only,
a file under an excluded folder cannot be re-included). A pattern only ever filters what is
inside the folder: ``../x`` matches nothing.

Every file is opened relative to an open descriptor of its parent with ``O_NOFOLLOW``: a
component turned into a link while the copy runs is skipped, never followed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

import pathspec

IGNORE_FILE = ".ansflowignore"
MAX_FILES_ENV = "ANSFLOW_WORKSPACE_MAX_FILES"
DEFAULT_MAX_FILES = 1_000_000
MAX_DEPTH = 200  # two frames and two descriptors per level
MAX_IGNORE_BYTES = 1024 * 1024
_SHOWN_SKIPS = 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class CopyError(Exception):
    """The copy cannot go on (a limit, a full disk, the folder unreadable); the message is
    meant for a user."""


@dataclass
class CopyReport:
    """What a copy did: counts, and what it skipped and why (the first few named)."""

    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0
    ignored: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)
    skipped_count: int = 0

    def skip(self, path: str, why: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < _SHOWN_SKIPS:
            self.skipped.append((path, why))

    def summary(self) -> str:
        text = (f"{self.files} file(s), {self.dirs} folder(s), {self.links} link(s), "
                f"{self.bytes} bytes copied")
        if self.ignored:
            text += f"; {self.ignored} ignored by {IGNORE_FILE}"
        if self.skipped_count:
            shown = ", ".join(f"{p!r} ({why})" for p, why in self.skipped[:5])
            more = f" and {self.skipped_count - 5} more" if self.skipped_count > 5 else ""
            text += f"; {self.skipped_count} skipped: {shown}{more}"
        return text

    def as_dict(self) -> dict:
        return {"files": self.files, "dirs": self.dirs, "links": self.links,
                "bytes": self.bytes, "ignored": self.ignored,
                "skipped": self.skipped_count,
                "skipped_first": [{"path": p, "why": w} for p, w in self.skipped]}


class IgnoreRules:
    """The ``.ansflowignore`` files met on the way down: (folder, spec) pairs, deepest last.
    As in git, the deepest file with a matching pattern decides, and within a file the last
    matching pattern."""

    def __init__(self, chain: tuple[tuple[str, pathspec.GitIgnoreSpec], ...] = ()) -> None:
        self.chain = chain

    def below(self, rel_dir: str, text: str | None) -> IgnoreRules:
        if text is None:
            return self
        spec = pathspec.GitIgnoreSpec.from_lines(text.splitlines())
        return IgnoreRules((*self.chain, (rel_dir, spec)))

    def ignored(self, rel: str, is_dir: bool) -> bool:
        for base, spec in reversed(self.chain):
            sub = rel[len(base) + 1:] if base else rel
            result = spec.check_file(sub + "/" if is_dir else sub)
            if result.include is not None:
                return bool(result.include)
        return False


def max_files() -> int:
    raw = os.environ.get(MAX_FILES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_FILES
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise CopyError(f"{MAX_FILES_ENV} must be a whole number of 1 or more, got {raw[:40]!r}")
    return int(raw)


def fill_from_folder(source: str, dest: str, *,
                     on_skip: Callable[[str, str], None] | None = None) -> CopyReport:
    """Copy the folder ``source`` into the existing, empty directory ``dest`` (see the module).

    Args:
        source: The pipeline's folder (resolved; links inside it are not followed).
        dest: The run's workspace, made by the caller.
        on_skip: Called with (relative path, why) for every entry skipped.

    Returns:
        What was copied and skipped.

    Raises:
        CopyError: the folder cannot be read, more than ANSFLOW_WORKSPACE_MAX_FILES entries,
            the disk is full; ``dest`` then holds a partial copy the caller removes.
    """
    root = os.path.realpath(source)
    try:
        src_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise CopyError(f"the pipeline's folder {source} cannot be read: "
                        f"{exc.strerror or exc}") from None
    try:
        dst_fd = os.open(dest, _DIR_FLAGS)
    except OSError:
        os.close(src_fd)
        raise
    copier = _Copier(root, max_files(), on_skip)
    try:
        copier.copy_dir(src_fd, dst_fd, "", IgnoreRules(), 0)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CopyError(f"no space left for the run's workspace at {dest}") from None
        raise CopyError(f"copying the pipeline's folder failed: {exc.strerror or exc}") from None
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    return copier.report


class _Copier:
    def __init__(self, root: str, limit: int, on_skip: Callable[[str, str], None] | None):
        self.root = root
        self.limit = limit
        self.report = CopyReport()
        self.on_skip = on_skip
        self.seen = 0
        self.umask = _umask()

    def skip(self, rel: str, why: str) -> None:
        self.report.skip(rel, why)
        if self.on_skip is not None:
            self.on_skip(rel, why)

    def copy_dir(self, src_fd: int, dst_fd: int, rel_dir: str, rules: IgnoreRules,
                 depth: int) -> None:
        if depth > MAX_DEPTH:
            raise CopyError(f"the pipeline's folder is nested deeper than {MAX_DEPTH} levels "
                            f"at {rel_dir[:200]!r}")
        rules = rules.below(rel_dir, self._ignore_text(src_fd, rel_dir))
        with os.scandir(src_fd) as entries:
            listing = list(entries)
        for entry in listing:
            self.seen += 1
            if self.seen > self.limit:
                raise CopyError(f"the pipeline's folder holds more than {self.limit} entries "
                                f"(ANSFLOW_WORKSPACE_MAX_FILES); list what steps need not "
                                f"see in {IGNORE_FILE}")
            name = entry.name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            try:
                # The directory entry's type, without a stat (the file's own fstat decides
                # once it is opened: a name turned into something else is skipped then).
                is_dir = entry.is_dir(follow_symlinks=False)
                kind = "dir" if is_dir else "file" if entry.is_file(follow_symlinks=False) \
                    else "link" if entry.is_symlink() else "other"
            except OSError as exc:
                self.skip(rel, f"cannot be read: {exc.strerror}")
                continue
            if rules.chain and rules.ignored(rel, is_dir):
                self.report.ignored += 1
                continue
            if kind == "dir":
                self._subdir(src_fd, dst_fd, name, rel, rules, depth)
            elif kind == "file":
                self._file(src_fd, dst_fd, name, rel)
            elif kind == "link":
                self._link(src_fd, dst_fd, name, rel, rel_dir)
            else:
                self._special(entry, rel)

    def _special(self, entry: os.DirEntry, rel: str) -> None:
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError as exc:
            self.skip(rel, f"cannot be read: {exc.strerror}")
            return
        self.skip(rel, _kind(mode) + ": not copied")

    def _ignore_text(self, src_fd: int, rel_dir: str) -> str | None:
        try:
            fd = os.open(IGNORE_FILE, _READ_FLAGS, dir_fd=src_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:  # a link or unreadable: not a rule file
            self.skip(f"{rel_dir}/{IGNORE_FILE}" if rel_dir else IGNORE_FILE,
                      f"not used as ignore rules: {exc.strerror}")
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            data = os.read(fd, MAX_IGNORE_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_IGNORE_BYTES:
            raise CopyError(f"{IGNORE_FILE} in {rel_dir or 'the folder'!r} is larger than "
                            f"{MAX_IGNORE_BYTES // 1024} KiB")
        return data.decode("utf-8", "surrogateescape")

    def _subdir(self, src_fd: int, dst_fd: int, name: str, rel: str, rules: IgnoreRules,
                depth: int) -> None:
        try:
            sub_src = os.open(name, _DIR_FLAGS, dir_fd=src_fd)
        except OSError as exc:
            self.skip(rel, f"cannot be read: {exc.strerror}")
            return
        try:
            st = os.fstat(sub_src)
            os.mkdir(name, 0o700, dir_fd=dst_fd)
            sub_dst = os.open(name, _DIR_FLAGS, dir_fd=dst_fd)
            try:
                self.copy_dir(sub_src, sub_dst, rel, rules, depth + 1)
                os.chmod(sub_dst, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
                os.utime(sub_dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(sub_dst)
        finally:
            os.close(sub_src)
        self.report.dirs += 1

    def _file(self, src_fd: int, dst_fd: int, name: str, rel: str) -> None:
        try:
            fd_in = os.open(name, _READ_FLAGS, dir_fd=src_fd)
        except OSError as exc:
            self.skip(rel, "changed into a link while copying" if exc.errno == errno.ELOOP
                      else f"cannot be read: {exc.strerror}")
            return
        try:
            st = os.fstat(fd_in)
            if not stat.S_ISREG(st.st_mode):
                self.skip(rel, _kind(st.st_mode) + ": not copied")
                return
            mode = stat.S_IMODE(st.st_mode)
            fd_out = os.open(name, _WRITE_FLAGS, mode & 0o777, dir_fd=dst_fd)
            try:
                _copy_bytes(fd_in, fd_out, st.st_size)
                if mode & (self.umask | 0o7000):  # bits the umask took, or setuid/gid/sticky
                    os.chmod(fd_out, mode)
                os.utime(fd_out, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd_out)
        finally:
            os.close(fd_in)
        self.report.files += 1
        self.report.bytes += st.st_size

    def _link(self, src_fd: int, dst_fd: int, name: str, rel: str, rel_dir: str) -> None:
        try:
            target = os.readlink(name, dir_fd=src_fd)
        except OSError as exc:
            self.skip(rel, f"cannot be read: {exc.strerror}")
            return
        here = os.path.join(self.root, rel_dir)
        resolved = os.path.realpath(os.path.join(here, target))
        if not _inside(resolved, self.root) or "\0" in target:
            self.skip(rel, "a link out of the pipeline's folder: not copied")
            return
        if os.path.isabs(target):
            target = os.path.relpath(os.path.normpath(target), here)
            if not _inside(os.path.normpath(os.path.join(here, target)), self.root):
                self.skip(rel, "a link out of the pipeline's folder: not copied")
                return
        os.symlink(target, name, dir_fd=dst_fd)
        self.report.links += 1


_SMALL = 64 * 1024


def _copy_bytes(fd_in: int, fd_out: int, size: int) -> None:
    """The ``size`` bytes fstat gave (a file cut short meanwhile: what is there). Small
    files by read and write (one call each), larger ones in the kernel (copy_file_range,
    else sendfile), as cp does."""
    if size == 0:
        return
    if size <= _SMALL:
        data = os.read(fd_in, size)
        while data:
            data = data[os.write(fd_out, data):]
        return
    offset = 0
    try:
        while offset < size:
            n = os.copy_file_range(fd_in, fd_out, size - offset)
            if n == 0:
                return
            offset += n
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while offset < size:
        n = os.sendfile(fd_out, fd_in, offset, size - offset)
        if n == 0:
            return
        offset += n


def _umask() -> int:
    """The process's umask, read without changing it (/proc; else the common 022)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "a special file"
