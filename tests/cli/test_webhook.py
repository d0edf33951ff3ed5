"""`ansflow webhook`: GitHub, GitLab and Gitea push deliveries (their documented payload
fields, signature headers and algorithms) for a push to a real bare repository start the
served pipeline at exactly the pushed commit; a wrong signature, a replay, a 50 MB body, a
malformed body, a stale delivery: each refused, and nothing started."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from fixtures_git import git
from push_serving import (
    Served,
    assert_no_new_run,
    commit_local,
    outputs,
    pipeline_text,
    push,
    runs_of,
    wait_final,
    wait_runs,
)

pytestmark = pytest.mark.server

GITHUB_SECRET = "gh-" + uuid.uuid4().hex
GITLAB_TOKEN = "gl-" + uuid.uuid4().hex
GITEA_SECRET = "gt-" + uuid.uuid4().hex
SIGNING_KEY = os.urandom(32)
GITLAB_SIGNING = "whsec_" + base64.b64encode(SIGNING_KEY).decode()


class Receiver:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ansflow.cli", "webhook", "--port", "0", "--state",
             str(log.with_suffix(".db"))],
            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
            start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.output())
            if found:
                self.port = int(found[1])
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"webhook did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("POST", path, body=body,
                     headers={"Content-Type": "application/json", **headers})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, json.loads(data or b"{}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)


def _github_sign(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _commits(work: Path, before: str, after: str) -> list[dict]:
    """Each pushed commit with its added / modified / removed paths, as the providers list
    them."""
    shas = git("rev-list", "--reverse", f"{before}..{after}", cwd=work).split()
    commits = []
    for sha in shas:
        entry = {"id": sha, "message": "m", "added": [], "modified": [], "removed": []}
        for line in git("diff-tree", "--no-commit-id", "--name-status", "-r", sha,
                        cwd=work).splitlines():
            status, path = line.split("\t", 1)
            key = {"A": "added", "D": "removed"}.get(status[0], "modified")
            entry[key].append(path)
        commits.append(entry)
    return commits


def github_delivery(url: str, ref: str, before: str, after: str, commits: list[dict],
                    pushed_at: float | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({
        "ref": ref, "before": before, "after": after, "created": False, "deleted": False,
        "forced": False, "compare": "https://github.example/compare",
        "commits": commits, "head_commit": commits[-1] if commits else None,
        "repository": {"id": 1, "full_name": "team/app", "clone_url": url,
                       "ssh_url": "git@github.example:team/app.git",
                       "html_url": "https://github.example/team/app",
                       "pushed_at": int(pushed_at or time.time())},
        "pusher": {"name": "ada", "email": "ada@example.test"},
        "sender": {"login": "ada"},
    }).encode()
    return body, {"X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()),
                  "X-Hub-Signature-256": _github_sign(body),
                  "User-Agent": "GitHub-Hookshot/test"}


def gitlab_body(url: str, ref: str, before: str, after: str, commits: list[dict]) -> bytes:
    return json.dumps({
        "object_kind": "push", "event_name": "push", "before": before, "after": after,
        "ref": ref, "checkout_sha": after, "user_username": "ada", "project_id": 7,
        "project": {"id": 7, "name": "app", "web_url": "https://gitlab.example/team/app",
                    "git_ssh_url": "git@gitlab.example:team/app.git", "git_http_url": url,
                    "path_with_namespace": "team/app"},
        "commits": commits, "total_commits_count": len(commits),
        "repository": {"name": "app", "url": "git@gitlab.example:team/app.git",
                       "git_http_url": url},
    }).encode()


def gitlab_token_delivery(url, ref, before, after, commits):
    body = gitlab_body(url, ref, before, after, commits)
    return body, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": GITLAB_TOKEN,
                  "X-Gitlab-Event-UUID": str(uuid.uuid4())}


def gitlab_signed_delivery(url, ref, before, after, commits, stamp: int | None = None):
    body = gitlab_body(url, ref, before, after, commits)
    ident = str(uuid.uuid4())
    stamp = stamp or int(time.time())
    digest = hmac.new(SIGNING_KEY, f"{ident}.{stamp}.".encode() + body, hashlib.sha256)
    return body, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": ident,
                  "webhook-id": ident, "webhook-timestamp": str(stamp),
                  "webhook-signature": "v1," + base64.b64encode(digest.digest()).decode()}


def gitea_delivery(url, ref, before, after, commits):
    body = json.dumps({
        "ref": ref, "before": before, "after": after,
        "compare_url": "https://gitea.example/team/app/compare",
        "commits": commits, "total_commits": len(commits),
        "head_commit": commits[-1] if commits else None,
        "repository": {"id": 3, "full_name": "team/app", "clone_url": url,
                       "ssh_url": "git@gitea.example:team/app.git",
                       "html_url": "https://gitea.example/team/app"},
        "pusher": {"login": "ada"}, "sender": {"login": "ada"},
    }).encode()
    signature = hmac.new(GITEA_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Gitea-Event": "push", "X-Gitea-Delivery": str(uuid.uuid4()),
                  "X-Gitea-Signature": signature}


@pytest.fixture(scope="module")
def setup(prefect_server, tmp_path_factory, git_root):
    """A served pipeline built from a bare repository served over HTTP by git's own
    http-backend, and two receivers (secrets from the environment): one with GitHub's and
    Gitea's secrets and GitLab's secret token, one with GitLab's signing token."""
    from fixtures_git import GitHttpServer, make_repo

    from ansflow.blocks.git import GitCredentials

    tmp = tmp_path_factory.mktemp("webhook")
    http = GitHttpServer(root=git_root, user="ci", token=f"tok-{uuid.uuid4().hex}")
    http.start()
    repo = make_repo(git_root, f"wh{uuid.uuid4().hex[:8]}", {"src/app.txt": "one"})
    block = f"wh-git-{uuid.uuid4().hex[:8]}"
    GitCredentials(username=http.user, token=http.token).save(block)
    url = http.url(repo.bare.stem)
    name = f"webhook-{uuid.uuid4().hex[:8]}"
    file = tmp / "pipelines" / "ci.yaml"
    file.parent.mkdir()
    file.write_text(pipeline_text(name, url).replace(
        "ref: main}", f"ref: main, credentials: {block}}}"))
    served = Served(file, tmp / "serve.log")
    receivers = []
    try:
        dep = served.wait_ready(name)
        receivers.append(Receiver({"ANSFLOW_WEBHOOK_GITHUB_SECRET": GITHUB_SECRET,
                                   "ANSFLOW_WEBHOOK_GITLAB_TOKEN": GITLAB_TOKEN,
                                   "ANSFLOW_WEBHOOK_GITEA_SECRET": GITEA_SECRET},
                                  tmp / "receiver.log"))
        receivers.append(Receiver({"ANSFLOW_WEBHOOK_GITLAB_SIGNING_TOKEN": GITLAB_SIGNING},
                                  tmp / "receiver-signed.log"))
        yield repo, url, dep, name, receivers[0], receivers[1]
    finally:
        for receiver in receivers:
            receiver.stop()
        served.stop()
        http.stop()


def test_each_provider_s_push_runs_the_pipeline_at_exactly_the_pushed_commit(setup):
    repo, url, dep, name, receiver, signed = setup
    before_count = len(runs_of(dep.id))
    expected = {}
    for path, make, target in [("/github", github_delivery, receiver),
                               ("/gitlab", gitlab_token_delivery, receiver),
                               ("/gitea", gitea_delivery, receiver),
                               ("/gitlab", gitlab_signed_delivery, signed)]:
        before = git("rev-parse", "HEAD", cwd=repo.work)
        for i in range(3):  # three commits in one push: one run, of the head
            after = commit_local(repo.work, {"src/app.txt": f"{make.__name__} {i}"}, f"c{i}")
        push(repo.work, "HEAD:refs/heads/main")
        body, headers = make(url, "refs/heads/main", before, after,
                             _commits(repo.work, before, after))
        status, answer = target.post(path, body, headers)
        assert status == 202, (make.__name__, answer)
        assert answer["pipelines"] == [name] and answer["after"] == after
        expected[after] = f"{make.__name__} 2"
        wait_runs(dep.id, before_count + len(expected))
    # A push the filters do not select (docs only) is accepted and starts nothing.
    before = git("rev-parse", "HEAD", cwd=repo.work)
    after = commit_local(repo.work, {"README.md": "docs"}, "docs")
    push(repo.work, "HEAD:refs/heads/main")
    status, answer = receiver.post("/github", *github_delivery(
        url, "refs/heads/main", before, after, _commits(repo.work, before, after)))
    assert status == 202 and answer["pipelines"] == []
    assert_no_new_run(dep.id, before_count + 4)
    for run in runs_of(dep.id):
        if run.parameters.get("sha") in expected:
            final = wait_final(run.id)
            assert final.state.is_completed(), final.state
            out = outputs(run.id)
            assert out["head"] == run.parameters["sha"]
            assert out["file"] == expected[run.parameters["sha"]]
            assert run.parameters["ref"] == "refs/heads/main"
    assert GITHUB_SECRET not in receiver.output() and GITLAB_TOKEN not in receiver.output()


def _raw_post(port: int, head: bytes, body_part: bytes) -> tuple[bytes, float]:
    """Send headers and only the start of a body; the answer and the seconds it took."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        try:
            sock.sendall(body_part)
        except OSError:
            pass
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data, time.monotonic() - start


def test_refused_deliveries_start_nothing(setup):
    repo, url, dep, name, receiver, signed = setup
    count = len(runs_of(dep.id))
    before = git("rev-parse", "HEAD", cwd=repo.work)
    after = commit_local(repo.work, {"src/app.txt": "refusals"}, "refusals")
    push(repo.work, "HEAD:refs/heads/main")
    commits = _commits(repo.work, before, after)
    args = (url, "refs/heads/main", before, after, commits)

    body, headers = github_delivery(*args)
    wrong = {**headers, "X-Hub-Signature-256": _github_sign(body, "not-the-secret")}
    assert receiver.post("/github", body, wrong)[0] == 401
    unsigned = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
    assert receiver.post("/github", body, unsigned)[0] == 401
    tampered = body.replace(after.encode(), before.encode())
    assert receiver.post("/github", tampered, headers)[0] == 401
    body, headers = gitlab_token_delivery(*args)
    assert receiver.post("/gitlab", body, {**headers, "X-Gitlab-Token": "x"})[0] == 401
    body, headers = gitea_delivery(*args)
    assert receiver.post("/gitea", body, {**headers, "X-Gitea-Signature": "0" * 64})[0] == 401
    body, headers = gitlab_signed_delivery(*args)
    assert signed.post("/gitlab", body, {**headers, "webhook-timestamp": "1"})[0] == 401
    body, headers = gitlab_signed_delivery(*args, stamp=int(time.time()) - 3600)
    status, answer = signed.post("/gitlab", body, headers)
    assert status == 400 and "stale" in answer["error"]

    # Stale (GitHub signs the push time into the body), malformed, no delivery id.
    assert receiver.post("/github", *github_delivery(*args, pushed_at=time.time() - 7200)
                         )[1]["error"].startswith("stale")
    for bad in (b"{not json", b"[]", b'{"ref": "refs/heads/main"}',
                json.dumps({"ref": "refs/heads/ma\u0000in", "before": before,
                            "after": after, "repository": {"clone_url": url}}).encode(),
                json.dumps({"ref": "refs/heads/main", "before": before, "after": "$(id)",
                            "repository": {"clone_url": url}}).encode()):
        status, answer = receiver.post("/github", bad, {
            "X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": _github_sign(bad)})
        assert status == 400, (bad, answer)
    body, headers = github_delivery(*args)
    no_id = {k: v for k, v in headers.items() if k != "X-GitHub-Delivery"}
    assert receiver.post("/github", body, no_id)[0] == 400
    assert receiver.post("/nowhere", body, headers)[0] == 404
    assert receiver.post("/github", body, {**headers, "Content-Type": "text/plain"})[0] == 415

    # A 50 MB body: 413 from its Content-Length, before the body is read.
    head = (b"POST /github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-GitHub-Event: push\r\nContent-Length: 52428800\r\n\r\n")
    answer, took = _raw_post(receiver.port, head, b"{" + b" " * 65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert took < 5

    # The first genuine delivery is taken; the same delivery again is a replay.
    status, answer = receiver.post("/github", body, headers)
    assert status == 202 and answer["pipelines"] == [name]
    status, answer = receiver.post("/github", body, headers)
    assert status == 409 and "replayed" in answer["error"]
    runs = wait_runs(dep.id, count + 1)
    assert_no_new_run(dep.id, count + 1)
    [run] = [r for r in runs if r.parameters.get("sha") == after]
    assert wait_final(run.id).state.is_completed()
    log = receiver.output() + signed.output()
    for secret in (GITHUB_SECRET, GITLAB_TOKEN, GITEA_SECRET, GITLAB_SIGNING):
        assert secret not in log
    assert "Traceback" not in log
