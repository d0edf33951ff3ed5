"""`ansflow git-hook install`: pushes to a bare repository on disk start the served pipeline
at exactly the pushed commit, through the real post-receive hook and the suite's Prefect
server; pushes the filters do not select, and deletions, start nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fixtures_git import git, make_repo
from push_serving import (
    Served,
    assert_no_new_run,
    commit_local,
    outputs,
    pipeline_text,
    push,
    wait_final,
    wait_runs,
)

pytestmark = pytest.mark.server


def _ansflow(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ansflow.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture
def served_repo(prefect_server, tmp_path):
    """A bare repository with the hook installed and a served pipeline built from it."""
    repo = make_repo(tmp_path, "app", {"src/app.txt": "one", "README.md": "hi"})
    name = f"hook-{uuid.uuid4().hex[:8]}"
    file = tmp_path / "pipelines" / "ci.yaml"
    file.parent.mkdir()
    file.write_text(pipeline_text(name, str(repo.bare)))
    served = Served(file, tmp_path / "serve.log")
    try:
        dep = served.wait_ready(name)
        res = _ansflow("git-hook", "install", str(repo.bare))
        assert res.returncode == 0, res.stderr
        key = "file" + str(repo.bare).lower().removesuffix(".git")
        assert "installed" in res.stdout and f"for repository {key} " in res.stdout
        yield repo, dep, name
    finally:
        served.stop()


def test_pushes_through_the_hook_run_the_pipeline_at_exactly_the_pushed_commit(served_repo):
    repo, dep, name = served_repo
    # Ten commits pushed at once: one run, of the head commit.
    for i in range(10):
        head = commit_local(repo.work, {"src/app.txt": f"v{i}"}, f"commit {i}")
    said = push(repo.work, "HEAD:refs/heads/main")
    assert f"refs/heads/main {head[:12]}: starting {name}" in said, said
    [run] = wait_runs(dep.id, 1)
    assert run.parameters == {"ref": "refs/heads/main", "sha": head}
    # (Its commit leaves every branch with the force-push below: let it check out first.)
    assert wait_final(run.id).state.is_completed()

    # A push that changes no selected path, a branch no filter names: nothing starts.
    commit_local(repo.work, {"README.md": "docs only"}, "docs")
    said = push(repo.work, "HEAD:refs/heads/main")
    assert "no pipeline is started by this push" in said
    git("checkout", "-q", "-b", "feature", cwd=repo.work)
    commit_local(repo.work, {"src/app.txt": "feature"}, "feature work")
    assert "no pipeline is started" in push(repo.work, "HEAD:refs/heads/feature")
    assert_no_new_run(dep.id, 1)

    # A new branch matching release/*: its new commits' paths count.
    git("checkout", "-q", "-b", "release/1", "main", cwd=repo.work)
    release = commit_local(repo.work, {"src/app.txt": "release"}, "release work")
    assert f"starting {name}" in push(repo.work, "HEAD:refs/heads/release/1")
    # A force-push is just a new `after`.
    git("checkout", "-q", "main", cwd=repo.work)
    git("reset", "-q", "--hard", "HEAD~3", cwd=repo.work)
    forced = commit_local(repo.work, {"src/app.txt": "rewritten"}, "rewrite")
    assert f"starting {name}" in push(repo.work, "HEAD:refs/heads/main", force=True)
    # An annotated tag: the run checks out the tagged commit.
    git("tag", "-a", "v1.0", "-m", "one", cwd=repo.work)
    assert f"starting {name}" in push(repo.work, "refs/tags/v1.0")
    runs = wait_runs(dep.id, 4)
    by_ref = {r.parameters["ref"]: r for r in runs}
    assert by_ref["refs/heads/release/1"].parameters["sha"] == release
    assert by_ref["refs/tags/v1.0"].parameters["sha"] == forced
    shas = sorted(r.parameters["sha"] for r in runs if r.parameters["ref"] == "refs/heads/main")
    assert shas == sorted([head, forced])

    # Deleting a branch starts nothing.
    said = push(repo.work, ":refs/heads/release/1")
    assert "deleted: nothing started" in said
    assert_no_new_run(dep.id, 4)

    expected = {head: "v9", release: "release", forced: "rewritten"}
    for run in runs:
        final = wait_final(run.id)
        assert final.state.is_completed(), final.state
        out = outputs(run.id)
        assert out["head"] == run.parameters["sha"]
        assert out["file"] == expected[run.parameters["sha"]]


def test_changed_paths_of_new_branches_follow_github(tmp_path, monkeypatch):
    from ansflow.gitpush.hook import changed_paths

    repo = make_repo(tmp_path, "paths", {"a.txt": "1"})
    first = make_repo(tmp_path, "first", {"x/y.txt": "1", "z": "2"})
    root = git("rev-parse", "HEAD", cwd=first.work)
    base = git("rev-parse", "HEAD", cwd=repo.work)
    git("checkout", "-q", "-b", "topic", cwd=repo.work)
    commit_local(repo.work, {"b/one.txt": "1"}, "one")
    tip = commit_local(repo.work, {"b/two.txt": "2", "a.txt": "2"}, "two")
    git("push", "-q", "origin", "HEAD:refs/heads/topic", cwd=repo.work)
    git("push", "-q", "origin", f"{base}:refs/heads/same", cwd=repo.work)
    monkeypatch.chdir(repo.bare)
    monkeypatch.setenv("GIT_DIR", str(repo.bare))
    zero = "0" * 40
    # The first push of a repository: HEAD names the new branch itself; every path counts.
    monkeypatch.setenv("GIT_DIR", str(first.bare))
    assert changed_paths(zero, root, "refs/heads/main") == ["x/y.txt", "z"]
    monkeypatch.setenv("GIT_DIR", str(repo.bare))
    # New branch: against the parent of the deepest commit no other ref has.
    assert sorted(changed_paths(zero, tip, "refs/heads/topic")) == [
        "a.txt", "b/one.txt", "b/two.txt"]
    # New branch at a commit main already has: nothing changed.
    assert changed_paths(zero, base, "refs/heads/same") == []
    # Existing branch (force-push or not): the two commits compared directly.
    assert changed_paths(base, tip, "refs/heads/topic") == ["a.txt", "b/one.txt", "b/two.txt"]
    # An unknown old commit: git cannot tell, so the path filter passes (None).
    assert changed_paths("1" * 40, tip, "refs/heads/topic") is None


def test_install_refusals_and_a_hostile_repository_url_stays_data(prefect_server, tmp_path):
    repo = make_repo(tmp_path, "h", {"a": "1"})
    res = _ansflow("git-hook", "install", str(repo.work))
    assert res.returncode == 1 and "not a bare git repository" in res.stderr
    assert "Traceback" not in res.stderr
    res = _ansflow("git-hook", "install", str(repo.bare), env={"PREFECT_API_URL": ""})
    assert res.returncode == 1 and "--api-url" in res.stderr
    hook = repo.bare / "hooks" / "post-receive"
    hook.write_text("#!/bin/sh\necho mine\n")
    res = _ansflow("git-hook", "install", str(repo.bare))
    assert res.returncode == 1 and "not ansflow's hook" in res.stderr
    assert hook.read_text() == "#!/bin/sh\necho mine\n"
    marker = tmp_path / "pwned"
    hostile = f"https://x.example/a'$(touch${{IFS}}{marker})'`touch${{IFS}}{marker}`;.git"
    res = _ansflow("git-hook", "install", str(repo.bare), "--force", "--repository", hostile)
    assert res.returncode == 0, res.stderr
    proc = subprocess.run([str(hook)], input=f"{'0' * 40} {'1' * 40} refs/heads/main\n",
                          capture_output=True, text=True, cwd=repo.bare, timeout=60,
                          env={**os.environ, "GIT_DIR": str(repo.bare)})
    assert not marker.exists()
    assert "ansflow:" in proc.stderr and "Traceback" not in proc.stderr
    res = _ansflow("git-hook", "install", str(repo.bare), "--repository", "a\nb")
    assert res.returncode == 1 and "one printable line" in res.stderr


def test_hook_without_a_reachable_server_says_so_in_one_line(tmp_path):
    repo = make_repo(tmp_path, "down", {"a": "1"})
    from ansflow.cli.git_hook import hook_script

    hook = Path(repo.bare / "hooks" / "post-receive")
    hook.write_text(hook_script(str(repo.bare), "http://127.0.0.1:9/api", sys.executable))
    hook.chmod(0o755)
    commit_local(repo.work, {"src/app.txt": "x"}, "x")
    said = push(repo.work, "HEAD:refs/heads/main")
    lines = [line for line in said.splitlines() if "ansflow:" in line]
    assert len(lines) == 1 and "no push event sent" in lines[0], said
