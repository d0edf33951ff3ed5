"""The Docker client factory and label-based cleanup, against the real engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansflow.engines.docker import docker_client, remove_labelled_containers
from ansflow.engines.errors import EngineUnreachable

pytestmark = pytest.mark.docker
ANSFLOW = str(Path(sys.executable).parent / "ansflow")


def test_unreachable_engine_says_how_to_start_one(tmp_path):
    with pytest.raises(EngineUnreachable) as info:
        docker_client(f"unix://{tmp_path}/no-engine.sock")
    message = str(info.value)
    assert "unreachable" in message and "no-engine.sock" in message
    assert "docker-services.sh start" in message


def test_docker_host_env_is_respected(docker_env, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/elsewhere.sock")
    with pytest.raises(EngineUnreachable, match="elsewhere.sock"):
        docker_client()
    monkeypatch.setenv("DOCKER_HOST", docker_env.host)
    client = docker_client()
    assert client.ping()
    client.close()


def test_remove_labelled_containers_removes_only_that_run(docker_api, base_image):
    def create(run_id: str) -> str:
        return docker_api.create_container(
            base_image, command=["sleep", "60"],
            labels={"ansflow.dev/run-id": run_id, "ansflow.dev/step": "s"})["Id"]

    mine = [create("cleanup-a"), create("cleanup-a")]
    docker_api.start(mine[0])
    other = create("cleanup-b")
    unlabelled = docker_api.create_container(base_image, command=["true"])["Id"]
    try:
        assert remove_labelled_containers("cleanup-a") == 2
        left = {c["Id"] for c in docker_api.containers(all=True)}
        assert not set(mine) & left
        assert other in left and unlabelled in left
        assert remove_labelled_containers() >= 1
        assert other not in {c["Id"] for c in docker_api.containers(all=True)}
    finally:
        for cid in (other, unlabelled):
            try:
                docker_api.remove_container(cid, force=True)
            except Exception:  # noqa: BLE001
                pass


def test_cleanup_cli_removes_leftovers(docker_env, docker_api, base_image):
    cid = docker_api.create_container(
        base_image, command=["sleep", "60"], labels={"ansflow.dev/run-id": "cli-run"})["Id"]
    docker_api.start(cid)
    proc = subprocess.run(
        [ANSFLOW, "cleanup", "--docker", "--run-id", "cli-run"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "removed 1 container" in proc.stdout + proc.stderr
    assert cid not in {c["Id"] for c in docker_api.containers(all=True)}


def test_cleanup_cli_engine_unreachable_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [ANSFLOW, "cleanup", "--docker"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/none.sock"},
    )
    assert proc.returncode != 0
    assert "unreachable" in proc.stderr and "Traceback" not in proc.stderr


def test_cleanup_cli_dry_run_lists_and_keeps(docker_env, docker_api, base_image):
    cid = docker_api.create_container(
        base_image, command=["true"], labels={"ansflow.dev/run-id": "dry-run"})["Id"]
    try:
        proc = subprocess.run([ANSFLOW, "cleanup", "--docker", "--run-id", "dry-run",
                               "--dry-run"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert cid[:12] in proc.stdout and "would remove 1 container" in proc.stdout
        assert cid in {c["Id"] for c in docker_api.containers(all=True)}
    finally:
        docker_api.remove_container(cid, force=True)
