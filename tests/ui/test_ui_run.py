"""The Prefect UI in a real browser (Debian's chromium): a pipeline run from the run form."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.server

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def artifacts_dir() -> Path:
    """Screenshots go outside git: $ANSFLOW_TEST_ARTIFACTS or the repo's test-artifacts/."""
    folder = Path(os.environ.get("ANSFLOW_TEST_ARTIFACTS")
                  or Path(__file__).resolve().parents[2] / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_run_form_in_the_prefect_ui_runs_the_pipeline_with_a_variable_to_completed(
        serve, deploy, tmp_path, unique):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    from playwright.sync_api import sync_playwright
    from prefect.client.orchestration import get_client

    (tmp_path / "p.yaml").write_text(deploy.pipeline_text(unique))
    proc = serve(str(tmp_path / "p.yaml"))
    dep = deploy.wait_for_deployment(unique, proc=proc)
    deploy.wait_for_runner(proc)
    ui = os.environ["PREFECT_API_URL"].removesuffix("/api")
    shots = artifacts_dir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{ui}/v2/deployments/deployment/{dep.id}")
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Custom run").click()
            field = page.get_by_label("greeting")
            field.fill("typed in the browser")
            page.screenshot(path=str(shots / "ui-run-form.png"))
            page.get_by_role("button", name="Submit").click()
            try:  # the toast's link; on a busy machine the toast can be gone before we look
                page.get_by_role("button", name="View run").click(timeout=15_000)
                page.wait_for_url("**/runs/flow-run/**")
            except Exception:
                page.goto(f"{ui}/runs/flow-run/{_run_of(dep.id)}")
            run_id = page.url.split("/runs/flow-run/")[1].split("?")[0]
            run = deploy.wait_final(run_id, timeout=120)
            assert run.state.is_completed(), run.state
            assert run.parameters == {"greeting": "typed in the browser", "count": 2}
            deadline = time.monotonic() + 30
            while True:  # the page shows the final state and the step's output
                page.reload()
                try:
                    page.get_by_text(f"{unique} #").first.wait_for(timeout=10_000)
                    page.get_by_text("typed in the browser x2").first.wait_for(timeout=10_000)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
            assert page.get_by_text("Completed").first.is_visible()
            time.sleep(0.5)
            page.screenshot(path=str(shots / "ui-run.png"))
        finally:
            browser.close()
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id).name.startswith(f"{unique} #")
    assert (shots / "ui-run.png").stat().st_size > 10_000


def _run_of(deployment_id) -> str:
    """The id of the one flow run the form created for ``deployment_id`` (via the API)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[deployment_id])))
        if runs or time.monotonic() > deadline:
            assert len(runs) == 1, f"expected the form to create one run, found {len(runs)}"
            return str(runs[0].id)
        time.sleep(0.5)
