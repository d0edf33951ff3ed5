"""Pipeline text through validation, for the spec tests: the problems it reports (with the
temp file's path shown as `p.yaml`) or the plan it gives."""

from __future__ import annotations

import pytest

from ansflow.errors import SpecError
from ansflow.spec.validate import load_plan


def problems(tmp_path, text: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_plan(path)
    return [str(p).replace(str(path), "p.yaml") for p in info.value.problems]


def ok(tmp_path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return load_plan(path)
