"""The push event's pure parts: repository identities, which pipelines a push selects, the
providers' signatures and payloads, the replay record, with hostile values."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time

import pytest

from ansflow.gitpush.deliveries import DeliveryRecord
from ansflow.gitpush.events import (
    MAX_PAYLOAD_PATHS,
    MAX_RELATED,
    Push,
    PushError,
    build_events,
    registration,
)
from ansflow.gitpush.providers import (
    Refused,
    Secrets,
    delivery_id,
    parse_json,
    parse_push,
    signing_key,
    verify,
)
from ansflow.gitpush.repos import fnmatch_literal, repository_key

A, B = "a" * 40, "b" * 40
ZERO = "0" * 40


@pytest.mark.parametrize("url", [
    "https://github.com/Team/App.git", "https://user:pw@github.com:443/team/app/",
    "git@github.com:team/app.git", "ssh://git@github.com:22/team/app", "github.com:team/app",
])
def test_one_identity_per_repository(url):
    assert repository_key(url) == "github.com/team/app"


def test_local_paths_and_refusals():
    assert repository_key("/srv/git/App.git") == "file/srv/git/app"
    assert repository_key("file:///srv/git/app.git/") == "file/srv/git/app"
    for bad in ("", "not a url", "https://x/../etc", "https://host/", "a\nb", "x" * 3000,
                "relative/path"):
        with pytest.raises(ValueError):
            repository_key(bad)
    assert fnmatch_literal("ansflow.pipeline.a*b?[c]") == "ansflow.pipeline.a[*]b[?][[]c]"


def _push(**over) -> Push:
    values = dict(repositories=["https://git.example/team/app.git"], ref="refs/heads/main",
                  before=A, after=B, paths=["src/a.py"], source="github", delivery="d1")
    values.update(over)
    return Push(**values)


REGS = [registration("ci", "https://git.example/team/app", {"branches": ["main"],
                                                             "paths": ["src/**"]}),
        registration("docs", "git@git.example:team/app.git", {"paths": ["docs/**"]}),
        registration("other", "https://git.example/team/other", {}),
        registration("star*[x]", "https://git.example/team/app", {"tags": ["v*"]})]


def test_a_push_selects_only_the_pipelines_its_filters_and_repository_select():
    events, selected = build_events(_push(), REGS)
    assert selected == ["ci"]
    [event] = events
    assert event["event"] == "ansflow.git.push"
    assert event["resource"]["prefect.resource.id"] == "ansflow.git.repo.git.example/team/app"
    assert [r["prefect.resource.id"] for r in event["related"]] == ["ansflow.pipeline.ci"]
    assert event["payload"]["after"] == B and event["payload"]["branch"] == "main"
    _, selected = build_events(_push(ref="refs/tags/v1"), REGS)
    assert selected == ["docs", "star*[x]"]  # docs: only path filters, not evaluated on tags


def test_nothing_selected_still_one_event_and_a_deletion_selects_nothing():
    events, selected = build_events(_push(paths=["README"]), REGS)
    assert selected == [] and len(events) == 1 and events[0]["related"] == []
    events, selected = build_events(_push(after=ZERO, paths=[]), REGS)
    assert selected == [] and events[0]["payload"]["deleted"] is True


def test_many_pipelines_are_chunked_and_many_paths_bounded_in_the_payload():
    regs = [registration(f"p{i}", "https://git.example/team/app", {}) for i in range(120)]
    paths = [f"f{i}" for i in range(5000)] + ["x" * 5000]
    events, selected = build_events(_push(paths=paths), regs)
    assert len(selected) == 120 and len(events) == 3
    assert all(len(e["related"]) <= MAX_RELATED for e in events)
    assert len(events[0]["payload"]["paths"]) == MAX_PAYLOAD_PATHS
    assert events[0]["payload"]["paths_truncated"] is True
    assert len(json.dumps(events[0])) < 200_000


@pytest.mark.parametrize("over", [
    {"ref": "main"}, {"ref": "refs/heads/a b"}, {"ref": "refs/heads/\x00"},
    {"ref": "refs/heads/../x"}, {"ref": "refs/" + "x" * 2000}, {"before": "zz"},
    {"after": "$(id)"}, {"after": B.upper()}, {"repositories": []},
    {"repositories": ["not a url"]}, {"paths": [1]},
])
def test_pushes_with_hostile_fields_are_refused(over):
    with pytest.raises(PushError):
        _push(**over).check()


def test_template_and_shell_text_in_a_ref_stays_data():
    push = _push(ref="refs/heads/{{7*7}}$(id)`id`;'")
    push.check()
    events, selected = build_events(push, REGS)
    assert selected == [] and events[0]["payload"]["branch"] == "{{7*7}}$(id)`id`;'"


SECRETS = Secrets(github=b"gh", gitlab_token=b"gl", gitea=b"gt")


def _gh(body: bytes, key: bytes = b"gh") -> dict:
    return {"x-hub-signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()}


def test_signatures_and_tokens():
    body = b'{"a": 1}'
    verify("github", SECRETS, _gh(body), body)
    for headers in ({}, _gh(body, b"other"), _gh(body + b" "),
                    {"x-hub-signature-256": "sha1=" + "0" * 40},
                    {"x-hub-signature-256": "sha256=\u00e9"}):
        with pytest.raises(Refused) as info:
            verify("github", SECRETS, headers, body)
        assert info.value.status == 401
    gitea = hmac.new(b"gt", body, hashlib.sha256).hexdigest()
    verify("gitea", SECRETS, {"x-gitea-signature": gitea}, body)
    with pytest.raises(Refused):
        verify("gitea", SECRETS, {"x-gitea-signature": gitea.upper()}, body)
    verify("gitlab", SECRETS, {"x-gitlab-token": "gl"}, body)
    with pytest.raises(Refused):
        verify("gitlab", SECRETS, {"x-gitlab-token": "gl "[:-1] + "x"}, body)
    with pytest.raises(Refused) as info:
        verify("github", Secrets(gitea=b"x"), _gh(body), body)
    assert info.value.status == 404  # not enabled: refused, never accepted unsigned


def test_gitlab_signing_token_standard_webhooks():
    key = bytes(range(32))
    token = "whsec_" + base64.b64encode(key).decode()
    assert signing_key(token) == key
    secrets = Secrets(gitlab_signing=key)
    body, ident, stamp = b"{}", "msg_1", str(int(time.time()))
    good = base64.b64encode(hmac.new(key, f"{ident}.{stamp}.".encode() + body,
                                     hashlib.sha256).digest()).decode()
    headers = {"webhook-id": ident, "webhook-timestamp": stamp,
               "webhook-signature": f"v1,bm90IGl0 v1,{good}"}
    verify("gitlab", secrets, headers, body)
    with pytest.raises(Refused, match="wrong"):
        verify("gitlab", secrets, {**headers, "webhook-id": "msg_2"}, body)
    with pytest.raises(Refused, match="stale"):
        verify("gitlab", secrets, headers, body, now=time.time() + 3600)
    with pytest.raises(Refused, match="missing"):
        verify("gitlab", secrets, {"x-gitlab-token": "gl"}, body)
    for bad in ("whsec_!!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            signing_key(bad)


def test_delivery_ids_and_bodies():
    assert delivery_id("github", {"x-github-delivery": "72d3162e"}) == "72d3162e"
    assert delivery_id("gitlab", {"idempotency-key": "k"}) == "k"
    for headers in ({}, {"x-github-delivery": "x" * 300}, {"x-github-delivery": "a\u00e9"}):
        with pytest.raises(Refused):
            delivery_id("github", headers)
    for body in (b"\xff", b"[1]", b"1", b"[" * 100_000 + b"]" * 100_000, b""):
        with pytest.raises(Refused) as info:
            parse_json(body)
        assert info.value.status == 400


def test_payloads_of_each_provider():
    github = {"ref": "refs/heads/main", "before": A, "after": B,
              "repository": {"clone_url": "https://github.com/t/a.git", "pushed_at": 10},
              "commits": [{"added": ["x"], "modified": ["y"], "removed": ["z"]}]}
    push = parse_push("github", github, "d", max_age=None)
    assert push.paths == ["x", "y", "z"] and push.repositories == ["https://github.com/t/a.git"]
    with pytest.raises(Refused, match="stale"):
        parse_push("github", github, "d", max_age=60, now=1000)
    many = {**github, "commits": [{"added": ["x"]}] * 2048}
    assert parse_push("github", many, "d").paths is None  # GitHub's cap: not all listed
    tag = {**github, "ref": "refs/tags/v1", "head_commit": {"id": A}}
    pushed = parse_push("github", tag, "d")
    assert pushed.after == A and pushed.extra["tag_object"] == B and pushed.paths == []
    gitlab = {"ref": "refs/heads/main", "before": A, "after": B, "checkout_sha": B,
              "project": {"git_http_url": "https://gl/t/a.git"},
              "commits": [{"added": ["x"]}], "total_commits_count": 25}
    assert parse_push("gitlab", gitlab, "d").paths is None  # GitLab lists 20 of 25
    gitea = {"ref": "refs/heads/main", "before": A, "after": B,
             "repository": {"clone_url": "https://gt/t/a.git"}, "commits": [],
             "total_commits": 0, "pusher": {"login": "ada"}}
    assert parse_push("gitea", gitea, "d").pusher == "ada"
    for bad in ({**github, "repository": "x"}, {**github, "commits": "x"},
                {**github, "commits": [{"added": [1]}]}, {**github, "ref": 5},
                {k: v for k, v in github.items() if k != "after"}):
        with pytest.raises(Refused) as info:
            parse_push("github", bad, "d")
        assert info.value.status == 400


def test_the_replay_record_is_persistent_bounded_and_claims_once(tmp_path):
    path = tmp_path / "d.db"
    record = DeliveryRecord(path, limit=50)
    assert record.claim("github", "1") and not record.claim("github", "1")
    assert record.claim("gitea", "1")  # ids are per provider
    record.release("github", "1")
    assert record.claim("github", "1")
    record.close()
    again = DeliveryRecord(path, limit=50)
    assert not again.claim("github", "1")  # survives a restart
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    for i in range(2100):
        again.claim("github", f"n{i}")
    assert again.count() <= 50 + 1000
    results = []
    threads = [threading.Thread(target=lambda: results.append(again.claim("gh", "same")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
