"""The step-type registry: every entry complete, every part with an entry, the README's step
table in line with it."""

from __future__ import annotations

import re
from pathlib import Path

from ansflow.spec.common import StrictModel
from ansflow.spec.models import STEP_MODELS
from ansflow.steptypes import REGISTRY, STEP_TYPES, acts_on_kubernetes

ROOT = Path(__file__).resolve().parents[1]


def test_every_entry_is_complete():
    for name, entry in REGISTRY.items():
        assert entry.name == name
        assert issubclass(entry.config, StrictModel) and entry.config.__doc__, name
        assert entry.target in ("runs_on", "docker", "kubernetes", "remote", "prefect"), name
        assert entry.summary, name
        if entry.implemented:
            assert re.fullmatch(r"ansflow\.tasks\.\w+:\w+", entry.task), name
        else:
            assert entry.lands_with, f"{name}: say which work brings it"


def test_every_part_has_an_entry():
    import ansflow.tasks as tasks

    assert set(STEP_MODELS) == set(STEP_TYPES)
    exported = {n for n in tasks.__all__ if n != "StepOutput"}
    assert exported == {n for n, e in REGISTRY.items() if e.implemented}
    task_modules = {p.stem for p in (ROOT / "tasks").glob("*.py")}
    for entry in REGISTRY.values():
        if entry.implemented:
            assert entry.task.split(":")[0].rsplit(".", 1)[1] in task_modules


def test_kubernetes_defaults_follow_the_target_not_a_name_prefix():
    assert acts_on_kubernetes("k8s_wait") and not acts_on_kubernetes("docker_build")
    assert not acts_on_kubernetes("no_such_type")


def test_readme_step_table_lists_every_type_with_its_outputs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("### Step types", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for name in re.findall(r"`(\w+)`", cells[0]):
            rows[name] = cells[2]
    assert set(rows) == set(STEP_TYPES)
    for name, entry in REGISTRY.items():
        if not entry.implemented:
            assert rows[name] == "not implemented in this version", name
        elif entry.outputs is not None:
            assert set(re.findall(r"`(\w+)`", rows[name])) == set(entry.outputs), name


def test_a_step_acts_where_its_type_or_its_runs_on_says():
    from ansflow.steptypes import acts_on

    assert acts_on("docker_push", "local") == "docker"
    assert acts_on("k8s_scale", "local") == "kubernetes"
    assert acts_on("ansible", "local") == "remote"
    assert acts_on("command", "kubernetes") == "kubernetes"
    assert acts_on("script", "docker") == "docker"
    assert acts_on("command", "local") == "local"
