"""The one line splitter of step output: a byte stream cut into clean text lines with
bounded memory (processes, containers and pod execs all go through it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MAX_LINE_BYTES = 8192  # a longer line is handed out in pieces of this size
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def clean_line(raw: bytes | str) -> str:
    """Text fit for a log line: undecodable bytes as U+FFFD, ANSI codes and controls dropped."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = _ANSI.sub("", text.rstrip("\r\n"))
    return _CONTROL.sub("\ufffd", text)


def clean_lines(pieces: list[bytes]) -> list[str]:
    """``clean_line`` of each piece; one decode and one scan for the usual burst of plain
    lines (a piece holds no newline, so joining them cannot merge two lines' bytes)."""
    if not pieces:
        return []
    text = b"\n".join(pieces).decode("utf-8", "replace")
    if _CONTROL.search(text) is None:  # no CR, ESC or other control: nothing to clean
        return text.split("\n")
    return [clean_line(line) for line in text.split("\n")]


@dataclass
class LineSplitter:
    """Cuts a byte stream into lines with bounded memory.

    A line longer than ``max_bytes`` is handed out in pieces of about ``max_bytes``, so a
    container printing megabytes without a newline never grows the buffer far past that.
    With a ``masker`` (``ansflow.masking.Masker``) a piece is never cut inside a secret (or
    an encoding of one): the splitter holds back enough bytes to see a secret that starts
    before the cut whole, and moves the cut before it (or after it, when it starts the piece),
    so masking each piece masks the secret.
    """

    max_bytes: int = MAX_LINE_BYTES
    masker: Any = None
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[str]:
        """Add ``data``; return the complete lines it finished (cleaned, without newline)."""
        self._buf.extend(data)
        return self._take(final=False)

    def flush(self) -> list[str]:
        """The rest of the stream (the last, unterminated line), if any."""
        lines = self._take(final=True)
        if self._buf:
            lines.append(clean_line(bytes(self._buf)))
            self._buf = bytearray()
        return lines

    def _take(self, final: bool) -> list[str]:
        pieces: list[bytes] = []
        buf, pos = self._buf, 0
        while True:
            cut = buf.find(b"\n", pos, pos + self.max_bytes + 1)
            if cut != -1:
                pieces.append(buf[pos:cut])
                pos = cut + 1
                continue
            overlap = max(0, self._longest() - 1)
            rest = len(buf) - pos
            if final:
                if rest <= self.max_bytes:
                    break  # flush hands the rest out whole
            elif rest < self.max_bytes + overlap:
                break  # wait for the newline, or enough bytes to cut safely
            del buf[:pos]  # the secret check below looks at the buffer from its start
            pos = 0
            cut = self._safe_cut(self.max_bytes, overlap)
            pieces.append(bytes(buf[:cut]))
            del buf[:cut]
        del buf[:pos]  # once per call: the buffer is not copied once per line
        return clean_lines(pieces)

    def _longest(self) -> int:
        return getattr(self.masker, "longest_bytes", 0) if self.masker is not None else 0

    def _safe_cut(self, cut: int, overlap: int) -> int:
        """``cut``, moved off any secret it would split: before it, or after it when it
        starts the piece (then the piece is longer than max_bytes by at most the secret)."""
        if not overlap:
            return cut
        for _ in range(16):  # overlapping secrets can move the cut a few times
            spans = self.masker.straddling(self._buf, cut)
            if not spans:
                return cut
            start = min(s for s, _ in spans)
            if start == 0:
                return max(e for _, e in spans)
            cut = start
        return cut
