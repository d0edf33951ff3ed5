"""The Prefect UI in a real browser (Debian's chromium): a pipeline run paused at an
`approval` step, its page opened, the form's comment and release note filled in, approved;
the run then completes and a later step saw the answer."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flows"))
from test_approval_run import Background  # noqa: E402

pytestmark = pytest.mark.server

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def test_approve_from_the_form_on_the_paused_run(prefect_server, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    from playwright.sync_api import sync_playwright

    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent("""\
        pipeline:
          name: approval-ui
          steps:
            - id: gate
              type: approval
              config:
                message: Ship it?
                fields:
                  note: {description: Release note}
            - id: ship
              type: command
              needs: gate
              config:
                command: >-
                  printf '%s|%s' {{ steps.gate.outputs.comment }}
                  {{ steps.gate.outputs.note }} > shipped
        """), encoding="utf-8")
    run = Background(path)
    paused = run.paused_run()
    ui = os.environ["PREFECT_API_URL"].removesuffix("/api")
    shots = _artifacts_dir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                page.goto(f"{ui}/v2/runs/flow-run/{paused.id}")
                page.get_by_text("Paused").first.wait_for(timeout=30_000)
                page.locator("button.border-input").first.click()  # the run's menu
                page.get_by_role("menuitem", name="Resume").click(timeout=15_000)
                dialog = page.get_by_role("dialog")
                dialog.get_by_text("Ship it?").first.wait_for(timeout=15_000)
                dialog.get_by_label("Approve", exact=False).first.check()
                dialog.get_by_label("Comment", exact=False).first.fill("from the UI")
                dialog.get_by_label("Note", exact=False).first.fill("v2.0")
                page.screenshot(path=str(shots / "ui-approval-form.png"), full_page=True)
                dialog.get_by_role("button", name="Resume", exact=True).click()
                run.thread.join(120)  # the result is read outside playwright's event loop
            except Exception:
                page.screenshot(path=str(shots / "ui-approval-failed.png"), full_page=True)
                (shots / "ui-approval-failed.html").write_text(page.content())
                raise
        finally:
            browser.close()
    state, summary = run.result(timeout=5)
    assert state.is_completed(), state
    [gate] = [s for s in summary["steps"] if s["id"] == "gate"]
    assert gate["outputs"] == {"approved": "true", "comment": "from the UI", "note": "v2.0"}
    assert (tmp_path / "shipped").read_text() == "from the UI|v2.0"


def _artifacts_dir():
    root = Path(__file__).resolve().parents[2]
    folder = Path(os.environ.get("ANSFLOW_TEST_ARTIFACTS") or root / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
