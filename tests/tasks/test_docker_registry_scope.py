"""A registry credentials block is sent only to its own registry (its ``registry_url``), never
to a host a `registry:` value names: with `credentials: prod` and a templated
`registry: "{{ vars.registry }}"`, the run starter must not get prod's password sent to a
host of their choosing. Against the real registries (an anonymous one, A, and an
auth-protected one, B) and a listener that records every connection."""

from __future__ import annotations

import base64
import socket
import threading
import urllib.error
import urllib.request
import uuid

import pytest
from pydantic import SecretStr

from ansflow.engines.docker_streams import normal_registry, registry_of_image
from ansflow.errors import StepFailed
from ansflow.runtime.docker_access import (
    DockerRegistryCredentials,
    RegistryAccess,
    resolve_registry,
)
from ansflow.spec.steps import DockerPullConfig, DockerPushConfig
from ansflow.tasks.docker_pull import execute_docker_pull
from ansflow.tasks.docker_push import execute_docker_push, plan_push


@pytest.mark.parametrize("a, b", [
    ("https://Index.Docker.io/v1/", "docker.io"),
    ("registry-1.docker.io", ""),
    ("reg.example.com:443", "https://reg.example.com/"),
    ("http://reg.example.com:80", "reg.example.com"),
    ("127.0.0.1:5000", "http://127.0.0.1:5000/v2/"),
])
def test_one_registry_under_its_names(a, b):
    assert normal_registry(a) == normal_registry(b)


@pytest.mark.parametrize("a, b", [
    ("localhost:5000", "127.0.0.1:5000"),
    ("reg.example.com", "reg.example.com:5000"),
    ("reg.example.com", "reg.example.com.evil.example"),
    ("docker.io", "quay.io"),
    ("http://reg.example.com:443", "reg.example.com:80"),
])
def test_other_registries_stay_other(a, b):
    assert normal_registry(a) != normal_registry(b)


def test_image_names_resolve_to_their_registry():
    assert registry_of_image("app") == "docker.io"
    assert registry_of_image("team/app") == "docker.io"
    assert registry_of_image("Reg.Example.com:443/team/app@sha256:00") == "reg.example.com"


def _block(url: str, user: str = "u", password: str = "pw-of-prod-1") -> DockerRegistryCredentials:
    return DockerRegistryCredentials(username=user, password=password, registry_url=url)


@pytest.mark.parametrize("registry", [
    "evil.example:5000", "https://evil.example", "localhost:5000", "reg.example.com:5000",
    "reg.example.com.evil.example", "docker.io",
])
def test_a_registry_value_cannot_carry_a_block_elsewhere(registry):
    block = _block("https://reg.example.com")
    with pytest.raises(StepFailed) as err:
        plan_push(DockerPushConfig(image="app:1", registry=registry), block)
    assert "saved for registry reg.example.com" in str(err.value)
    assert "pw-of-prod-1" not in str(err.value) + str(err.value.hint)


def test_a_block_goes_to_its_own_registry_under_any_of_its_names():
    block = _block("https://reg.example.com:443/")
    for registry in (None, "reg.example.com", "https://reg.example.com", "reg.example.com:443"):
        plan = plan_push(DockerPushConfig(image="app:1", registry=registry), block)
        assert plan.access.auth_config(plan.repository)["password"] == "pw-of-prod-1"
    hub = _block("index.docker.io")
    assert resolve_registry(None, None, hub).auth_config("team/app")["username"] == "u"
    with pytest.raises(StepFailed, match="saved for registry docker.io, not for quay.io"):
        resolve_registry(None, None, hub).auth_config("quay.io/team/app")


def test_credentials_without_a_home_are_never_sent():
    access = RegistryAccess(host="r.example", username="u", password=SecretStr("pw-123"))
    with pytest.raises(StepFailed, match="saved for registry"):
        access.auth_config()


class Listener:
    """A TCP listener standing for registry B: it counts the connections it gets."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def _manifest_status(registry: str, repo: str, tag: str, user: str, password: str) -> int:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{tag}", method="HEAD",
                                 headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def local_image(docker_api, base_image) -> str:
    name = f"ansflow-test/scope-{uuid.uuid4().hex[:8]}"
    docker_api.tag(base_image, name, "v1")
    yield f"{name}:v1"
    for ref in [i for img in docker_api.images(name=name) for i in img["RepoTags"] or []]:
        docker_api.remove_image(ref)


@pytest.mark.docker
@pytest.mark.server
def test_a_block_for_registry_a_is_not_sent_to_registry_b(make_ctx, prefect_server, docker_env,
                                                          local_image, caplog):
    """Block `prod-a` is saved for registry A with a username and password that registry B
    would accept. A push or pull naming B with `credentials: prod-a` is refused before any
    request: B never gets the image (checked with B's own credentials), a listener standing
    for B sees no connection, and an unreachable engine is not even asked. The same
    credentials saved for B do push there (so they would have been accepted)."""
    a, b = docker_env.registry, docker_env.auth_registry
    _block(a, docker_env.user, docker_env.password).save("scope-prod-a", overwrite=True)
    _block(b, docker_env.user, docker_env.password).save("scope-prod-b", overwrite=True)
    repo, tag = local_image.split(":")
    ctx = make_ctx("docker_push")
    with pytest.raises(StepFailed) as err:
        execute_docker_push(ctx, DockerPushConfig(image=local_image, registry=b,
                                                  credentials="scope-prod-a"))
    assert f"saved for registry {a}, not for {b}" in str(err.value)
    assert _manifest_status(b, repo, tag, docker_env.user, docker_env.password) == 404
    # registry: a block of B's host, credentials: A's block: still A's password, still refused.
    with pytest.raises(StepFailed, match=f"saved for registry {a}, not for {b}"):
        execute_docker_push(ctx, DockerPushConfig(image=local_image, registry="scope-prod-b",
                                                  credentials="scope-prod-a"))
    listener = Listener()
    try:
        for call in (
            lambda: execute_docker_push(ctx, DockerPushConfig(
                image=local_image, registry=listener.address, credentials="scope-prod-a")),
            lambda: execute_docker_pull(ctx, DockerPullConfig(
                image=local_image, registry=listener.address, credentials="scope-prod-a")),
            lambda: execute_docker_push(ctx, DockerPushConfig(
                image=local_image, registry=listener.address, credentials="scope-prod-a",
                host="tcp://127.0.0.1:1")),
        ):
            with pytest.raises(StepFailed, match="refused: they are sent only to their own"):
                call()
        assert listener.connections == 0
    finally:
        listener.close()
    assert _manifest_status(b, repo, tag, docker_env.user, docker_env.password) == 404
    pushed = execute_docker_push(ctx, DockerPushConfig(image=local_image,
                                                       credentials="scope-prod-b"))
    assert pushed.outputs["image"] == f"{b}/{local_image}"
    assert _manifest_status(b, repo, tag, docker_env.user, docker_env.password) == 200
    assert docker_env.password not in caplog.text + str(err.value)
