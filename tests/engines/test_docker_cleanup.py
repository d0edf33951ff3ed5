"""Docker clean-up correctness: the crash hook cleans every engine the
run used; `ansflow cleanup --docker` leaves the containers of runs still running alone."""

from __future__ import annotations

import subprocess
import sys
import uuid
from types import SimpleNamespace

from ansflow.spec.validate import load_plan

LABEL = "ansflow.dev/run-id"


def test_run_engines_are_the_default_plus_every_named_host(tmp_path):
    from ansflow.flows.pipeline import run_engines

    (tmp_path / "p.yaml").write_text("""\
pipeline:
  name: engines
  variables: {h: "tcp://templated:2375"}
  defaults: {docker: {host: "tcp://default-host:2375"}}
  steps:
    - {id: a, type: docker_run, config: {image: x}}
    - {id: b, type: docker_run, config: {image: x, host: "tcp://other:2375"}}
    - {id: c, type: docker_run, config: {image: x, host: "{{ vars.h }}"}}
    - {id: d, type: command, config: {command: "true"}}
""")
    plan = load_plan(tmp_path / "p.yaml")
    assert run_engines(plan) == [None, "tcp://default-host:2375", "tcp://other:2375"]


def _labelled(docker_api, image: str, run_id: str) -> str:
    return docker_api.create_container(image, command=["sleep", "300"],
                                       labels={LABEL: run_id})["Id"]


def _exists(docker_api, cid: str) -> bool:
    return any(c["Id"] == cid for c in docker_api.containers(all=True))


def test_crash_hook_cleans_the_engine_the_pipeline_names(docker_env, docker_api, base_image,
                                                        tmp_path, monkeypatch):
    from ansflow.flows.pipeline import _cleanup_leftovers

    run_id = str(uuid.uuid4())
    cid = _labelled(docker_api, base_image, run_id)
    try:
        (tmp_path / "p.yaml").write_text(f"""\
pipeline:
  name: crash
  defaults: {{docker: {{host: "{docker_env.host}"}}}}
  steps:
    - {{id: a, type: docker_run, config: {{image: {base_image}}}}}
""")
        # The default engine is somewhere else: only the pipeline's own engine has it.
        monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
        flow_run = SimpleNamespace(id=run_id,
                                   parameters={"pipeline_file": str(tmp_path / "p.yaml")})
        _cleanup_leftovers(None, flow_run, None)
        assert not _exists(docker_api, cid)
    finally:
        if _exists(docker_api, cid):
            docker_api.remove_container(cid, force=True)


def test_cleanup_keeps_containers_of_running_runs(prefect_server, docker_env, docker_api,
                                                  base_image):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Running

    @flow(name="ansflow-cleanup-probe")
    def probe() -> None:
        pass

    with get_client(sync_client=True) as client:
        running = client.create_flow_run(probe, state=Running())
        finished = client.create_flow_run(probe, state=Completed())
    keep = _labelled(docker_api, base_image, str(running.id))
    drop = _labelled(docker_api, base_image, str(finished.id))
    try:
        out = subprocess.run([sys.executable, "-m", "ansflow.cli", "cleanup", "--docker"],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert _exists(docker_api, keep), "a running run's container was removed"
        assert not _exists(docker_api, drop), "a finished run's leftover container survived"
        assert f"run {running.id} is still running (Running)" in out.stderr
        assert "removed" in out.stdout and "of finished ansflow runs" in out.stdout
    finally:
        for cid in (keep, drop):
            if _exists(docker_api, cid):
                docker_api.remove_container(cid, force=True)
