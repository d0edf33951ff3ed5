"""Big pipelines: every graph walk is iterative and memory-linear.

3,000 steps in a reversed `needs` chain hit Python's recursion limit (a traceback from
`ansflow validate`); 15,000 sequential steps needed 4.9 GB for the ancestor sets. The 50,000
step files run in a subprocess under an address-space limit, so a quadratic algorithm fails
with MemoryError instead of swapping the machine.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from ansflow.errors import SpecError
from ansflow.spec.validate import load_plan

MEMORY_LIMIT = 2 * 1024**3  # address space of the validating process


def _reversed_chain(n: int, cycle: bool = False) -> str:
    """s0 needs s1 needs s2 ... (written in reverse run order); with ``cycle`` the last
    step needs the first."""
    lines = ["pipeline:", "  name: big", "  stages:", "    - name: a", "      parallel: true",
             "      steps:"]
    for i in range(n):
        need = f"s{i + 1}" if i < n - 1 else ("s0" if cycle else None)
        needs = f", needs: [{need}]" if need else ""
        lines.append(f"        - {{id: s{i}, type: command, config: {{command: x}}{needs}}}")
    return "\n".join(lines) + "\n"


def _sequential_reading_first(n: int) -> str:
    """n sequential steps, each reading the first step's status (the worst case of the old
    ancestor sets, and many queries about one step)."""
    lines = ["steps:"]
    for i in range(n):
        ref = " {{steps.s0.status}}" if i else ""
        lines.append(f"  - {{id: s{i}, type: command, config: {{command: 'echo{ref}'}}}}")
    return "\n".join(lines) + "\n"


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


_VALIDATE = """
import json, sys
from ansflow.errors import SpecError
from ansflow.spec.validate import load_plan
try:
    plan = load_plan(sys.argv[1])
except SpecError as exc:
    print(json.dumps({"problems": [str(p) for p in exc.problems]}))
else:
    print(json.dumps({"steps": len(plan.steps)}))
"""


def _validate_limited(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _VALIDATE, str(path)], capture_output=True,
                         text=True, timeout=600, preexec_fn=_limited)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_3000_step_reversed_chain_validates(tmp_path):
    path = tmp_path / "chain.yaml"
    path.write_text(_reversed_chain(3000))
    plan = load_plan(path)  # was: RecursionError
    assert len(plan.steps) == 3000
    assert plan.step("s0").needs == ["s1"]


# YAML loading dominates these (several seconds each); the graph shapes without a file are
# in tests/test_plan.py.
@pytest.mark.parametrize("make,steps", [
    (_reversed_chain, 50_000),
    (_sequential_reading_first, 50_000),
])
def test_50000_steps_validate_in_bounded_memory(tmp_path, make, steps):
    path = tmp_path / "big.yaml"
    path.write_text(make(50_000))
    result = _validate_limited(path)
    assert result.get("steps") == steps, result


def test_cycle_in_a_50000_chain_is_reported_at_its_position(tmp_path):
    path = tmp_path / "cycle.yaml"
    path.write_text(_reversed_chain(50_000, cycle=True))
    with pytest.raises(SpecError) as info:
        load_plan(path)
    [problem] = info.value.problems
    text = str(problem)
    assert text.startswith(f"{path}:7:11: "), text  # s0, the first step written
    assert "steps form a cycle: s0 -> s1 -> s2" in text and text.endswith("-> s0")
