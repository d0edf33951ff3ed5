"""Pipelines with a git `source:` run for real: in-process flow runs on the suite's Prefect
server, checking out from git http-backend (a token block) into each run's workspace."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest
from fixtures_git import git
from fixtures_pipeline import by_id, logs, task_runs


@pytest.fixture
def token_block(git_http, prefect_server) -> str:
    from ansflow.blocks.git import GitCredentials

    name = f"git-token-{uuid.uuid4().hex[:8]}"
    GitCredentials(username=git_http.user, token=git_http.token).save(name)
    return name


@pytest.fixture
def per_run(prefect_server, monkeypatch, tmp_path):
    root = tmp_path / "workspaces"
    monkeypatch.setenv("ANSFLOW_WORKSPACE_MODE", "in-place")  # a source ignores it
    monkeypatch.setenv("ANSFLOW_WORKSPACES", str(root))
    return root


def _run(tmp_path: Path, text: str, **parameters):
    from ansflow.flows.pipeline import pipeline_flow

    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    path = folder / "pipeline.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    state = pipeline_flow(str(path), None, return_state=True, **parameters)
    return state, state.result(raise_on_failure=False)


def _pipeline(name: str, url: str, block: str, ref: str = "main", extra: str = "") -> str:
    return f"""\
        pipeline:
          name: {name}
          source: {{git: "{url}", ref: {ref}, credentials: {block}}}
          steps:
            - id: look
              type: command
              config:
                command: >-
                  echo "sha={{{{ git.sha }}}}" >> "$ANSFLOW_OUTPUT" &&
                  echo "short={{{{ git.short_sha }}}}" >> "$ANSFLOW_OUTPUT" &&
                  echo "ref={{{{ git.ref }}}}" >> "$ANSFLOW_OUTPUT" &&
                  echo "branch={{{{ git.branch }}}}" >> "$ANSFLOW_OUTPUT" &&
                  echo "tag={{{{ git.tag }}}}" >> "$ANSFLOW_OUTPUT" &&
                  echo "author={{{{ git.author }}}}" >> "$ANSFLOW_OUTPUT" &&
                  echo "repo={{{{ git.repository }}}}" >> "$ANSFLOW_OUTPUT" &&
                  echo "env_sha=$ANSFLOW_GIT_SHA" >> "$ANSFLOW_OUTPUT" &&
                  echo "file=$(cat app.txt)" >> "$ANSFLOW_OUTPUT" &&
                  echo "head=$(git rev-parse HEAD)" >> "$ANSFLOW_OUTPUT" &&
                  echo "where=$(pwd -P)" >> "$ANSFLOW_OUTPUT" &&
                  cat .git/config
{textwrap.indent(textwrap.dedent(extra), ' ' * 12)}
        """


def _flow_run(run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def test_a_run_checks_out_the_ref_and_templates_see_the_commit(git_http, new_repo,
                                                                 token_block, per_run, tmp_path):
    repo = new_repo({"app.txt": "v1"}, "first")
    head = repo.commit({"app.txt": "v2"}, "second")
    name = f"git-{uuid.uuid4().hex[:6]}"
    state, summary = _run(tmp_path, _pipeline(name, git_http.url(repo.bare.stem), token_block))
    assert state.is_completed(), summary
    out = by_id(summary)["look"]["outputs"]
    assert out["sha"] == out["env_sha"] == out["head"] == head
    assert out["short"] == head[:7] and out["branch"] == "main" and out["tag"] == ""
    assert out["ref"] == "refs/heads/main" and out["file"] == "v2"
    assert out["author"] == "Ada Tester <ada@example.test>"
    assert out["repo"] == git_http.url(repo.bare.stem)
    assert out["where"] == str(per_run.resolve() / summary["run_id"] / "workspace")
    assert summary["git"]["sha"] == head and summary["git"]["message"] == "second"
    run = _flow_run(summary["run_id"])
    assert run.name == f"{name} #{summary['build_number']} main@{head[:7]}"
    lines = logs(summary["run_id"], "[remote \"origin\"]")
    assert any(f"url = {git_http.url(repo.bare.stem)}" in line for line in lines)
    assert all(git_http.token not in line for line in lines)
    assert any(f"checked out {head[:7]}" in line for line in lines)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[summary["run_id"]])))
    markdown = next(a.data for a in artifacts if a.type == "markdown")
    assert f"- commit: `{head}`" in markdown and "- ref: main" in markdown
    from fixtures_pipeline import server_events

    [event] = server_events("ansflow.pipeline.completed", f"ansflow.pipeline.{name}")
    assert event["payload"]["git"] == {"sha": head, "ref": "refs/heads/main",
                                       "repository": git_http.url(repo.bare.stem)}


def test_the_run_ref_and_an_exact_sha(git_http, new_repo, token_block, per_run, tmp_path):
    repo = new_repo({"app.txt": "main"}, "on main")
    first = repo.commit({"app.txt": "feature 1"}, "feature one", branch="feature/x")
    repo.commit({"app.txt": "feature 2"}, "feature two", branch="feature/x")
    tagged = repo.tag("v1.0")
    url = git_http.url(repo.bare.stem)
    name = f"git-{uuid.uuid4().hex[:6]}"
    state, summary = _run(tmp_path, _pipeline(name, url, token_block), ref="feature/x")
    assert state.is_completed(), summary
    out = by_id(summary)["look"]["outputs"]
    assert out["file"] == "feature 2" and out["branch"] == "feature/x"
    # As a push trigger passes it: the ref it came from and the exact commit.
    state, summary = _run(tmp_path, _pipeline(name, url, token_block),
                          ref="refs/heads/feature/x", sha=first)
    assert state.is_completed(), summary
    out = by_id(summary)["look"]["outputs"]
    assert out["head"] == out["sha"] == first and out["file"] == "feature 1"
    assert out["branch"] == "feature/x"
    state, summary = _run(tmp_path, _pipeline(name, url, token_block), ref="v1.0")
    out = by_id(summary)["look"]["outputs"]
    assert out["tag"] == "v1.0" and out["sha"] == tagged and out["branch"] == ""
    assert _flow_run(summary["run_id"]).name.endswith(f" v1.0@{tagged[:7]}")


def test_a_ref_that_does_not_exist_fails_before_any_step(git_http, new_repo, token_block,
                                                         per_run, tmp_path):
    repo = new_repo({"app.txt": "x"})
    repo.commit({"b": "1"}, "dev", branch="develop")
    name = f"git-{uuid.uuid4().hex[:6]}"
    text = _pipeline(name, git_http.url(repo.bare.stem), token_block)
    state, _ = _run(tmp_path, text, ref="devlop")
    assert state.is_failed()
    assert "'devlop' does not exist" in state.message
    assert "closest refs: develop" in state.message
    assert not per_run.exists() or list(per_run.iterdir()) == []  # no workspace was made
    assert task_runs(state.state_details.flow_run_id) == []  # no step ran


@pytest.mark.parametrize("ref, sha, said", [
    ("$(touch /tmp/ansflow-ref-pwned)", None, "the run parameter `ref`"),
    ("{{ secrets.x }}", None, "the run parameter `ref`"),
    ("--upload-pack=touch /tmp/x", None, "starts with '-'"),
    ("main", "abc", "must be a full commit SHA"),
    ("main", "g" * 40, "must be a full commit SHA"),
    ("x" * 5000, None, "longer than 1024"),
    ("ma\x00in", None, "the run parameter `ref`"),
])
def test_hostile_run_refs_refused(git_http, new_repo, token_block, per_run, tmp_path, ref, sha,
                                  said):
    repo = new_repo()
    text = _pipeline(f"git-{uuid.uuid4().hex[:6]}", git_http.url(repo.bare.stem), token_block)
    state, _ = _run(tmp_path, text, ref=ref, sha=sha)
    assert state.is_failed() and said in state.message
    assert len(state.message) < 600
    assert not Path("/tmp/ansflow-ref-pwned").exists()


HOSTILE = ("Fix {{ secrets.token }} {% raw %}\n\n$(touch /tmp/ansflow-msg-pwned) `id` ${HOME} "
           "'quote\" \\\n\x1b[31mred\x1b[0m; rm -rf /nonexistent #")


def test_a_hostile_commit_message_is_data(git_http, new_repo, token_block, per_run, tmp_path):
    repo = new_repo({"app.txt": "x"}, HOSTILE)
    name = f"git-{uuid.uuid4().hex[:6]}"
    text = f"""\
        pipeline:
          name: {name}
          source: {{git: "{git_http.url(repo.bare.stem)}", credentials: {token_block}}}
          steps:
            - id: say
              type: command
              config:
                command: printf '%s' {{{{ git.message }}}} > "{tmp_path}/msg.txt"
            - id: author
              type: command
              config:
                command: >-
                  echo "a={{{{ git.author }}}}" >> "$ANSFLOW_OUTPUT" &&
                  echo "m={{{{ git.message | length }}}}" >> "$ANSFLOW_OUTPUT"
        """
    state, summary = _run(tmp_path, text)
    assert state.is_completed(), summary
    expected = HOSTILE.replace("\x1b[31m", "").replace("\x1b[0m", "")
    # The message arrives as one shell word: nothing in it was run or rendered.
    assert (tmp_path / "msg.txt").read_text() == expected
    assert by_id(summary)["author"]["outputs"]["a"] == "Ada Tester <ada@example.test>"
    assert by_id(summary)["author"]["outputs"]["m"] == str(len(expected))
    assert not Path("/tmp/ansflow-msg-pwned").exists()
    lines = logs(summary["run_id"], "checked out")
    assert all("\x1b" not in line for line in lines)
    assert summary["git"]["message"] == expected


def test_no_source_refuses_ref(per_run, tmp_path, prefect_server):
    state, _ = _run(tmp_path, """\
        pipeline:
          name: plain
          steps:
            - {id: a, type: command, config: {command: "true"}}
        """, ref="main")
    assert state.is_failed() and "has no `source:`" in state.message


def test_a_deployment_level_source(git_http, new_repo, token_block, per_run, tmp_path):
    repo = new_repo({"app.txt": "from the deployment's source"})
    state, summary = _run(tmp_path, """\
        pipeline:
          name: plain-with-default
          steps:
            - id: a
              type: command
              config:
                command: 'echo "file=$(cat app.txt) sha={{ git.short_sha }}" >> "$ANSFLOW_OUTPUT"'
        """, source={"git": git_http.url(repo.bare.stem), "credentials": token_block})
    assert state.is_completed(), summary
    head = git("rev-parse", "HEAD", cwd=repo.work)
    assert by_id(summary)["a"]["outputs"]["file"] == f"from the deployment's source sha={head[:7]}"
    state, _ = _run(tmp_path, """\
        pipeline:
          name: plain-with-default
          steps:
            - {id: a, type: command, config: {command: "true"}}
        """, source={"git": "https://u:p@example.com/x.git"})
    assert state.is_failed() and "the run parameter `source`" in state.message
    assert "u:p" not in state.message


def test_wrong_token_fails_before_any_step(git_http, new_repo, per_run, tmp_path,
                                           prefect_server):
    from ansflow.blocks.git import GitCredentials

    name = f"git-wrong-{uuid.uuid4().hex[:8]}"
    GitCredentials(username="ci", token="wrong-token-value").save(name)
    repo = new_repo()
    state, _ = _run(tmp_path, _pipeline(f"git-{uuid.uuid4().hex[:6]}",
                                        git_http.url(repo.bare.stem), name))
    assert state.is_failed() and "refused the credentials" in state.message
    assert "wrong-token-value" not in state.message
    state, _ = _run(tmp_path, _pipeline(f"git-{uuid.uuid4().hex[:6]}",
                                        git_http.url(repo.bare.stem), "no-such-block"))
    assert state.is_failed() and "no GitCredentials block named 'no-such-block'" in state.message


def test_an_ssh_key_block(sshd, git_root, per_run, tmp_path, prefect_server):
    from fixtures_git import make_repo, ssh_url
    from fixtures_ssh import other_key

    from ansflow.blocks.git import GitCredentials

    repo = make_repo(git_root, f"sshflow{uuid.uuid4().hex[:6]}", {"app.txt": "over ssh"})
    good = f"git-ssh-{uuid.uuid4().hex[:8]}"
    GitCredentials(private_key=sshd.key.read_text(), known_host_keys=[sshd.host_key]).save(good)
    url = ssh_url(sshd, repo)
    state, summary = _run(tmp_path, _pipeline(f"git-{uuid.uuid4().hex[:6]}", url, good))
    assert state.is_completed(), summary
    out = by_id(summary)["look"]["outputs"]
    assert out["file"] == "over ssh" and out["repo"] == url
    lines = logs(summary["run_id"], "[remote \"origin\"]")
    assert all("PRIVATE KEY" not in line for line in lines)
    # A server whose key is not the pinned one: refused before any step.
    wrong = f"git-ssh-wrong-{uuid.uuid4().hex[:8]}"
    GitCredentials(private_key=sshd.key.read_text(),
                   known_host_keys=[Path(str(other_key(tmp_path)) + ".pub").read_text()]
                   ).save(wrong)
    state, _ = _run(tmp_path, _pipeline(f"git-{uuid.uuid4().hex[:6]}", url, wrong))
    assert state.is_failed() and "not the pinned one" in state.message
    assert task_runs(state.state_details.flow_run_id) == []


def test_a_retry_builds_the_commit_its_kept_workspace_holds(git_http, new_repo, token_block,
                                                            per_run, tmp_path, monkeypatch):
    import json
    import os
    import subprocess
    import sys

    monkeypatch.setenv("ANSFLOW_WORKSPACE_KEEP", "1h")
    repo = new_repo({"app.txt": "first"}, "first")
    first = git("rev-parse", "HEAD", cwd=repo.work)
    name = f"git-retry-{uuid.uuid4().hex[:6]}"
    text = f"""\
        pipeline:
          name: {name}
          source: {{git: "{git_http.url(repo.bare.stem)}", ref: main, credentials: {token_block}}}
          steps:
            - id: check
              type: command
              config:
                command: >-
                  test -f ok-now &&
                  echo "sha={{{{ git.sha }}}} file=$(cat app.txt)" >> "$ANSFLOW_OUTPUT"
        """
    state, summary = _run(tmp_path, text)
    assert state.is_failed()
    run_id = summary["run_id"]
    ws = per_run / run_id / "workspace"
    (ws / "ok-now").touch()  # the fix, made in the kept checkout
    second = repo.commit({"app.txt": "second"}, "main moved on")
    out = subprocess.run([sys.executable, "-m", "ansflow.cli", "retry", run_id, "--json"],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert out.returncode == 0, out.stdout + out.stderr
    again = json.loads(out.stdout)
    assert again["state"] == "completed" and again["workspace"]["reused"] is True
    assert by_id(again)["check"]["outputs"] == {"sha": f"{first} file=first"}
    assert again["git"]["sha"] == first != second
    assert _flow_run(run_id).name.endswith(f" main@{first[:7]}")


def test_the_block_type_and_its_refusals(prefect_server):
    from prefect.client.orchestration import get_client
    from pydantic import ValidationError

    from ansflow.blocks.git import GitCredentials

    GitCredentials(username="u", token="t").save(f"git-reg-{uuid.uuid4().hex[:8]}")
    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug("ansflow-git-credentials")
        schema = client.get_most_recent_block_schema_for_block_type(block_type.id)
    assert block_type.name == "Ansflow Git Credentials" and block_type.logo_url
    assert "GitCredentials(" in (block_type.code_example or "")
    props = schema.fields["properties"]
    assert set(props) == {"username", "token", "private_key", "passphrase", "known_host_keys"}
    assert all(p.get("description") for p in props.values())
    assert set(schema.fields["secret_fields"]) == {"token", "private_key", "passphrase"}
    import ansflow.blocks

    assert "git" in dir(ansflow.blocks)  # what the prefect.collections entry point imports
    for values, said in (
            (dict(username="u", token="hunter2\nx"), "line break"),
            (dict(token="hunter2", private_key="k"), "not both"),
            (dict(private_key="hunter2-key"), "known_host_keys"),
            (dict(private_key="hunter2-key", known_host_keys=["ssh-ed25519 AAAA"]), "not readable"),
            ({}, "give a token")):
        with pytest.raises(ValidationError) as info:
            GitCredentials(**values)
        assert said in str(info.value) and "hunter2" not in str(info.value)


def test_ansflow_run_ref_and_sha(git_http, new_repo, token_block, tmp_path, prefect_server):
    import json
    import os
    import subprocess
    import sys

    repo = new_repo({"app.txt": "main"}, "on main")
    dev = repo.commit({"app.txt": "develop"}, "on develop", branch="develop")
    folder = tmp_path / "cli"
    folder.mkdir()
    file = folder / "pipeline.yaml"
    file.write_text(textwrap.dedent(_pipeline(f"git-cli-{uuid.uuid4().hex[:6]}",
                                              git_http.url(repo.bare.stem), token_block)))
    env = {**os.environ, "ANSFLOW_WORKSPACES": str(tmp_path / "ws")}

    def ansflow(*args: str):
        return subprocess.run([sys.executable, "-m", "ansflow.cli", "run", str(file), *args],
                              capture_output=True, text=True, timeout=300, env=env)

    out = ansflow("--ref", "develop", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    assert summary["git"]["sha"] == dev and summary["git"]["branch"] == "develop"
    out = ansflow("--ref", "$(touch /tmp/ansflow-cli-pwned)", "--json")
    assert out.returncode != 0 and "the run parameter `ref`" in out.stdout + out.stderr
    assert not Path("/tmp/ansflow-cli-pwned").exists()
    out = ansflow("--ref", "develo", "--json")
    assert out.returncode != 0 and "closest refs: develop" in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
