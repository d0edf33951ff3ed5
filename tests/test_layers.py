"""The architecture as checked contracts: import-linter's contracts of pyproject.toml
(layers, a pure pipeline language, adapters that know no pipeline and raise their own
errors) hold over the tree laid
out as the wheel has it, and no module imports another package's private name."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _wheel_layout(dest: Path) -> Path:
    """A copy of the sources laid out as in the wheel (flows/ as ansflow/flows/, ...)."""
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    src = dest / "src"
    for package, folder in sorted(dirs.items(), key=lambda item: item[0].count(".")):
        shutil.copytree(ROOT / folder, src.joinpath(*package.split(".")),
                        ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    return src


def _lint(src: Path, config: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), str(config), "--no-cache"], capture_output=True,
                          text=True, cwd=src.parent, env={"PYTHONPATH": str(src),
                                                          "PATH": "/usr/bin:/bin"},
                          timeout=300)


def test_the_layer_contracts_hold(tmp_path):
    out = _lint(_wheel_layout(tmp_path), ROOT / "pyproject.toml")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout and "4 kept" in out.stdout


def test_an_engine_raising_a_pipeline_error_breaks_its_contract(tmp_path):
    """The adapters raise their own errors: one importing the step errors is reported."""
    src = _wheel_layout(tmp_path)
    (src / "ansflow" / "engines" / "stepping.py").write_text(
        "from ansflow.errors import StepFailed\n")
    out = _lint(src, ROOT / "pyproject.toml")
    assert out.returncode == 1
    assert "ansflow.engines.stepping -> ansflow.errors" in out.stdout


def test_a_backward_import_breaks_the_layer_contract(tmp_path):
    """The check can fail: an engine adapter importing a step task is reported."""
    src = _wheel_layout(tmp_path)
    (src / "ansflow" / "engines" / "backwards.py").write_text(
        "from ansflow.runtime.base import label_value\n")
    out = _lint(src, ROOT / "pyproject.toml")
    assert out.returncode == 1
    assert "ansflow.engines.backwards -> ansflow.runtime.base" in out.stdout


def _private_imports(path: Path, package: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith("ansflow.") and node.level == 0:
            theirs = ".".join(node.module.split(".")[:2])
            for alias in node.names:
                if alias.name.startswith("_") and theirs != package:
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
    return found


def test_no_module_imports_a_private_name_of_another_package(tmp_path):
    src = _wheel_layout(tmp_path)
    offenders = []
    for path in (src / "ansflow").rglob("*.py"):
        rel = path.relative_to(src).with_suffix("").parts
        package = ".".join(rel[:2]) if len(rel) > 2 else ".".join(rel)
        offenders += [f"{'/'.join(rel)}:{line}" for line in _private_imports(path, package)]
    assert offenders == []
