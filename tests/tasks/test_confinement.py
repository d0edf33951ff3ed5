"""Confinement against the real Docker engine: host paths stay inside the workspace
unless the worker allows them, containers get no-new-privileges, and a container step's
outputs file lives outside everything the container mounts besides it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from fixtures_docker import count_run_containers

from ansflow.errors import SpecError, StepFailed
from ansflow.runtime.k8s_manifests import load_documents
from ansflow.spec.steps import (
    CommandConfig,
    DockerBuildConfig,
    DockerRunConfig,
    K8sDeployConfig,
    ScriptConfig,
)
from ansflow.spec.validate import plan_from_bytes
from ansflow.tasks.command import execute_command, execute_script
from ansflow.tasks.docker_build import execute_docker_build
from ansflow.tasks.docker_run import execute_docker_run

SECRET_LINE = "root:$6$not-a-real-hash-but-secret:19000:0:99999:7:::"


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


@pytest.mark.docker
def test_docker_socket_volume_is_refused_before_any_container(make_ctx, base_image,
                                                              docker_api):
    ctx = make_ctx()
    with pytest.raises(StepFailed) as err:
        execute_docker_run(ctx, DockerRunConfig(image=base_image, command="true",
                                                volumes=["/var/run/docker.sock:/s"]))
    assert "/var/run/docker.sock" in str(err.value) and "outside the workspace" in str(err.value)
    assert "ANSFLOW_ALLOWED_HOST_PATHS" in str(err.value)
    with pytest.raises(StepFailed, match="outside the workspace"):
        execute_docker_run(ctx, DockerRunConfig(image=base_image, command="true",
                                                volumes={"../..": "/up"}))
    assert count_run_containers(docker_api, ctx.run_id) == 0


@pytest.mark.docker
def test_a_symlink_out_of_the_workspace_is_refused(make_ctx, base_image, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    ctx = make_ctx()
    os.symlink(outside, Path(ctx.workspace, "innocent"))
    with pytest.raises(StepFailed, match=r"'./innocent' \(resolved: .*outside the workspace"):
        execute_docker_run(ctx, DockerRunConfig(image=base_image, command="true",
                                                volumes=["./innocent:/x"]))


@pytest.mark.docker
def test_an_allowed_host_path_is_mounted(make_ctx, base_image, tmp_path_factory, monkeypatch,
                                         caplog):
    cache = tmp_path_factory.mktemp("srv-cache")
    (cache / "hello.txt").write_text("from-the-allowed-host-path\n")
    monkeypatch.setenv("ANSFLOW_ALLOWED_HOST_PATHS", f"/nonexistent:{cache}")
    ctx = make_ctx()
    result = execute_docker_run(ctx, DockerRunConfig(
        image=base_image, command="cat /c/hello.txt", volumes=[f"{cache}:/c:ro"]))
    assert result.exit_code == 0
    assert "from-the-allowed-host-path" in messages(caplog)


@pytest.mark.docker
def test_containers_get_no_new_privileges(make_ctx, base_image, docker_api, caplog):
    ctx = make_ctx()
    result = execute_docker_run(ctx, DockerRunConfig(
        image=base_image, command="grep NoNewPrivs /proc/self/status", remove=False))
    try:
        info = docker_api.inspect_container(result.outputs["container_id"])
        assert "no-new-privileges" in (info["HostConfig"]["SecurityOpt"] or [])
    finally:
        docker_api.remove_container(result.outputs["container_id"], force=True)
    assert "NoNewPrivs:\t1" in messages(caplog)
    caplog.clear()
    ctx = make_ctx("command", runs_on="docker")
    execute_command(ctx, CommandConfig(command="grep NoNewPrivs /proc/self/status",
                                       image=base_image))
    assert "NoNewPrivs:\t1" in messages(caplog)


@pytest.mark.docker
def test_container_outputs_file_is_outside_the_workspace(make_ctx, base_image, caplog):
    ctx = make_ctx("command", runs_on="docker")
    result = execute_command(ctx, CommandConfig(
        image=base_image,
        command='echo "where=$ANSFLOW_OUTPUT" >> "$ANSFLOW_OUTPUT"; echo "v=1" >> '
                '"$ANSFLOW_OUTPUT"; echo "v=2" >> "$ANSFLOW_OUTPUT"; ls -a "$PWD"'))
    where = result.outputs["where"]
    assert result.outputs["v"] == "2"  # a later key wins, as in GitHub's format
    assert not where.startswith(ctx.workspace)
    assert not Path(ctx.workspace, ".ansflow").exists()
    # An inline script too runs from the private scratch directory.
    result = execute_script(ctx, ScriptConfig(
        image=base_image, script='echo "s=$0" >> "$ANSFLOW_OUTPUT"'))
    assert not result.outputs["s"].startswith(ctx.workspace)


@pytest.mark.docker
def test_a_container_linking_its_outputs_file_to_a_host_file_leaks_nothing(
        make_ctx, base_image, tmp_path_factory):
    secret = tmp_path_factory.mktemp("host") / "secret.txt"
    secret.write_text(f"token={SECRET_LINE}\n")
    ctx = make_ctx("command", runs_on="docker")
    with pytest.raises(StepFailed) as err:
        execute_command(ctx, CommandConfig(
            image=base_image, command=f'rm "$ANSFLOW_OUTPUT"; ln -s {secret} "$ANSFLOW_OUTPUT"'))
    assert "ANSFLOW_OUTPUT" in str(err.value) and SECRET_LINE not in str(err.value)


@pytest.mark.docker
def test_build_context_outside_the_workspace_is_refused(make_ctx):
    ctx = make_ctx("docker_build")
    with pytest.raises(StepFailed, match="build context '../..' .*outside the workspace"):
        execute_docker_build(ctx, DockerBuildConfig(image_name="x/y", context="../.."))
    with pytest.raises(StepFailed, match="Dockerfile '/etc/passwd' is outside the workspace"):
        execute_docker_build(ctx, DockerBuildConfig(image_name="x/y", dockerfile="/etc/passwd"))


def test_manifest_path_link_out_is_refused_without_its_content(tmp_path, tmp_path_factory,
                                                               monkeypatch):
    host = tmp_path_factory.mktemp("host")
    (host / "shadow").write_text(f"{SECRET_LINE}\n: [bad yaml\n")
    os.symlink("/etc/shadow", tmp_path / "shadow.yaml")
    os.symlink(host / "shadow", tmp_path / "other.yaml")
    for name in ("shadow.yaml", "other.yaml"):
        config = K8sDeployConfig(cluster="c", namespace="n", manifest_path=name)
        with pytest.raises(StepFailed, match="outside the workspace") as err:
            load_documents(config, str(tmp_path))
        assert SECRET_LINE not in str(err.value)
    # Allowed by the worker: read, but a parse error shows a position, not the lines.
    monkeypatch.setenv("ANSFLOW_ALLOWED_HOST_PATHS", str(host))
    with pytest.raises(StepFailed, match="not valid YAML at line 2") as err:
        load_documents(K8sDeployConfig(cluster="c", namespace="n", manifest_path="other.yaml"),
                       str(tmp_path))
    assert "not-a-real-hash" not in str(err.value) and "bad yaml" not in str(err.value)


def test_script_file_and_working_dir_outside_are_refused(tmp_path, caplog):
    from ansflow.runtime.base import StepContext

    ctx = StepContext(pipeline="p", run_id="r", build_number=1, step_id="s", step_name="s",
                      stage="x", step_type="script", workspace=str(tmp_path),
                      logger=logging.getLogger("ansflow.test.step"))
    with pytest.raises(StepFailed, match="script file '/etc/passwd' is outside"):
        execute_script(ctx, ScriptConfig(file="/etc/passwd"))
    with pytest.raises(StepFailed, match="working_dir '../..' .*outside"):
        execute_command(ctx, CommandConfig(command="true", working_dir="../.."))


def test_static_paths_outside_are_refused_at_validation():
    text = b"""pipeline:
  name: paths
  variables: {v: "./ok:/ok"}
  steps:
    - type: docker_run
      config:
        image: alpine
        volumes: ["/var/run/docker.sock:/s", "./data:/data", "{{ vars.v }}"]
    - type: docker_build
      config: {image_name: x, context: ../..}
    - type: script
      config: {file: /etc/shadow}
"""
    with pytest.raises(SpecError) as err:
        plan_from_bytes(text, "p.yaml", workspace="/tmp/ws", default_name="p")
    lines = str(err.value).splitlines()
    assert any(x.startswith("p.yaml:8:19:") and "docker.sock" in x for x in lines), lines
    assert any(x.startswith("p.yaml:10:40:") and "'../..'" in x for x in lines), lines
    assert any(x.startswith("p.yaml:12:") and "/etc/shadow" in x for x in lines), lines
    assert len([x for x in lines if "outside the workspace" in x]) == 3


def test_static_absolute_paths_inside_the_workspace_are_not_refused():
    from ansflow.paths import lexically_outside

    assert not lexically_outside("/w/ws/sub", "/w/ws")
    assert not lexically_outside("/w/ws", "/w/ws")
    assert lexically_outside("/w/ws2", "/w/ws")
    assert lexically_outside("/w/ws/../etc", "/w/ws")
    assert lexically_outside("/w/ws/sub")  # workspace unknown: any absolute path
    assert lexically_outside("../x", "/w/ws") and not lexically_outside("a/../b", "/w/ws")
