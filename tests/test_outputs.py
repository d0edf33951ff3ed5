"""$ANSFLOW_OUTPUT: parsing (GitHub's $GITHUB_OUTPUT format) and reading the file safely
whatever a step turned it into (real files, FIFOs and links on this machine)."""

import os
import threading

import pytest

from ansflow.outputs import MAX_OUTPUT_BYTES, OutputFormatError, parse_outputs, read_outputs_file


def test_key_value_and_heredoc():
    text = "a=1\nb=x=y\nmulti<<EOF\nline 1\nline 2\nEOF\n\na=2\n"
    assert parse_outputs(text) == {"a": "2", "b": "x=y", "multi": "line 1\nline 2"}


@pytest.mark.parametrize("text, match", [
    ("just words\n", "expected key=value"),
    ("k<<END\nno end\n", "never ends"),
    ("bad key=1\n", "not a valid output name"),
])
def test_bad_lines_are_errors(text, match):
    with pytest.raises(OutputFormatError, match=match):
        parse_outputs(text)


def test_a_regular_file_is_read_and_a_missing_one_is_empty(tmp_path):
    (tmp_path / "out").write_text("a=1\n")
    assert read_outputs_file(tmp_path / "out") == "a=1\n"
    assert read_outputs_file(tmp_path / "gone") == ""


def test_a_link_to_a_host_file_or_a_device_is_refused_without_reading_it(tmp_path):
    secret = tmp_path / "host-secret"
    secret.write_text("token=hunter2\n")
    for target in (secret, "/dev/zero"):
        link = tmp_path / "out"
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        with pytest.raises(OutputFormatError, match="replaced by a symbolic link") as err:
            read_outputs_file(link)
        assert "hunter2" not in str(err.value)


def test_a_fifo_is_refused_at_once_instead_of_blocking(tmp_path):
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    result = {}
    reader = threading.Thread(target=lambda: result.setdefault("error", _error_of(fifo)))
    reader.start()
    reader.join(30)  # blocking would mean no answer at all; it must answer
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert "no longer a regular file" in result["error"]


def test_a_directory_and_an_oversized_file_are_refused(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputFormatError, match="no longer a regular file"):
        read_outputs_file(tmp_path / "dir")
    (tmp_path / "big").write_bytes(b"a=" + b"x" * (MAX_OUTPUT_BYTES + 10))
    with pytest.raises(OutputFormatError, match="larger than 1024 KiB"):
        read_outputs_file(tmp_path / "big")


def _error_of(path) -> str:
    try:
        read_outputs_file(path)
    except OutputFormatError as exc:
        return str(exc)
    return ""
