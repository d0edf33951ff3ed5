"""Files a step's pod or SSH host sends back (``download:``), written into the workspace.

What comes back is untrusted data: the pod's image, or the host, chooses the bytes of the
tar stream, not just the files' contents. So the archive is read member by member here,
whatever the Python release, and never with ``tarfile``'s own extraction (before the 2025
tarfile fixes its ``data`` filter could be walked around with symlink chains):

- a member's name must be relative, without ``..``, and lie at or under one of the declared
  ``download:`` paths; anything else refuses the whole download (the step fails);
- only regular files and directories are written; symbolic and hard links, devices, FIFOs
  are skipped and named to the caller (a build's ``dist/`` may hold a link legitimately,
  but a link is never recreated: a later step could write or read through it);
- every write walks the path one directory at a time from a descriptor of the workspace,
  opening each component with ``O_NOFOLLOW | O_DIRECTORY``: a symlink already in the
  workspace (or anything but a real directory) on the way refuses the download instead of
  redirecting it; a file is written to a fresh name and renamed over the old entry, so an
  existing link (symbolic or hard) at the target is replaced, never written through;
- the stream, the members' total size and their count are bounded (the operator may change
  the bounds with ``ANSFLOW_DOWNLOAD_MAX_BYTES`` / ``ANSFLOW_DOWNLOAD_MAX_FILES``).

Members written before a refused one stay (all of them inside the declared paths).
"""

from __future__ import annotations

import errno
import os
import posixpath
import secrets
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from ansflow.engines.errors import EngineError

MAX_BYTES_ENV = "ANSFLOW_DOWNLOAD_MAX_BYTES"
MAX_FILES_ENV = "ANSFLOW_DOWNLOAD_MAX_FILES"
DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_FILES = 100_000
# Tar headers (PAX ones hold long names) and padding around the members' contents.
_PER_MEMBER_OVERHEAD = 4096
_CHUNK = 1024 * 1024
_MAX_HEADER = 16 * 1024 * 1024
_KINDS = {tarfile.SYMTYPE: "symbolic link", tarfile.LNKTYPE: "hard link",
          tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
          tarfile.FIFOTYPE: "FIFO"}


class ArchiveRefused(EngineError):
    """A download archive broke a rule (a name outside the declared paths, a link on the
    way in the workspace, too big, not a tar): nothing after the offending member is
    written."""


@dataclass(frozen=True)
class Limits:
    """Bounds of one download: the members' total size and their count."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_files: int = DEFAULT_MAX_FILES

    @classmethod
    def from_env(cls) -> Limits:
        """The operator's bounds (environment of the worker), else the defaults."""
        return cls(_env_int(MAX_BYTES_ENV, DEFAULT_MAX_BYTES),
                   _env_int(MAX_FILES_ENV, DEFAULT_MAX_FILES))

    @property
    def stream_bytes(self) -> int:
        """The most a tar stream of members within these bounds can take."""
        return self.max_bytes + (self.max_files + 2) * _PER_MEMBER_OVERHEAD


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise EngineError(f"{name}={raw!r} is not a positive whole number")
    return value


@dataclass
class Extracted:
    """What a download wrote, and the members it skipped (name, kind)."""

    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skipped_note(self, limit: int = 10) -> str | None:
        """One line naming the skipped members, or None."""
        if not self.skipped:
            return None
        shown = ", ".join(f"{name} ({kind})" for name, kind in self.skipped[:limit])
        more = f" and {len(self.skipped) - limit} more" if len(self.skipped) > limit else ""
        return (f"download: skipped {len(self.skipped)} member(s) that are not regular files "
                f"or directories (links and special files are never extracted): {shown}{more}")


class BoundedSpool:
    """A write sink for the raw stream: refuses (raises) past ``limit`` bytes, so a sender
    cannot fill the worker's disk before the archive is read."""

    def __init__(self, spool: IO[bytes], limit: int, source: str) -> None:
        self.spool, self.limit, self.source, self.size = spool, limit, source, 0

    def write(self, chunk: bytes) -> int:
        self.size += len(chunk)
        if self.size > self.limit:
            raise ArchiveRefused(f"download from {self.source} refused: the archive is larger "
                                 f"than {self.limit} bytes",
                                 hint=f"the worker's operator sets the bound with "
                                      f"{MAX_BYTES_ENV}")
        return self.spool.write(chunk)


def member_path(name: str, declared: Iterable[str]) -> str:
    """A member's name as a normalized relative path at or under a declared path (``.``:
    the whole workspace, which the step's author asked for).

    Raises:
        ArchiveRefused: absolute, with a ``..`` component, empty, or outside every
            declared path.
    """
    shown = name[:200]
    if "\0" in name or name.startswith("/"):
        raise ArchiveRefused(f"member {shown!r} has an absolute or unusable name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveRefused(f"member {shown!r} climbs out with '..'")
    if not parts:
        if "." in declared:
            return "."
        raise ArchiveRefused(f"member {shown!r} names no path")
    path = "/".join(parts)
    for root in declared:
        if root == "." or path == root or path.startswith(root + "/"):
            return path
    raise ArchiveRefused(f"member {shown!r} is outside the declared download paths "
                         f"({', '.join(declared)})")


def extract(fileobj: IO[bytes], workspace: str, declared: Iterable[str],
            source: str, limits: Limits | None = None) -> Extracted:
    """Write the regular files and directories of the uncompressed tar stream ``fileobj``
    into ``workspace``, under the ``declared`` relative paths only (see the module).

    Args:
        fileobj: The tar archive, a seekable file (the spool it was received into).
        workspace: The local workspace (the directory the declared paths are relative to).
        declared: The step's ``download:`` paths, normalized and relative.
        source: Where the archive came from, for messages ("the pod", "host h").
        limits: Size and count bounds (default: the operator's, ``Limits.from_env()``).

    Raises:
        ArchiveRefused: see the module's rules; the message names the member.
    """
    limits = limits or Limits.from_env()
    roots = [posixpath.normpath(p) for p in declared]
    if any(r.startswith("/") or r == ".." or r.startswith("../") for r in roots):
        raise ArchiveRefused(f"download paths {roots} must be relative and inside the "
                             "workspace")
    result = Extracted()
    writer = _Writer(workspace)
    count = total = 0
    try:
        with tarfile.open(fileobj=_CappedReads(fileobj), mode="r:") as tar:
            for member in tar:
                count += 1
                if count > limits.max_files:
                    raise ArchiveRefused(f"more than {limits.max_files} members",
                                         hint=f"the worker's operator sets the bound with "
                                              f"{MAX_FILES_ENV}")
                path = member_path(member.name, roots)
                if path == "." and member.isdir():
                    continue  # the workspace itself (`download: [.]`)
                if path == ".":
                    raise ArchiveRefused(f"member {member.name!r} names the workspace itself")
                if member.isdir():
                    writer.directory(path, member.mode)
                    result.dirs.append(path)
                elif member.isreg():
                    total += member.size
                    if total > limits.max_bytes:
                        raise ArchiveRefused(
                            f"the files are larger than {limits.max_bytes} bytes in all "
                            f"(at {path!r})",
                            hint=f"the worker's operator sets the bound with {MAX_BYTES_ENV}")
                    source_file = tar.extractfile(member)
                    if source_file is None:
                        raise ArchiveRefused(f"member {path!r} has no content")
                    writer.file(path, source_file, member.mode, member.mtime)
                    result.files.append(path)
                else:
                    result.skipped.append((path, _KINDS.get(member.type, "special file")))
    except ArchiveRefused as exc:
        text = str(exc)
        if exc.hint:
            text = text[: -len(f"\n  hint: {exc.hint}")]
        raise ArchiveRefused(f"download from {source} refused: {text}", hint=exc.hint) \
            from None
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise ArchiveRefused(f"download from {source} failed: not a valid tar stream "
                             f"({exc})") from None
    except OSError as exc:
        raise ArchiveRefused(f"download from {source} failed: {exc}") from None
    finally:
        writer.close()
    return result


class _CappedReads:
    """The archive file, refusing any one read larger than a member header may be:
    tarfile reads a PAX or long-name header whole into memory, whatever size it claims."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._f = fileobj

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > _MAX_HEADER:
            raise ArchiveRefused(f"a member header claims more than {_MAX_HEADER} bytes")
        return self._f.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()


class _Writer:
    """Writes under one directory descriptor, never following a link on the way."""

    def __init__(self, workspace: str) -> None:
        self.root = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY)

    def close(self) -> None:
        os.close(self.root)

    def _open_dir(self, parent: int, name: str, path: str, create: bool,
                  mode: int = 0o755) -> int:
        if create:
            try:
                os.mkdir(name, mode, dir_fd=parent)
            except FileExistsError:
                pass
        try:
            return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ArchiveRefused(f"{path!r} in the workspace is a symbolic link or not a "
                                     "directory; a download never writes through it") from None
            raise

    def _parent(self, parts: list[str]) -> int:
        """A descriptor of the directory holding ``parts[-1]``, made where missing."""
        fd = os.dup(self.root)
        try:
            for i, name in enumerate(parts[:-1]):
                child = self._open_dir(fd, name, "/".join(parts[:i + 1]), create=True)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def directory(self, path: str, mode: int) -> None:
        parts = path.split("/")
        parent = self._parent(parts)
        try:
            fd = self._open_dir(parent, parts[-1], path, create=True, mode=_dir_mode(mode))
            os.close(fd)
        finally:
            os.close(parent)

    def file(self, path: str, source: Any, mode: int, mtime: float) -> None:
        parts = path.split("/")
        parent = self._parent(parts)
        temp = f".ansflow-download-{secrets.token_hex(8)}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         _file_mode(mode), dir_fd=parent)
            try:
                with os.fdopen(fd, "wb", closefd=False) as out:
                    while chunk := source.read(_CHUNK):
                        out.write(chunk)
                try:
                    os.utime(fd, (mtime, mtime))
                except (OverflowError, ValueError):  # a time no file can have: keep now
                    pass
            finally:
                os.close(fd)
            try:
                existing = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                raise ArchiveRefused(f"{path!r} is a directory in the workspace; the archive "
                                     "has a file there")
            # A rename replaces the entry itself: an existing symlink or hard link at the
            # target is dropped, the file it pointed to is left alone.
            os.rename(temp, parts[-1], src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=parent)
            except OSError:
                pass
            raise
        finally:
            os.close(parent)


def _file_mode(mode: int) -> int:
    # As tarfile's data filter: no set-id bits, no group/other write, the owner can write.
    return (mode & 0o755) | 0o600


def _dir_mode(mode: int) -> int:
    return (mode & 0o755) | 0o700
