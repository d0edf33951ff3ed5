"""Docker steps end to end through `ansflow run --json`: the seed's example, outputs feeding
later steps through templating, `runs_on: docker`, and a cancelled run leaving nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from child_signals import default_signals
from fixtures_docker import count_run_containers

pytestmark = [pytest.mark.docker, pytest.mark.server]
ROOT = Path(__file__).resolve().parent.parent.parent
ANSFLOW = str(Path(sys.executable).parent / "ansflow")
# `npm test` inside the busybox image: a stand-in npm that says what it ran.
FAKE_NPM = "#!/bin/sh\necho \"npm $*: 3 tests passed\"\n"


def app_workspace(tmp_path: Path, base_image: str) -> Path:
    (tmp_path / "npm").write_text(FAKE_NPM)
    (tmp_path / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY npm /bin/npm\nRUN chmod +x /bin/npm\n")
    return tmp_path


def ansflow_run(pipeline: Path, *args: str, timeout: float = 240) -> tuple[dict, str]:
    proc = subprocess.run([ANSFLOW, "run", str(pipeline), "--json", *args],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.stdout.strip(), f"no JSON summary; stderr:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def steps_by_name(summary: dict) -> dict[str, dict]:
    return {s["name"]: s for s in summary["steps"]}


def test_seed_docker_example_runs_end_to_end(prefect_server, docker_env, base_image,
                                             docker_api, tmp_path):
    seed = (ROOT / "examples" / "seed" / "docker-steps.yaml").read_text(encoding="utf-8")
    assert 'registry: "registry.example.com"' in seed
    ws = app_workspace(tmp_path, base_image)
    pipeline = ws / "pipeline.yaml"
    pipeline.write_text(seed.replace("registry.example.com", docker_env.registry),
                        encoding="utf-8")
    summary, stderr = ansflow_run(pipeline)
    assert summary["state"] == "completed", (summary, stderr[-3000:])
    build_number = summary["build_number"]
    steps = steps_by_name(summary)
    build, run, push = steps["构建镜像"], steps["运行测试"], steps["推送镜像"]
    assert build["outputs"]["image"] == f"my-app:{build_number}"
    assert run["outputs"]["exit_code"] == "0"
    assert push["outputs"]["image"] == f"{docker_env.registry}/my-app:{build_number}"
    assert push["outputs"]["digest"].startswith("sha256:")
    assert count_run_containers(docker_api, summary["run_id"]) == 0


def test_outputs_feed_later_steps_and_runs_on_docker(prefect_server, docker_env, base_image,
                                                     docker_api, tmp_path):
    ws = app_workspace(tmp_path, base_image)
    pipeline = ws / "outputs.yaml"
    pipeline.write_text(f"""
pipeline:
  name: docker-outputs
  defaults:
    docker:
      image: {base_image}
  steps:
    - name: build
      id: build
      type: docker_build
      config:
        image_name: ansflow-test/outputs
        tag: "b{{{{ pipeline.build_number }}}}"
    - name: test in the built image
      id: test
      type: docker_run
      config:
        image: "{{{{ steps.build.outputs.image }}}}"
        command: ["npm", "test"]
    - name: push
      id: push
      type: docker_push
      config:
        image: "{{{{ steps.build.outputs.image }}}}"
        registry: "{docker_env.registry}"
    - name: pull it back
      id: pull
      type: docker_pull
      config:
        image: "{{{{ steps.push.outputs.image }}}}"
    - name: report inside a container
      id: report
      type: command
      runs_on: docker
      config:
        command: >-
          echo "digest={{{{ steps.push.outputs.digest }}}}
          exit={{{{ steps.test.outputs.exit_code }}}}" > report.txt; cat report.txt; pwd
""", encoding="utf-8")
    summary, stderr = ansflow_run(pipeline)
    assert summary["state"] == "completed", (summary, stderr[-3000:])
    steps = {s["id"]: s for s in summary["steps"]}
    digest = steps["push"]["outputs"]["digest"]
    assert steps["pull"]["outputs"]["digest"] == digest
    assert steps["pull"]["outputs"]["image_id"] == steps["build"]["outputs"]["image_id"]
    assert (ws / "report.txt").read_text().strip() == f"digest={digest} exit=0"
    assert count_run_containers(docker_api, summary["run_id"]) == 0


def test_failing_container_fails_the_run_with_its_exit_code(prefect_server, base_image,
                                                            tmp_path):
    pipeline = tmp_path / "fails.yaml"
    pipeline.write_text(f"""
steps:
  - name: fails
    type: docker_run
    config:
      image: {base_image}
      command: "sh -c 'echo broken; exit 5'"
""", encoding="utf-8")
    summary, _ = ansflow_run(pipeline)
    assert summary["state"] == "failed"
    step = summary["steps"][0]
    assert step["exit_code"] == 5 and "exited with code 5" in step["message"]


def test_interrupted_run_leaves_no_container(prefect_server, base_image, docker_api, tmp_path):
    pipeline = tmp_path / "long.yaml"
    pipeline.write_text(f"""
pipeline:
  name: docker-interrupt
  steps:
    - name: long
      type: docker_run
      config:
        image: {base_image}
        command: "sleep 120"
""", encoding="utf-8")
    proc = subprocess.Popen([ANSFLOW, "run", str(pipeline), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)
    label = "ansflow.dev/pipeline=docker-interrupt"
    run_id = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run_id is None:
        found = docker_api.containers(filters={"label": label})
        if found:
            run_id = found[0]["Labels"]["ansflow.dev/run-id"]
        time.sleep(0.2)
    try:
        assert run_id, "the container step started"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    while count_run_containers(docker_api, run_id) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert count_run_containers(docker_api, run_id) == 0
    assert os.environ.get("DOCKER_HOST")


def test_cancel_through_the_prefect_api_kills_and_removes_the_container(
        prefect_server, base_image, docker_api, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    pipeline = tmp_path / "cancel.yaml"
    pipeline.write_text(f"""
pipeline:
  name: docker-api-cancel
  steps:
    - name: long
      type: docker_run
      config:
        image: {base_image}
        command: "sleep 120"
""", encoding="utf-8")
    proc = subprocess.Popen([ANSFLOW, "run", str(pipeline), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)
    run_id = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and run_id is None:
            found = docker_api.containers(
                filters={"label": "ansflow.dev/pipeline=docker-api-cancel"})
            if found:
                run_id = found[0]["Labels"]["ansflow.dev/run-id"]
            time.sleep(0.2)
        assert run_id, "the container step started"
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id, Cancelling(), force=True)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert count_run_containers(docker_api, run_id) == 0
    assert "stopped: the run was cancelled" in err
    assert out.strip(), f"no JSON summary after the cancel:\n{err[-3000:]}"
    assert json.loads(out.strip().splitlines()[-1])["state"] == "cancelled"


def test_pipeline_type_docker_runs_command_and_script_steps_in_containers(
        prefect_server, base_image, docker_api, tmp_path):
    pipeline = tmp_path / "typed.yaml"
    pipeline.write_text(f"""
pipeline:
  name: docker-typed
  type: docker
  defaults:
    docker:
      image: {base_image}
  steps:
    - name: where am I
      id: where
      type: command
      config:
        command: "cat /proc/1/cgroup > where.txt; echo pid1=$(cat /proc/1/comm)"
    - name: script
      id: script
      type: script
      config:
        script: |
          echo "from a script in $(pwd)" > script.txt
""", encoding="utf-8")
    summary, stderr = ansflow_run(pipeline)
    assert summary["state"] == "completed", (summary, stderr[-3000:])
    assert "docker" in (tmp_path / "where.txt").read_text()
    assert (tmp_path / "script.txt").read_text().strip() == f"from a script in {tmp_path}"
    assert count_run_containers(docker_api, summary["run_id"]) == 0


def test_push_with_a_credentials_block_through_the_pipeline_hides_the_password(
        prefect_server, docker_env, base_image, tmp_path):
    from ansflow.runtime.docker_access import DockerRegistryCredentials

    DockerRegistryCredentials(username=docker_env.user, password=docker_env.password,
                              registry_url=docker_env.auth_registry).save(
        "pipeline-auth-registry", overwrite=True)
    pipeline = tmp_path / "auth.yaml"
    pipeline.write_text(f"""
steps:
  - name: push without credentials
    id: anonymous
    type: docker_push
    allow_failure: true
    config:
      image: {base_image}
      registry: "{docker_env.auth_registry}"
  - name: push with the block
    id: push
    type: docker_push
    config:
      image: {base_image}
      credentials: pipeline-auth-registry
""", encoding="utf-8")
    summary, stderr = ansflow_run(pipeline)
    steps = {s["id"]: s for s in summary["steps"]}
    assert "no basic auth credentials" in steps["anonymous"]["message"]
    assert steps["push"]["state"] == "completed", (summary, stderr[-3000:])
    assert steps["push"]["outputs"]["digest"].startswith("sha256:")
    plan = subprocess.run([ANSFLOW, "plan", str(pipeline)], capture_output=True, text=True,
                          timeout=60)
    for text in (json.dumps(summary), stderr, plan.stdout + plan.stderr):
        assert docker_env.password not in text


def test_unreachable_engine_fails_the_step_with_a_hint_not_a_traceback(prefect_server,
                                                                      tmp_path):
    pipeline = tmp_path / "noengine.yaml"
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    pipeline.write_text(f"""
pipeline:
  name: docker-no-engine
  defaults:
    docker:
      host: unix://{tmp_path}/no-engine.sock
  steps:
    - name: build
      type: docker_build
      config:
        image_name: ansflow-test/unbuilt
""", encoding="utf-8")
    summary, stderr = ansflow_run(pipeline)
    assert summary["state"] == "failed"
    message = summary["steps"][0]["message"]
    assert "unreachable" in message and "docker-services.sh start" in message
    assert "Traceback" not in stderr
