"""How `registry:` / `credentials:` values resolve, and how registry errors are classified."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from ansflow.errors import StepFailed, StepTransient
from ansflow.runtime.docker_access import RegistryAccess, docker_base_url, resolve_registry
from ansflow.spec.steps import DockerPushConfig
from ansflow.tasks.docker_push import plan_push, registry_failure


@pytest.mark.parametrize("value, host", [
    ("registry.example.com", "registry.example.com"),
    ("127.0.0.1:5000", "127.0.0.1:5000"),
    ("localhost", "localhost"),
    ("https://reg.example.com/", "reg.example.com"),
])
def test_a_host_means_anonymous_access(value, host):
    for access in (resolve_registry(value, None), resolve_registry(None, value)):
        assert access.host == host
        assert access.auth_config() is None
        assert access.source == "anonymous"


def test_no_registry_keeps_the_images_own():
    assert resolve_registry(None, None) == RegistryAccess(host=None)
    plan = plan_push(DockerPushConfig(image="127.0.0.1:5000/team/app:3"))
    assert plan.target == "127.0.0.1:5000/team/app:3" and plan.source == plan.target


def test_seed_push_is_retagged_for_the_registry():
    plan = plan_push(DockerPushConfig(image="my-app:7", registry="registry.example.com"))
    assert plan.source == "my-app:7"
    assert plan.target == "registry.example.com/my-app:7"


def test_auth_config_carries_the_password_only_there():
    access = RegistryAccess(host="r.example", username="u", password=SecretStr("pw-123"),
                            source="block 'x'", home="r.example")
    assert access.auth_config() == {"username": "u", "password": "pw-123",
                                     "serveraddress": "r.example"}
    assert access.auth_config("r.example/team/app") == access.auth_config()
    assert "pw-123" not in repr(access) and "pw-123" not in str(access)


def test_registry_errors_are_classified():
    anon = RegistryAccess(host="r")
    refused = registry_failure("no basic auth credentials", "push of r/a:1", anon)
    assert type(refused) is StepFailed and "credentials" in refused.hint
    gone = registry_failure('Put "http://r/v2/a/manifests/1": EOF', "push of r/a:1", anon)
    assert isinstance(gone, StepTransient)
    refused_conn = registry_failure("dial tcp 127.0.0.1:1: connect: connection refused", "x",
                                    anon)
    assert isinstance(refused_conn, StepTransient)
    other = registry_failure("manifest invalid", "push", anon)
    assert type(other) is StepFailed


def test_engine_address_of_a_step():
    assert docker_base_url(None) is None
    assert docker_base_url("tcp://127.0.0.1:2375") == "tcp://127.0.0.1:2375"


def test_pipeline_defaults_fill_in_registry_credentials_host_and_image(tmp_path):
    from ansflow.spec.validate import load_plan

    path = tmp_path / "p.yaml"
    path.write_text("""\
pipeline:
  name: d
  defaults:
    docker: {registry: "reg.example.com:5000", host: "tcp://127.0.0.1:2375", image: "box:1"}
  steps:
    - {id: push, type: docker_push, config: {image: "my-app:1"}}
    - {id: own, type: docker_push, config: {image: "my-app:1", registry: other.example}}
    - {id: inbox, type: command, runs_on: docker, config: {command: "true"}}
    - {id: here, type: command, config: {command: "true"}}
""")
    plan = load_plan(path)
    push, own, inbox, here = (plan.step(s).config for s in ("push", "own", "inbox", "here"))
    assert plan_push(DockerPushConfig(**push)).target == "reg.example.com:5000/my-app:1"
    assert push["host"] == "tcp://127.0.0.1:2375"
    assert plan_push(DockerPushConfig(**own)).target == "other.example/my-app:1"
    assert (inbox["image"], inbox["host"]) == ("box:1", "tcp://127.0.0.1:2375")
    assert "image" not in here and "host" not in here  # a local step: nothing Docker added
