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


def test_a_burst_of_lines_is_cleaned_like_each_line_alone():
    """Many lines in one chunk (one decode and one scan when none needs cleaning) come out
    exactly as clean_line makes each of them, CRs, ANSI codes and bad bytes included."""
    raw = [b"plain", b"", b"caf\xc3\xa9", b"win\r", b"\x1b[31mred\x1b[0m", b"bad \xff\xfe",
           b"tab\there", b"bell\x07", "ünï".encode()]
    s = LineSplitter(max_bytes=64)
    assert s.feed(b"\n".join(raw) + b"\n" + b"tail") == [clean_line(r) for r in raw]
    plain = [f"line {i}".encode() for i in range(5000)]
    assert s.feed(b"\n" + b"\n".join(plain) + b"\n") == ["tail"] + [p.decode() for p in plain]
    assert s.flush() == []
    long = LineSplitter(max_bytes=10)
    assert long.feed(b"short\n" + b"b" * 25 + b"\nend") == ["short", "b" * 10, "b" * 10,
                                                            "b" * 5]
    assert long.flush() == ["end"]
