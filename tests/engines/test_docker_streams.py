"""Pure Docker helpers: stream events, image references, run options."""

from __future__ import annotations

import pytest

from ansflow.engines.docker_streams import (
    command_argv,
    image_ref,
    parse_stream_event,
    port_bindings,
    registry_of,
    retarget,
    split_image_ref,
    volume_binds,
)
from ansflow.engines.errors import EngineError


def test_build_stream_line_error_and_image_id():
    step = parse_stream_event({"stream": "Step 1/2 : FROM scratch\n"})
    assert step.line == "Step 1/2 : FROM scratch"
    assert parse_stream_event({"stream": "\n"}).line is None
    err = parse_stream_event({"errorDetail": {"code": 1, "message": "boom"}, "error": "boom"})
    assert err.error == "boom"
    assert parse_stream_event({"errorDetail": {"message": "only detail"}}).error == "only detail"
    assert parse_stream_event({"aux": {"ID": "sha256:abc"}}).image_id == "sha256:abc"


def test_push_stream_digest_and_progress_noise():
    digest = "sha256:" + "a" * 64
    assert parse_stream_event({"aux": {"Tag": "1", "Digest": digest, "Size": 5}}).digest == digest
    status = parse_stream_event({"status": f"1: digest: {digest} size: 736"})
    assert status.digest == digest
    noise = parse_stream_event({"status": "Pushing", "id": "abc",
                                "progressDetail": {"current": 5, "total": 10}})
    assert noise.line is None
    assert parse_stream_event({"status": "Pushed", "id": "abc"}).line == "abc: Pushed"


@pytest.mark.parametrize("ref, expected", [
    ("my-app", ("my-app", None)),
    ("my-app:5", ("my-app", "5")),
    ("127.0.0.1:5000/team/app:v1", ("127.0.0.1:5000/team/app", "v1")),
    ("127.0.0.1:5000/app", ("127.0.0.1:5000/app", None)),
    ("app@sha256:" + "0" * 64, ("app@sha256:" + "0" * 64, None)),
])
def test_split_image_ref(ref, expected):
    assert split_image_ref(ref) == expected


def test_image_ref_tag_override_and_default():
    assert image_ref("my-app:5", None) == ("my-app", "5")
    assert image_ref("my-app:5", "6") == ("my-app", "6")
    assert image_ref("my-app", None) == ("my-app", "latest")
    with pytest.raises(EngineError):
        image_ref("bad ref", None)


def test_registry_detection_and_retarget():
    assert registry_of("my-app") is None
    assert registry_of("team/app") is None
    assert registry_of("localhost/app") == "localhost"
    assert registry_of("registry.example.com/app") == "registry.example.com"
    assert retarget("my-app", "127.0.0.1:5000") == "127.0.0.1:5000/my-app"
    assert retarget("team/app", "http://reg.local/") == "reg.local/team/app"
    assert retarget("old.reg:5000/team/app", "new.reg") == "new.reg/team/app"
    with pytest.raises(EngineError):
        retarget("app", "")


def test_command_argv_splits_like_a_shell_without_one():
    assert command_argv("npm test") == ["npm", "test"]
    assert command_argv("sh -c 'echo a; echo b'") == ["sh", "-c", "echo a; echo b"]
    assert command_argv(["a", "b c"]) == ["a", "b c"]
    assert command_argv(None) is None
    with pytest.raises(EngineError, match="cannot be split"):
        command_argv("echo 'unbalanced")


def test_volume_binds_resolve_relative_paths_against_the_workspace(monkeypatch):
    ws = "/ws"
    monkeypatch.setenv("ANSFLOW_ALLOWED_HOST_PATHS", "/abs")  # absolute: only when allowed
    assert volume_binds(["./data:/data", "/abs:/abs:ro", "named:/v"], ws) == [
        "/ws/data:/data", "/abs:/abs:ro", "named:/v"]
    assert volume_binds({"src/app": "/app"}, ws) == ["/ws/src/app:/app"]
    for bad in ("nocolon", "/a:relative", "/a:/b:xx"):
        with pytest.raises(EngineError):
            volume_binds([bad], ws)
    monkeypatch.delenv("ANSFLOW_ALLOWED_HOST_PATHS")
    with pytest.raises(EngineError, match="outside the workspace"):
        volume_binds(["/abs:/abs:ro"], ws)


def test_port_bindings():
    assert port_bindings(["8080:80", "53/udp", "127.0.0.1:9000:90"]) == {
        "80/tcp": 8080, "53/udp": None, "90/tcp": ("127.0.0.1", 9000)}
    assert port_bindings({"80": 8081}) == {"80/tcp": 8081}
    with pytest.raises(EngineError):
        port_bindings(["x:y"])
