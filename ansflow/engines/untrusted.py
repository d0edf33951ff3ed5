"""Text from a cluster, an engine or a step (untrusted) made safe for a one-line message."""

from __future__ import annotations


def clean_text(text: object, limit: int = 200) -> str:
    """``text`` with control characters as ``?``, cut at ``limit`` characters: printable,
    one line, bounded, whatever a cluster or a container sent."""
    return "".join(c if c.isprintable() else "?" for c in str(text))[:limit]
