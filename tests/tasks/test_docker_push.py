"""docker_push / docker_pull against real registries: digests, auth, blocks, faults."""

from __future__ import annotations

import socket
import threading
import urllib.request
import uuid

import pytest

from ansflow.errors import StepFailed, StepTransient
from ansflow.spec.steps import DockerPullConfig, DockerPushConfig
from ansflow.tasks.docker_pull import execute_docker_pull
from ansflow.tasks.docker_push import execute_docker_push

pytestmark = pytest.mark.docker
MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json,"
                  "application/vnd.oci.image.manifest.v1+json")


def registry_digest(registry: str, repo: str, tag: str) -> str:
    req = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{tag}",
                                 headers={"Accept": MANIFEST_TYPES}, method="HEAD")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers["Docker-Content-Digest"]


@pytest.fixture
def local_image(docker_api, base_image) -> str:
    """A uniquely named local image (so every push really uploads a manifest)."""
    name = f"ansflow-test/push-{uuid.uuid4().hex[:8]}"
    docker_api.tag(base_image, name, "v1")
    yield f"{name}:v1"
    for ref in [i for img in docker_api.images(name=name) for i in img["RepoTags"] or []]:
        docker_api.remove_image(ref)


def test_push_tags_for_the_registry_and_outputs_the_registry_digest(make_ctx, docker_env,
                                                                   local_image, caplog):
    ctx = make_ctx("docker_push")
    result = execute_docker_push(ctx, DockerPushConfig(image=local_image,
                                                       registry=docker_env.registry))
    repo = local_image.split(":")[0]
    assert result.outputs["image"] == f"{docker_env.registry}/{local_image}"
    assert result.outputs["digest"] == registry_digest(docker_env.registry, repo, "v1")
    assert any("digest:" in r.getMessage() for r in caplog.records)


def test_push_with_tag_override_and_missing_image(make_ctx, docker_env, local_image):
    ctx = make_ctx("docker_push")
    result = execute_docker_push(ctx, DockerPushConfig(image=local_image, tag="v1",
                                                       registry=f"http://{docker_env.registry}"))
    assert result.outputs["digest"].startswith("sha256:")
    with pytest.raises(StepFailed, match="not found on the Docker engine"):
        execute_docker_push(ctx, DockerPushConfig(image="ansflow-test/never-built:1",
                                                  registry=docker_env.registry))


def test_anonymous_push_to_the_auth_registry_fails_with_its_message(make_ctx, docker_env,
                                                                   local_image):
    ctx = make_ctx("docker_push")
    with pytest.raises(StepFailed) as info:
        execute_docker_push(ctx, DockerPushConfig(image=local_image,
                                                  registry=docker_env.auth_registry))
    assert not isinstance(info.value, StepTransient)
    assert "no basic auth credentials" in str(info.value)
    assert "credentials" in str(info.value.hint)


def test_unknown_block_name_is_a_clear_error(make_ctx, prefect_server, local_image):
    ctx = make_ctx("docker_push")
    with pytest.raises(StepFailed, match="no saved Docker Registry Credentials block"):
        execute_docker_push(ctx, DockerPushConfig(image=local_image, registry="no-such-block"))


def test_push_and_pull_with_a_credentials_block_never_show_the_password(
        make_ctx, prefect_server, docker_env, local_image, docker_api, caplog):
    from ansflow.runtime.docker_access import DockerRegistryCredentials

    DockerRegistryCredentials(username=docker_env.user, password=docker_env.password,
                              registry_url=docker_env.auth_registry).save(
        "test-auth-registry", overwrite=True)
    DockerRegistryCredentials(username=docker_env.user, password="wrong-password",
                              registry_url=docker_env.auth_registry).save(
        "test-auth-registry-wrong", overwrite=True)
    ctx = make_ctx("docker_push")
    pushed = execute_docker_push(ctx, DockerPushConfig(image=local_image,
                                                       credentials="test-auth-registry"))
    assert pushed.outputs["image"] == f"{docker_env.auth_registry}/{local_image}"
    docker_api.remove_image(pushed.outputs["image"])
    pulled = execute_docker_pull(ctx, DockerPullConfig(image=pushed.outputs["image"],
                                                       credentials="test-auth-registry"))
    assert pulled.outputs["digest"] == pushed.outputs["digest"]
    with pytest.raises(StepFailed) as info:
        execute_docker_push(ctx, DockerPushConfig(image=local_image,
                                                  credentials="test-auth-registry-wrong"))
    assert "unauthorized" in str(info.value).lower() or "denied" in str(info.value).lower()
    shown = "\n".join(r.getMessage() for r in caplog.records)
    for text in (shown, str(pushed), str(pulled), str(info.value)):
        assert docker_env.password not in text
        assert "wrong-password" not in text


def test_unreachable_registry_is_transient(make_ctx, local_image):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(StepTransient, match="unreachable.*connection refused"):
        execute_docker_push(make_ctx("docker_push"),
                            DockerPushConfig(image=local_image, registry=dead))


class CuttingProxy:
    """A TCP proxy to a registry that dies when the manifest upload starts (mid-push)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.split(":")
        self.upstream = (host, int(port))
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.cut = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.conns += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client and b"PUT /v2/" in data and b"/manifests/" in data:
                    self.die()
                    return
                dst.sendall(data)
        except OSError:
            pass

    def die(self) -> None:
        self.cut.set()
        self.listener.close()
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_registry_dying_mid_push_fails_the_step_as_transient(make_ctx, docker_env,
                                                             local_image):
    proxy = CuttingProxy(docker_env.registry)
    try:
        with pytest.raises(StepTransient) as info:
            execute_docker_push(make_ctx("docker_push", timeout=120),
                                DockerPushConfig(image=local_image, registry=proxy.address))
    finally:
        proxy.die()
    assert proxy.cut.is_set(), "the push reached the manifest upload before the cut"
    assert "unreachable" in str(info.value)


def test_pull_outputs_id_and_digest_and_missing_image_fails(make_ctx, docker_env, local_image,
                                                            docker_api):
    ctx = make_ctx("docker_pull")
    pushed = execute_docker_push(ctx, DockerPushConfig(image=local_image,
                                                       registry=docker_env.registry))
    docker_api.remove_image(pushed.outputs["image"])
    pulled = execute_docker_pull(ctx, DockerPullConfig(image=local_image,
                                                       registry=docker_env.registry))
    assert pulled.outputs["image"] == pushed.outputs["image"]
    assert pulled.outputs["digest"] == pushed.outputs["digest"]
    assert pulled.outputs["image_id"] == docker_api.inspect_image(local_image)["Id"]
    with pytest.raises(StepFailed, match="not found"):
        execute_docker_pull(ctx, DockerPullConfig(image="ansflow-test/absent", tag="1",
                                                  registry=docker_env.registry))


class BlackHole:
    """A registry address that accepts connections and never answers."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.conns.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for conn in self.conns:
            conn.close()


@pytest.mark.parametrize("step", ["push", "pull"])
def test_a_hanging_registry_is_stopped_at_the_step_deadline(make_ctx, local_image, step):
    import time

    from ansflow.errors import StepTimedOut

    hole = BlackHole()
    ctx = make_ctx(f"docker_{step}", timeout=2)
    started = time.monotonic()
    try:
        with pytest.raises(StepTimedOut, match="did not finish within the step timeout"):
            if step == "push":
                execute_docker_push(ctx, DockerPushConfig(image=local_image,
                                                          registry=hole.address))
            else:
                execute_docker_pull(ctx, DockerPullConfig(image="ansflow-test/x:1",
                                                          registry=hole.address))
    finally:
        hole.close()
    assert time.monotonic() - started < 30


def test_docker_run_pulls_an_image_that_names_a_registry(make_ctx, docker_env, local_image,
                                                        docker_api, caplog):
    from ansflow.spec.steps import DockerRunConfig
    from ansflow.tasks.docker_run import execute_docker_run

    ctx = make_ctx("docker_run")
    pushed = execute_docker_push(ctx, DockerPushConfig(image=local_image,
                                                       registry=docker_env.registry))
    docker_api.remove_image(pushed.outputs["image"])
    result = execute_docker_run(ctx, DockerRunConfig(image=pushed.outputs["image"],
                                                     command="echo pulled-and-ran"))
    assert result.exit_code == 0
    assert "pulled-and-ran" in [r.getMessage() for r in caplog.records]


def test_docker_run_pulling_from_a_hanging_registry_stops_at_the_deadline(make_ctx):
    import time

    from ansflow.errors import StepTimedOut
    from ansflow.spec.steps import DockerRunConfig
    from ansflow.tasks.docker_run import execute_docker_run

    hole = BlackHole()
    started = time.monotonic()
    try:
        with pytest.raises(StepTimedOut, match="while pulling"):
            execute_docker_run(make_ctx("docker_run", timeout=2),
                               DockerRunConfig(image=f"{hole.address}/app:1", command="true"))
    finally:
        hole.close()
    assert time.monotonic() - started < 30
