"""A served pipeline with a git source: its run form has `ref` (the source's ref as the
default) and `sha`; a run started with another ref builds that ref, a ref that does not exist
fails before any step naming the closest refs. A real `ansflow serve` process; runs started
through the API, and one from the Prefect UI's run form in a real browser (chromium)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from ansflow.store import Store


@pytest.fixture
def served(prefect_server, tmp_path, git_http):
    procs: list[subprocess.Popen] = []

    def start(file) -> subprocess.Popen:
        env = {**os.environ, "ANSFLOW_WORKSPACE_MODE": "per-run",
               "ANSFLOW_WORKSPACES": str(tmp_path / "workspaces")}
        log = (tmp_path / f"serve-{len(procs)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "ansflow.cli", "serve", str(file)],
                                env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _deployment(name: str, log, timeout: float = 120):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            try:
                return client.read_deployment_by_name(f"ansflow-pipeline/{name}")
            except ObjectNotFound:
                time.sleep(0.5)
    raise AssertionError(f"not served:\n{log.read_text()}")


def _summary(run_id) -> dict:
    from sqlalchemy import text

    store = Store()
    try:
        with store.engine.connect() as conn:
            row = conn.execute(text("SELECT summary FROM ansflow_runs WHERE run_id = :r"),
                               {"r": str(run_id)}).first()
    finally:
        store.close()
    assert row is not None and row[0]
    return json.loads(row[0])


def test_the_run_form_ref_builds_any_branch_tag_or_commit(served, git_http, new_repo, tmp_path,
                                                         prefect_server):
    from prefect.deployments import run_deployment

    from ansflow.blocks.git import GitCredentials

    block = f"git-served-{uuid.uuid4().hex[:8]}"
    GitCredentials(username=git_http.user, token=git_http.token).save(block)
    repo = new_repo({"app.txt": "main 1"}, "main one")
    feature = repo.commit({"app.txt": "feature"}, "feature work", branch="feature")
    older = repo.commit({"app.txt": "main 2"}, "main two", branch="main")
    newest = repo.commit({"app.txt": "main 3"}, "main three", branch="main")
    name = f"served-git-{uuid.uuid4().hex[:6]}"
    file = tmp_path / "pipelines" / "ci.yaml"
    file.parent.mkdir()
    file.write_text(textwrap.dedent(f"""\
        pipeline:
          name: {name}
          source: {{git: "{git_http.url(repo.bare.stem)}", ref: main, credentials: {block}}}
          variables:
            greeting: hello
          steps:
            - id: build
              type: command
              config:
                command: >-
                  echo "file=$(cat app.txt)" >> "$ANSFLOW_OUTPUT" &&
                  echo "branch={{{{ git.branch }}}} sha={{{{ git.sha }}}}" >> "$ANSFLOW_OUTPUT"
        """))
    proc = served(file)
    dep = _deployment(name, tmp_path / "serve-0.log")
    props = dep.parameter_openapi_schema["properties"]
    assert props["ref"]["default"] == "main" and props["ref"]["type"] == "string"
    assert "sha" in props and props["greeting"]["default"] == "hello"
    assert proc.poll() is None

    def run(parameters):
        flow_run = run_deployment(f"ansflow-pipeline/{name}", parameters=parameters,
                                  timeout=240, poll_interval=0.5)
        return flow_run

    default = run({})
    assert default.state.is_completed(), default.state
    out = {s["id"]: s for s in _summary(default.id)["steps"]}["build"]["outputs"]
    assert out == {"file": "main 3", "branch": f"main sha={newest}"}
    assert default.name.endswith(f" main@{newest[:7]}")

    other = run({"ref": "feature"})
    assert other.state.is_completed(), other.state
    out = {s["id"]: s for s in _summary(other.id)["steps"]}["build"]["outputs"]
    assert out["file"] == "feature" and out["branch"] == f"feature sha={feature}"

    exact = run({"ref": "refs/heads/main", "sha": older})  # as a push trigger passes it
    assert exact.state.is_completed(), exact.state
    assert _summary(exact.id)["git"]["sha"] == older

    missing = run({"ref": "featur"})
    assert missing.state.is_failed()
    assert "closest refs: feature" in missing.state.message
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        steps = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[missing.id])))
    assert steps == []  # it failed before any step


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def _runs_of(deployment_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[deployment_id])))


def _final(run_id, timeout: float = 300):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish: {run.state}")


def _open(page, url: str, wanted, tmp_path) -> None:
    """Load ``url`` until ``wanted`` shows (a busy server can fail the page's first requests);
    the page's text and a screenshot when it never does."""
    for attempt in range(3):
        page.goto(url)
        try:
            wanted.wait_for(timeout=60_000)
            return
        except Exception:
            if attempt == 2:
                page.screenshot(path=str(tmp_path / "ui-failure.png"), full_page=True)
                text = page.locator("body").inner_text()[:1500]
                raise AssertionError(f"{url} never showed what was wanted; the page shows: "
                                     f"{text!r}") from None


def test_a_branch_typed_into_the_run_form(served, git_http, new_repo, tmp_path, prefect_server):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    from playwright.sync_api import sync_playwright

    from ansflow.blocks.git import GitCredentials

    block = f"git-ui-{uuid.uuid4().hex[:8]}"
    GitCredentials(username=git_http.user, token=git_http.token).save(block)
    repo = new_repo({"app.txt": "main"}, "main")
    feature = repo.commit({"app.txt": "from the feature branch"}, "feature", branch="feature/ui")
    name = f"ui-git-{uuid.uuid4().hex[:6]}"
    file = tmp_path / "pipelines" / "ci.yaml"
    file.parent.mkdir()
    file.write_text(textwrap.dedent(f"""\
        pipeline:
          name: {name}
          source: {{git: "{git_http.url(repo.bare.stem)}", ref: main, credentials: {block}}}
          steps:
            - id: build
              type: command
              config:
                command: echo "file=$(cat app.txt)" >> "$ANSFLOW_OUTPUT"
        """))
    served(file)
    dep = _deployment(name, tmp_path / "serve-0.log")
    ui = os.environ["PREFECT_API_URL"].removesuffix("/api")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _open(page, f"{ui}/v2/deployments/deployment/{dep.id}",
                  page.get_by_role("button", name="Run", exact=True), tmp_path)
            page.get_by_role("button", name="Run", exact=True).click(timeout=60_000)
            page.get_by_role("menuitem", name="Custom run").click(timeout=30_000)
            field = page.get_by_label("ref (Optional)", exact=True)
            field.wait_for(timeout=60_000)
            assert field.input_value() == "main"  # the deployment's default
            field.fill("feature/ui")
            page.get_by_role("button", name="Submit").click(timeout=30_000)
            deadline = time.monotonic() + 90
            while not _runs_of(dep.id) and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            browser.close()
    [run] = _runs_of(dep.id)
    run = _final(run.id)
    assert run.state.is_completed(), run.state
    assert run.parameters.get("ref") == "feature/ui"
    assert run.name.endswith(f" feature/ui@{feature[:7]}")
    steps = {s["id"]: s for s in _summary(run.id)["steps"]}
    assert steps["build"]["outputs"] == {"file": "from the feature branch"}
