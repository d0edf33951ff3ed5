"""docker_run volumes against the real Docker engine: a named volume is not a way around
ANSFLOW_ALLOWED_HOST_PATHS (a volume with bind options, another driver), and host paths are
checked again at use, after the image pull, with the resolved path bound (the path checks
when the step starts: test_confinement.py)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from fixtures_docker import count_run_containers

from ansflow.engines.docker_mounts import ALLOWED_VOLUMES_ENV, parse_volumes
from ansflow.engines.errors import EngineError
from ansflow.errors import StepFailed
from ansflow.spec.steps import DockerRunConfig
from ansflow.tasks.docker_run import _run, build_spec, execute_docker_run


@pytest.fixture
def bind_volume(docker_api, tmp_path_factory):
    """A named volume binding a host directory outside the workspace (`docker volume create
    --opt type=none --opt o=bind --opt device=<dir>`), the directory holding secret.txt."""
    outside = tmp_path_factory.mktemp("etc-like")
    (outside / "secret.txt").write_text("host-secret\n")
    name = f"ansflow-test-bind-{uuid.uuid4().hex[:8]}"
    docker_api.create_volume(name, driver="local", driver_opts={
        "type": "none", "o": "bind", "device": str(outside)})
    yield name
    docker_api.remove_volume(name, force=True)


@pytest.mark.docker
def test_a_named_volume_binding_a_host_path_is_refused_before_any_container(
        make_ctx, base_image, docker_api, bind_volume, caplog):
    ctx = make_ctx()
    for volumes in ([f"{bind_volume}:/v"], {bind_volume: "/v"}, [f"{bind_volume}:/v:ro"]):
        with pytest.raises(StepFailed) as err:
            execute_docker_run(ctx, DockerRunConfig(image=base_image, command="cat /v/secret.txt",
                                                    volumes=volumes))
        assert bind_volume in str(err.value) and ALLOWED_VOLUMES_ENV in str(err.value)
        assert "driver options" in str(err.value)
    assert count_run_containers(docker_api, ctx.run_id) == 0
    assert "host-secret" not in caplog.text


@pytest.mark.docker
def test_an_operator_allowed_volume_and_a_plain_volume_are_mounted(
        make_ctx, base_image, docker_api, bind_volume, monkeypatch, caplog):
    monkeypatch.setenv(ALLOWED_VOLUMES_ENV, f"other,{bind_volume}")
    ctx = make_ctx()
    result = execute_docker_run(ctx, DockerRunConfig(
        image=base_image, command="cat /v/secret.txt", volumes=[f"{bind_volume}:/v:ro"]))
    assert result.exit_code == 0 and "host-secret" in caplog.text
    monkeypatch.delenv(ALLOWED_VOLUMES_ENV)
    plain = f"ansflow-test-plain-{uuid.uuid4().hex[:8]}"
    try:  # missing: created plain (driver local, no options), then mounted
        result = execute_docker_run(make_ctx(), DockerRunConfig(
            image=base_image, command="sh -c 'echo kept > /p/f'", volumes=[f"{plain}:/p"]))
        assert result.exit_code == 0
        info = docker_api.inspect_volume(plain)
        assert info["Driver"] == "local" and not info.get("Options")
    finally:
        docker_api.remove_volume(plain, force=True)


@pytest.mark.docker
def test_bad_volume_names_are_refused_before_the_engine(make_ctx, base_image, docker_api):
    ctx = make_ctx()
    for item in ("-x:/v", "a b:/v", "x\0y:/v", "é:/v", f"{'v' * 300}:/v", "~:/v"):
        with pytest.raises(StepFailed, match="neither a host path"):
            execute_docker_run(ctx, DockerRunConfig(image=base_image, command="true",
                                                    volumes=[item]))
    assert count_run_containers(docker_api, ctx.run_id) == 0


@pytest.mark.docker
def test_a_symlink_swapped_in_after_the_first_check_is_refused_at_use(
        make_ctx, base_image, docker_api, tmp_path_factory):
    """The first check passes (./data is a directory of the workspace); while the image is
    pulled a parallel step replaces it with a link to a host directory: the check at use,
    right before the container is created, refuses it."""
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("host-secret\n")
    ctx = make_ctx()
    data = Path(ctx.workspace, "data")
    data.mkdir()
    config = DockerRunConfig(image=base_image, command="cat /d/secret.txt",
                             volumes=["./data:/d"])
    spec = build_spec(ctx, config)  # what execute_docker_run checks when the step starts
    shutil.rmtree(data)
    os.symlink(outside, data)
    with pytest.raises(EngineError, match=r"'./data' \(resolved: .*outside the workspace"):
        _run(ctx, spec, None, None)  # the adapter's refusal (a step error at the executor)
    assert count_run_containers(docker_api, ctx.run_id) == 0


@pytest.mark.docker
def test_the_resolved_host_path_is_what_the_engine_binds(make_ctx, base_image, docker_api):
    """A link inside the workspace to a directory inside it: the engine gets the directory
    itself, so the engine's own resolution later cannot follow a different link."""
    ctx = make_ctx()
    real = Path(ctx.workspace, "real")
    real.mkdir()
    os.symlink(real, Path(ctx.workspace, "link"))
    result = execute_docker_run(ctx, DockerRunConfig(
        image=base_image, command="true", volumes=["./link:/d:ro"], remove=False))
    cid = result.outputs["container_id"]
    try:
        binds = docker_api.inspect_container(cid)["HostConfig"]["Binds"]
        assert binds == [f"{os.path.realpath(real)}:/d:ro"]
    finally:
        docker_api.remove_container(cid, force=True)


def test_volume_entries_are_parsed_once_on_their_face(tmp_path):
    mounts = parse_volumes(["./a:/a", "cache.v1:/c:ro"], str(tmp_path))
    assert [(m.source, m.target, m.mode, m.volume) for m in mounts] == [
        ("./a", "/a", None, False), ("cache.v1", "/c", "ro", True)]
    with pytest.raises(EngineError, match="outside the workspace"):
        parse_volumes(["../up:/u"], str(tmp_path))
