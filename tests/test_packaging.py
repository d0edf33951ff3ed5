"""Packaging: the wheel holds only `ansflow/...`, installs into a fresh venv and runs there;
the editable install maps the top-level folders onto ansflow's subpackages."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BANNED = ("tasks", "flows", "blocks", "deployments")


def test_editable_install_maps_the_top_level_folders():
    import ansflow.blocks
    import ansflow.flows
    import ansflow.tasks

    assert Path(ansflow.flows.__file__).parent == ROOT / "flows"
    assert Path(ansflow.tasks.__file__).parent == ROOT / "tasks"
    assert Path(ansflow.blocks.__file__).parent == ROOT / "blocks"


def test_no_relative_or_generic_top_level_imports():
    offenders = []
    for folder in ("ansflow", *BANNED, "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                stripped = line.strip()
                if stripped.startswith("from .") or any(
                        stripped.startswith((f"import {b}", f"from {b} ", f"from {b}."))
                        for b in BANNED):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {stripped}")
    assert offenders == []


def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path, prefect_server):
    dist = tmp_path / "dist"
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    subprocess.run([uv, "build", "--wheel", "--out-dir", str(dist), str(ROOT)], check=True,
                   capture_output=True, timeout=600)
    wheel = next(dist.glob("ansflow_prefect-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"ansflow", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1]
                   + ".dist-info"}
    assert "ansflow/flows/pipeline.py" in names and "ansflow/tasks/command.py" in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([uv, "pip", "install", "--python", str(py), "-r", str(ROOT / "requirements.lock"),
                    str(wheel)], check=True, capture_output=True, timeout=900)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    found = subprocess.run([str(py), "-c", "import ansflow.flows.pipeline as p; print(p.__file__)"],
                           check=True, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert str(venv) in found.stdout
    site = Path(found.stdout.strip()).parents[2]
    assert not any((site / b).exists() for b in BANNED)
    (tmp_path / "p.yaml").write_text(
        "steps:\n  - {id: hello, type: command, config: {command: 'echo from-wheel'}}\n")
    out = subprocess.run([str(venv / "bin" / "ansflow"), "run", "p.yaml", "--json"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["state"] == "completed"
