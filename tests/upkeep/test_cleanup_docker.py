"""Docker cleanup (ansflow.upkeep.cleanup_docker, `ansflow cleanup --docker`) on the real
Docker engine: containers of finished runs, images beyond the newest builds (only the images
docker_build recorded in the store: labels claiming a pipeline's build count for nothing).

Everything a test creates carries a pipeline label of its own and every cleanup here is
limited to that pipeline, so other tests' containers and images are never touched.
"""

from __future__ import annotations

import io
import subprocess
import sys
import uuid

import pytest
from cleanup_runs import finished_and_running_runs, run_labels

from ansflow.upkeep.cleanup import (
    BUILD_LABEL,
    KEEP_ANNOTATION,
    PIPELINE_LABEL,
    CleanupOptions,
    cleanup,
)

ANSFLOW = [sys.executable, "-m", "ansflow.cli"]


def _container(docker_api, image, labels, command=("sleep", "60")):
    cid = docker_api.create_container(image, command=list(command), labels=labels)["Id"]
    return cid


def _container_exists(docker_api, cid) -> bool:
    return cid in {c["Id"] for c in docker_api.containers(all=True)}


def _image(docker_api, base_image, pipeline, build, record=True, tag=None) -> str:
    """An image labelled as ``pipeline``'s build ``build``; ``record``: recorded in the store
    as docker_build records what it builds (otherwise only its labels claim it)."""
    from ansflow.store import Store
    from ansflow.tasks.docker_build import engine_key

    tag = tag or f"ansflow-test/{pipeline}:{build}"
    dockerfile = f"FROM {base_image}\nLABEL ansflow.test.build={build}\n".encode()
    for event in docker_api.build(fileobj=io.BytesIO(dockerfile), rm=True, decode=True, tag=tag,
                                  labels={PIPELINE_LABEL: pipeline, BUILD_LABEL: str(build)}):
        assert "error" not in event, event
    image_id = docker_api.inspect_image(tag)["Id"]
    if record:
        store = Store()
        try:
            store.record_image(engine_key(None), image_id, pipeline, build, f"run-{build}")
        finally:
            store.close()
    return image_id


@pytest.mark.docker
@pytest.mark.server
def test_docker_cleanup_cli_containers_of_finished_runs_and_old_builds(
        docker_env, docker_api, base_image, prefect_server):
    pipeline = f"cl-{uuid.uuid4().hex[:8]}"
    (done,), running = finished_and_running_runs()
    images = {b: _image(docker_api, base_image, pipeline, b) for b in range(1, 9)}
    drop = _container(docker_api, base_image, run_labels(pipeline, done))
    keep = _container(docker_api, base_image, run_labels(pipeline, running))
    pinned = _container(docker_api, base_image, run_labels(pipeline, done, **{
        KEEP_ANNOTATION: "true"}))
    user = _container(docker_api, images[1], {})  # build 1 is in use: kept
    try:
        args = [*ANSFLOW, "cleanup", "--docker", "--pipeline", pipeline, "--keep-builds", "5"]
        dry = subprocess.run([*args, "--dry-run"], capture_output=True, text=True, timeout=300)
        assert dry.returncode == 0, dry.stderr[-2000:]
        assert "would remove 1 container(s), 2 image(s)" in dry.stdout, dry.stdout
        assert drop[:12] in dry.stdout and all(_container_exists(docker_api, c)
                                               for c in (drop, keep, pinned))
        out = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert not _container_exists(docker_api, drop)
        assert _container_exists(docker_api, keep) and _container_exists(docker_api, pinned)
        assert f"run {running} is still running (Running)" in out.stderr
        left = {i["Id"] for i in docker_api.images(filters={"label": [
            f"{PIPELINE_LABEL}={pipeline}"]})}
        assert left == {images[b] for b in (1, 4, 5, 6, 7, 8)}, out.stdout
    finally:
        for cid in (drop, keep, pinned, user):
            if _container_exists(docker_api, cid):
                docker_api.remove_container(cid, force=True)
        for image_id in images.values():
            try:
                docker_api.remove_image(image_id, force=True)
            except Exception:  # noqa: BLE001 - removed by the test already
                pass


@pytest.mark.docker
@pytest.mark.server
def test_docker_build_records_its_images_and_cleanup_keeps_the_newest_builds(
        docker_env, docker_api, base_image, make_ctx, tmp_path, prefect_server):
    from ansflow.spec.steps import DockerBuildConfig
    from ansflow.store import Store
    from ansflow.tasks.docker_build import engine_key, execute_docker_build

    pipeline = f"cl-{uuid.uuid4().hex[:8]}"
    built = {}
    for build in (1, 2, 3):
        (tmp_path / "Dockerfile").write_text(f"FROM {base_image}\nENV BUILD={build}\n")
        ctx = make_ctx("docker_build", build_number=build, pipeline=pipeline)
        result = execute_docker_build(ctx, DockerBuildConfig(
            image_name=f"ansflow-test/{pipeline}", tag=str(build)))
        built[build] = result.outputs["image_id"]
    try:
        store = Store()
        try:
            records = {r["image_id"]: r for r in store.built_images(engine_key(None))
                       if r["pipeline"] == pipeline}
        finally:
            store.close()
        assert {i: r["build_number"] for i, r in records.items()} == {
            built[b]: b for b in (1, 2, 3)}
        options = CleanupOptions(docker=True, keep_builds=2, pipelines=[pipeline],
                                 run_retention_days=None)
        report = cleanup(options)
        assert [(i.kind, i.name) for i in report.removed] == [
            ("Image", f"ansflow-test/{pipeline}:1")], report
        present = {i["Id"] for i in docker_api.images()}
        assert built[1] not in present and {built[2], built[3]} <= present
        store = Store()
        try:
            assert built[1] not in {r["image_id"] for r in store.built_images(engine_key(None))}
        finally:
            store.close()
    finally:
        for build in (1, 2, 3):
            try:
                docker_api.remove_image(f"ansflow-test/{pipeline}:{build}", force=True)
            except Exception:  # noqa: BLE001 - removed by the cleanup already
                pass




@pytest.mark.docker
@pytest.mark.server
def test_images_only_labelled_as_a_build_are_neither_counted_nor_removed(
        docker_env, docker_api, base_image, prefect_server):
    """A child image built FROM an ansflow-built one inherits its pipeline and build labels; a
    pulled image may claim build 999999. Neither is a build of the pipeline (counted, the
    claimant would leave builds 2 and 3 past keep_builds=2): the real build past keep_builds
    goes, the newest real ones stay, and the impostors are not touched."""
    pipeline = f"cl-{uuid.uuid4().hex[:8]}"
    real = {b: _image(docker_api, base_image, pipeline, b) for b in (1, 2, 3)}
    child_tag = f"ansflow-test/{pipeline}-child:1"
    for event in docker_api.build(fileobj=io.BytesIO(
            f"FROM ansflow-test/{pipeline}:3\nENV CHILD=1\n".encode()), tag=child_tag,
            rm=True, decode=True):
        assert "error" not in event, event
    child = docker_api.inspect_image(child_tag)
    assert child["Config"]["Labels"][BUILD_LABEL] == "3"  # inherited
    # The claimant travels through a registry, as a pulled image does.
    remote = f"{docker_env.registry}/ansflow-test/{pipeline}-claim:1"
    _image(docker_api, base_image, pipeline, 999999, record=False, tag=remote)
    for line in docker_api.push(remote, stream=True, decode=True):
        assert "error" not in line, line
    docker_api.remove_image(remote, force=True)
    for line in docker_api.pull(remote, stream=True, decode=True):
        assert "error" not in line, line
    claim = docker_api.inspect_image(remote)["Id"]
    try:
        options = CleanupOptions(docker=True, keep_builds=2, pipelines=[pipeline],
                                 run_retention_days=None)
        report = cleanup(options)
        assert report.failed == [] and report.problems == [], report
        assert {i.name for i in report.removed} == {f"ansflow-test/{pipeline}:1"}, report
        named = {i.name for i in report.removed + report.kept}
        assert child_tag not in named and remote not in named
        present = {i["Id"] for i in docker_api.images()}
        assert {child["Id"], claim, real[2], real[3]} <= present
        assert real[1] not in present
    finally:
        for ref in (child_tag, remote, *(f"ansflow-test/{pipeline}:{b}" for b in (1, 2, 3))):
            try:
                docker_api.remove_image(ref, force=True)
            except Exception:  # noqa: BLE001 - removed by the cleanup already
                pass
