"""The serve fixtures of tests/deployments, shared with the browser tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "ansflow_tests_deployments_fixtures",
    Path(__file__).parent.parent / "deployments" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

serve = _fixtures.serve
deploy = _fixtures.deploy
unique = _fixtures.unique


@pytest.fixture
def submit_run_form():
    """``submit_run_form(page, find_runs, what)``: see ``_submit_run_form``."""
    return _submit_run_form


def _submit_run_form(page, find_runs, what: str, *, tries: int = 3, wait: float = 45.0):
    """Click the run form's Submit and return ``find_runs()`` once it finds the run.

    On a busy server the form's own requests (the parameters' validation, then the run's
    creation) can fail or time out, and the UI then creates nothing: the form is submitted
    again (``tries`` times at most) while it still shows, and never once a run exists, so a
    slow first submit does not make a second run. What the page showed after each try is in
    the error."""
    import time

    seen = []
    for _ in range(tries):
        button = page.get_by_role("button", name="Submit")
        button.click(timeout=30_000)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            runs = find_runs()
            if runs:
                return runs
            time.sleep(0.5)
        seen.append(page.locator("body").inner_text()[:600])
        if not (button.is_visible() and button.is_enabled()):
            break
    raise AssertionError(f"timed out waiting for {what} after {len(seen)} submit(s); "
                         f"the page showed: {seen!r}")
