"""Step outputs written by commands to $ANSFLOW_OUTPUT, in GitHub's $GITHUB_OUTPUT format:
``key=value`` lines, and ``key<<DELIMITER`` ... ``DELIMITER`` for multi-line values."""

from __future__ import annotations

import errno
import os
import re
import stat

MAX_OUTPUT_BYTES = 1024 * 1024
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class OutputFormatError(ValueError):
    """The output file has a line that is neither key=value nor a heredoc."""


def parse_outputs(text: str) -> dict[str, str]:
    """Parse the content of an outputs file. Later keys override earlier ones."""
    if len(text.encode("utf-8", errors="replace")) > MAX_OUTPUT_BYTES:
        raise OutputFormatError(f"outputs file is larger than {MAX_OUTPUT_BYTES // 1024} KiB")
    outputs: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        i += 1
        if not line.strip():
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            key, delimiter = key.strip(), delimiter.strip()
            _check_key(key, i)
            if not delimiter:
                raise OutputFormatError(f"line {i}: heredoc for {key!r} has no delimiter")
            body: list[str] = []
            while i < len(lines) and lines[i].rstrip("\r") != delimiter:
                body.append(lines[i].rstrip("\r"))
                i += 1
            if i >= len(lines):
                raise OutputFormatError(f"line {i}: heredoc for {key!r} never ends "
                                        f"(missing {delimiter!r})")
            i += 1
            outputs[key] = "\n".join(body)
        elif "=" in line:
            key, value = line.split("=", 1)
            _check_key(key.strip(), i)
            outputs[key.strip()] = value
        else:
            raise OutputFormatError(f"line {i}: expected key=value or key<<DELIMITER, "
                                    f"got {line[:80]!r}")
    return outputs


def _check_key(key: str, line_no: int) -> None:
    if not _KEY.match(key):
        raise OutputFormatError(f"line {line_no}: {key!r} is not a valid output name")


def read_outputs_file(path: str | os.PathLike) -> str:
    """The outputs file's text, read safely whatever the step turned it into.

    Only a regular file is read, never through a symbolic link (a link to a host file would
    leak it into outputs and artifacts, one to /dev/zero would never end), without blocking
    (a FIFO would hang the step past every timeout), and at most MAX_OUTPUT_BYTES.

    Raises:
        OutputFormatError: the file is a link, not a regular file, unreadable or too large.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputFormatError("$ANSFLOW_OUTPUT was replaced by a symbolic link; outputs "
                                    "are read only from the regular file ansflow created") from None
        raise OutputFormatError(f"cannot read $ANSFLOW_OUTPUT: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OutputFormatError("$ANSFLOW_OUTPUT is no longer a regular file (a FIFO, a "
                                    "device or a directory); outputs are read only from a "
                                    "regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_OUTPUT_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_OUTPUT_BYTES:
        raise OutputFormatError(f"outputs file is larger than {MAX_OUTPUT_BYTES // 1024} KiB")
    return b"".join(chunks).decode("utf-8", errors="replace")
