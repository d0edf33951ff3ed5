"""Path confinement refuses a path the system cannot look up (too long in all, or one name
too long) and a NUL byte, with the path cut short in the message."""

from __future__ import annotations

import pytest

from ansflow.errors import StepFailed
from ansflow.paths import confine


@pytest.mark.parametrize("path", ["a" * (100 * 1024), "a/" * 50_000, "b" * 256,
                                  "../" + "c" * 300])
def test_a_path_too_long_is_refused_clearly(tmp_path, path):
    with pytest.raises(StepFailed, match="working_dir '.*'\\.\\.\\. .* the path is too long") \
            as info:
        confine(path, str(tmp_path), "working_dir")
    assert len(str(info.value)) < 300


def test_the_longest_name_and_a_nul_byte(tmp_path):
    assert confine("d" * 255, str(tmp_path), "working_dir") == str(tmp_path / ("d" * 255))
    with pytest.raises(StepFailed, match="script file .* contains a NUL byte") as info:
        confine("\0" * 10_000, str(tmp_path), "script file")
    assert len(str(info.value)) < 500  # 80 characters, each shown as \x00


def test_an_outside_path_is_still_refused_as_outside(tmp_path):
    with pytest.raises(StepFailed, match="working_dir '/etc/passwd' is outside the workspace"):
        confine("/etc/passwd", str(tmp_path), "working_dir")
