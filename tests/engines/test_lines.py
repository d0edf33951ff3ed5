"""The one line splitter of step output (ansflow/engines/lines.py): pure."""

from __future__ import annotations

from ansflow.engines.lines import LineSplitter, clean_line


def test_splitter_joins_lines_across_chunks():
    s = LineSplitter()
    assert s.feed(b"hel") == []
    assert s.feed(b"lo\nwor") == ["hello"]
    assert s.feed(b"ld\n\nx") == ["world", ""]
    assert s.flush() == ["x"]
    assert s.flush() == []


def test_splitter_cuts_a_line_without_newline_at_the_bound():
    s = LineSplitter(max_bytes=10)
    lines = s.feed(b"a" * 35)
    assert lines == ["a" * 10] * 3
    assert len(s._buf) == 5
    assert s.flush() == ["a" * 5]


def test_splitter_memory_stays_bounded_for_a_huge_line():
    s = LineSplitter(max_bytes=1024)
    total = 0
    for _ in range(1000):
        total += len(s.feed(b"z" * 4096))
        assert len(s._buf) < 1024
    assert total == 4000


def test_binary_garbage_becomes_printable_text():
    text = clean_line(b"\x00\x01ok\xff\xfe\x1b[31mred\x1b[0m\r\n")
    assert "ok" in text and "red" in text
    assert "\x00" not in text and "\x1b" not in text and "\r" not in text
