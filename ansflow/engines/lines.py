"""The one line splitter of step output: a byte stream cut into clean text lines with
bounded memory (processes, containers and pod execs all go through it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_LINE_BYTES = 8192  # a longer line is handed out in pieces of this size
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def clean_line(raw: bytes | str) -> str:
    """Text fit for a log line: undecodable bytes as U+FFFD, ANSI codes and controls dropped."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = _ANSI.sub("", text.rstrip("\r\n"))
    return _CONTROL.sub("\ufffd", text)


@dataclass
class LineSplitter:
    """Cuts a byte stream into lines with bounded memory.

    A line longer than ``max_bytes`` is handed out in pieces of ``max_bytes``, so a
    container printing megabytes without a newline never grows the buffer past that.
    """

    max_bytes: int = MAX_LINE_BYTES
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[str]:
        """Add ``data``; return the complete lines it finished (cleaned, without newline)."""
        lines: list[str] = []
        self._buf.extend(data)
        while True:
            cut = self._buf.find(b"\n")
            if cut == -1 and len(self._buf) < self.max_bytes:
                return lines
            if cut == -1 or cut > self.max_bytes:
                cut = self.max_bytes
                piece, self._buf = bytes(self._buf[:cut]), self._buf[cut:]
            else:
                piece, self._buf = bytes(self._buf[:cut]), self._buf[cut + 1 :]
            lines.append(clean_line(piece))

    def flush(self) -> list[str]:
        """The last, unterminated line, if any."""
        if not self._buf:
            return []
        piece, self._buf = bytes(self._buf), bytearray()
        return [clean_line(piece)]
