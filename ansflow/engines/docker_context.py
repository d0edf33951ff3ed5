"""Build contexts: checked up front, then streamed to the engine as a tar while it is written.

The docker CLI writes the tar into a pipe that the upload reads; so does this module (a tar
in a temporary file first would add its whole write time to every build). Every file is
checked before anything is sent: size limit, readability, .dockerignore honoured.
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from docker.utils.build import exclude_paths

from ansflow.engines.docker_streams import human_bytes
from ansflow.engines.errors import EngineError

CHUNK_BYTES = 1024 * 1024


def ignore_patterns(root: str) -> list[str]:
    """The patterns of ``root/.dockerignore`` (empty when there is none)."""
    path = os.path.join(root, ".dockerignore")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [ln.strip() for ln in fh.read().splitlines() if ln.strip() and ln[0] != "#"]


@dataclass(frozen=True)
class ContextFiles:
    """What will be sent: paths relative to ``root``, plus generated files (name, text)."""

    root: str
    files: list[str]
    extra: list[tuple[str, str]] = field(default_factory=list)
    total_bytes: int = 0


def scan_context(
    root: str, dockerfile: str, extra_dockerfile: tuple[str, str] | None, limit: int, hint: str
) -> ContextFiles:
    """List the context's files and check each one, before any I/O with the engine.

    Args:
        root: The context directory.
        dockerfile: The Dockerfile's path inside the context (always sent).
        extra_dockerfile: (name, text) of a Dockerfile from outside the context, if any.
        limit: Largest total size accepted, in bytes.
        hint: What to tell the user when the limit is exceeded.

    Raises:
        EngineError: the context is over the limit or a file in it cannot be read.
    """
    patterns = ignore_patterns(root)
    try:
        files = sorted(exclude_paths(root, list(patterns), dockerfile))
        total = 0
        for name in files:
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                total += os.lstat(path).st_size
                os.close(os.open(path, os.O_RDONLY))  # readable? (os.access ignores euid)
    except OSError as exc:
        raise EngineError(f"build context unreadable: {exc.filename or root}: {exc.strerror}"
                         ) from None
    if total > limit:
        raise EngineError(f"build context {root} holds {human_bytes(total)}, over the limit of "
                         f"{human_bytes(limit)}", hint=hint)
    extra = []
    if extra_dockerfile:
        extra = [extra_dockerfile, (".dockerignore", "\n".join(patterns + [extra_dockerfile[0]]))]
    return ContextFiles(root, files, extra, total)


def write_tar(context: ContextFiles, out) -> None:
    """Write the context as an uncompressed tar stream to ``out`` (no seeking)."""
    extra_names = {name for name, _ in context.extra}
    with tarfile.open(mode="w|", fileobj=out) as tar:
        for name in context.files:
            if name in extra_names:
                continue
            path = os.path.join(context.root, name)
            info = tar.gettarinfo(path, arcname=name)
            if info is None:  # a socket: the engine cannot use it either
                continue
            if info.mtime < 0 or info.mtime > 8**11 - 1:
                info.mtime = int(info.mtime)
            if info.isfile():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
        for name, text in context.extra:
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


class ContextStream:
    """The tar of a context, produced by a writer thread into a pipe, read in chunks.

    ``close()`` always: it unblocks and joins the writer when the upload stopped early.
    """

    def __init__(self, context: ContextFiles) -> None:
        read_fd, write_fd = os.pipe()
        self._reader = os.fdopen(read_fd, "rb")
        self._writer = os.fdopen(write_fd, "wb")
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._write, args=(context,), daemon=True,
                                        name="ansflow-build-context")
        self._thread.start()

    def _write(self, context: ContextFiles) -> None:
        try:
            write_tar(context, self._writer)
        except BrokenPipeError:
            pass  # the upload stopped (deadline, cancel, engine error)
        except (OSError, tarfile.TarError) as exc:
            self.error = exc
        finally:
            try:
                self._writer.close()
            except OSError:
                pass

    def chunks(self) -> Iterator[bytes]:
        """The tar in chunks of up to 1 MiB, as the writer produces it."""
        while chunk := self._reader.read(CHUNK_BYTES):
            yield chunk

    def close(self) -> None:
        self._reader.close()
        self._thread.join(timeout=10)
