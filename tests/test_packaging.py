"""Packaging: the wheel holds exactly the tree (every package, module and data file, so a
new folder is covered without editing this file), installs into a fresh venv with no
editable install on its path, and works there: every module imports, a command step and a
k8s step run, the management and upkeep deployments are served. The editable install maps
the top-level folders onto ansflow's subpackages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BANNED = ("tasks", "flows", "blocks", "deployments")


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _roots() -> dict[str, Path]:
    """Each import package root and the folder it is built from (the package-dir map)."""
    return {pkg: ROOT / folder for pkg, folder in _setuptools()["package-dir"].items()}


def _is_source(path: Path) -> bool:
    return "__pycache__" not in path.parts and path.suffix != ".pyc"


def tree_packages() -> set[str]:
    """Every folder with an __init__.py under a mapped root, as a dotted package name."""
    found = set()
    for pkg, folder in _roots().items():
        for init in folder.rglob("__init__.py"):
            if not _is_source(init):
                continue
            rel = init.parent.relative_to(folder).parts
            found.add(".".join((pkg, *rel)))
    return found


def tree_files() -> set[str]:
    """Every file the wheel must hold, as its path inside the wheel."""
    files = set()
    for pkg, folder in _roots().items():
        for path in folder.rglob("*"):
            if path.is_file() and _is_source(path):
                files.add("/".join((*pkg.split("."), *path.relative_to(folder).parts)))
    return files


def tree_modules() -> list[str]:
    """Every importable module of the tree (inside packages, not plugin files loaded by path)."""
    packages = tree_packages()
    modules = set(packages)
    for name in tree_files():
        if not name.endswith(".py") or name.endswith(("/__init__.py", "/__main__.py")):
            continue  # a __main__ runs its program when imported
        dotted = name[:-3].replace("/", ".")
        if dotted.rpartition(".")[0] in packages:
            modules.add(dotted)
    return sorted(modules)


def test_the_package_list_names_every_package_of_the_tree():
    listed = set(_setuptools()["packages"])
    assert tree_packages() - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - tree_packages() == set(), "these listed packages have no folder"


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


@dataclass(frozen=True)
class Installed:
    wheel: Path
    sdist: Path
    venv: Path
    env: dict
    work: Path

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, env=self.env,
                              cwd=self.work, timeout=timeout)

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def ansflow(self) -> str:
        return str(self.venv / "bin" / "ansflow")


@pytest.fixture(scope="module")
def installed(tmp_path_factory, prefect_server) -> Installed:
    """The sdist and the wheel built from the tree (the wheel from the sdist, as `uv build`
    does), the wheel installed with the locked dependencies into a fresh venv, used from a
    folder outside the repository (whose ansflow/ would shadow the wheel)."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    built = subprocess.run([uv, "build", "--out-dir", str(dist), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(dist.glob("ansflow_prefect-*.whl"))
    sdist = next(dist.glob("ansflow_prefect-*.tar.gz"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=300)
    done = subprocess.run([uv, "pip", "install", "--python", str(venv / "bin" / "python"),
                           "-r", str(ROOT / "requirements.lock"), str(wheel)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{os.environ['PATH']}"
    work = tmp / "work"
    work.mkdir()
    return Installed(wheel, sdist, venv, env, work)


def test_wheel_holds_exactly_the_tree_and_no_generic_top_level_name(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    dist_info = {n for n in names if n.split("/")[0].endswith(".dist-info")}
    assert {n.split("/")[0] for n in names - dist_info} == {"ansflow"}
    assert names - dist_info == tree_files()


def test_sdist_holds_every_file_the_wheel_is_built_from(installed):
    with tarfile.open(installed.sdist) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    for pkg, folder in _roots().items():
        for path in folder.rglob("*"):
            if path.is_file() and _is_source(path):
                assert str(path.relative_to(ROOT)) in members


def test_installed_wheel_is_what_python_imports(installed):
    probe = installed.run(installed.python, "-c", (
        "import sys, ansflow, ansflow.flows, ansflow.upkeep\n"
        "print(ansflow.__file__)\nprint(ansflow.flows.__file__)\n"
        "print(sum('__editable__' in p for p in sys.path))\n"
        "import importlib.metadata as m\n"
        "print(any('__editable__' in str(f) for f in (m.distribution('ansflow-prefect')"
        ".files or [])))"))
    assert probe.returncode == 0, probe.stderr[-2000:]
    lines = probe.stdout.splitlines()
    assert lines[0].startswith(str(installed.venv)) and lines[1].startswith(str(installed.venv))
    assert lines[2:] == ["0", "False"]  # no editable finder on the path, none installed
    site = Path(lines[0]).parents[1]
    assert not any((site / b).exists() for b in BANNED)
    assert not list(site.glob("__editable__*"))


def test_every_module_of_the_tree_imports_from_the_wheel(installed):
    modules = tree_modules()
    assert "ansflow.upkeep.cleanup" in modules and "ansflow.tasks.k8s_wait" in modules
    report = installed.work / "imports.json"
    script = (
        "import importlib, sys, json\nfailed = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    try:\n        importlib.import_module(name)\n"
        "    except Exception as exc:\n        failed[name] = f'{type(exc).__name__}: {exc}'\n"
        "open(sys.argv[2], 'w').write(json.dumps(failed))")
    out = installed.run(installed.python, "-c", script, json.dumps(modules), str(report),
                        timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(report.read_text()) == {}


def test_a_command_step_runs_from_the_wheel(installed):
    (installed.work / "p.yaml").write_text(
        "steps:\n  - {id: hello, type: command, config: {command: 'echo from-wheel'}}\n")
    out = installed.run(installed.ansflow, "run", "p.yaml", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["state"] == "completed"


@pytest.mark.k8s
def test_a_k8s_step_runs_from_the_wheel(installed, dev_cluster):
    from kubernetes import client as k8s

    namespace = dev_cluster.namespace("wheel")
    (installed.work / "k.yaml").write_text(f"""\
steps:
  - id: cm
    type: k8s_deploy
    config:
      cluster: {dev_cluster.block_name}
      namespace: {namespace}
      manifest: |
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: from-wheel}}
        data: {{origin: wheel}}
""")
    out = installed.run(installed.ansflow, "run", "k.yaml", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["state"] == "completed"
    with dev_cluster.client() as api:
        cm = k8s.CoreV1Api(api).read_namespaced_config_map("from-wheel", namespace)
    assert cm.data == {"origin": "wheel"}


def test_management_and_upkeep_deployments_are_served_from_the_wheel(installed):
    out = installed.run(installed.ansflow, "serve", "--manage", "--upkeep", "--check")
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("ansflow-k8s/scale", "ansflow-k8s/delete", "ansflow-k8s/logs",
                 "ansflow-sync", "ansflow-health", "ansflow-cleanup"):
        assert f"serving {name} " in out.stderr, out.stderr[-2000:]
    assert "warning" not in out.stderr.replace("warning: no Kubernetes cluster", ""), \
        out.stderr[-2000:]
