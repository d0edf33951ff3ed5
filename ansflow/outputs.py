"""Step outputs written by commands to $ANSFLOW_OUTPUT, in GitHub's $GITHUB_OUTPUT format:
``key=value`` lines, and ``key<<DELIMITER`` ... ``DELIMITER`` for multi-line values."""

from __future__ import annotations

import re

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
