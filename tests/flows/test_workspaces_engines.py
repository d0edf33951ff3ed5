"""Steps in a container, on an SSH host and in a pod get the run's own workspace as they got
the pipeline's folder before: the container has it bind-mounted at the same path, the host
and the pod get it uploaded, downloads come back into it (not into the pipeline's folder),
and a local step after them sees what they left."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_k8s import BUSYBOX_IMAGE, REAL_NODE_POD_SPEC
from fixtures_pipeline import by_id


@pytest.fixture
def per_run(prefect_server, monkeypatch, tmp_path):
    root = tmp_path / "wsroot"
    monkeypatch.setenv("ANSFLOW_WORKSPACE_MODE", "per-run")
    monkeypatch.setenv("ANSFLOW_WORKSPACES", str(root))
    monkeypatch.setenv("ANSFLOW_WORKSPACE_KEEP", "0")
    return root


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "project"
    (path / "src").mkdir(parents=True)
    (path / "src" / "input.txt").write_text("from the folder\n")
    return path


def run_in(folder: Path, text: str):
    from ansflow.flows.pipeline import pipeline_flow

    (folder / "pipeline.yaml").write_text(text, encoding="utf-8")
    state = pipeline_flow(str(folder / "pipeline.yaml"), None, return_state=True)
    return state, state.result(raise_on_failure=False)


AFTER = """\
    - id: after
      type: command
      config:
        command: >-
          echo "saw=$(cat out/f)" >> "$ANSFLOW_OUTPUT" &&
          echo "ws=$ANSFLOW_WORKSPACE" >> "$ANSFLOW_OUTPUT"
"""


def check(state, summary, folder: Path, root: Path, remote_out: dict[str, str]) -> None:
    assert state.is_completed(), summary
    ws = str(root.resolve() / summary["run_id"] / "workspace")
    after = by_id(summary)["after"]["outputs"]
    assert after == {"saw": "made from the folder", "ws": ws}
    for key, value in remote_out.items():
        assert by_id(summary)["there"]["outputs"][key] == value.format(ws=ws), key
    assert sorted(p.name for p in folder.iterdir()) == ["pipeline.yaml", "src"]
    assert list(root.iterdir()) == []


def test_a_container_step_has_the_runs_workspace_mounted(per_run, folder, base_image):
    state, summary = run_in(folder, f"""\
pipeline:
  name: ws-docker
  steps:
    - id: there
      type: command
      runs_on: docker
      config:
        image: {base_image}
        command: >-
          mkdir -p out && echo "made $(cat src/input.txt)" > out/f &&
          echo "pwd=$(pwd)" >> "$ANSFLOW_OUTPUT" &&
          echo "tpl={{{{ run.workspace }}}}" >> "$ANSFLOW_OUTPUT"
{AFTER}""")
    check(state, summary, folder, per_run, {"pwd": "{ws}", "tpl": "{ws}"})


def test_an_ssh_step_gets_the_runs_workspace_uploaded_and_downloads_into_it(
        per_run, folder, ssh_host):
    state, summary = run_in(folder, f"""\
pipeline:
  name: ws-ssh
  steps:
    - id: there
      type: command
      runs_on: remote
      config:
        host: {ssh_host}
        upload_workspace: true
        download: [out]
        command: >-
          mkdir -p out && echo "made $(cat src/input.txt)" > out/f &&
          echo "remote_ws=$ANSFLOW_WORKSPACE" >> "$ANSFLOW_OUTPUT"
{AFTER}""")
    check(state, summary, folder, per_run, {})
    remote = by_id(summary)["there"]["outputs"]["remote_ws"]
    assert remote.endswith(f"/runs/{summary['run_id']}/workspace"), remote


@pytest.mark.k8s
def test_a_pod_step_gets_the_runs_workspace_uploaded_and_downloads_into_it(
        per_run, folder, real_node_cluster):
    ns = real_node_cluster.namespace("ws")
    selector = REAL_NODE_POD_SPEC["nodeSelector"]
    tolerations = REAL_NODE_POD_SPEC["tolerations"]
    state, summary = run_in(folder, f"""\
pipeline:
  name: ws-pod
  steps:
    - id: there
      type: command
      runs_on: kubernetes
      config:
        cluster: {real_node_cluster.block_name}
        namespace: {ns}
        image: {BUSYBOX_IMAGE}
        node_selector: {selector}
        tolerations: {tolerations}
        download: [out]
        command: >-
          mkdir -p out && echo "made $(cat src/input.txt)" > out/f &&
          echo "pod_ws=$ANSFLOW_WORKSPACE" >> "$ANSFLOW_OUTPUT"
{AFTER}""")
    check(state, summary, folder, per_run, {"pod_ws": "/workspace"})
