"""The serve fixtures of tests/deployments, shared with the browser tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "ansflow_tests_deployments_fixtures",
    Path(__file__).parent.parent / "deployments" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

serve = _fixtures.serve
deploy = _fixtures.deploy
unique = _fixtures.unique
