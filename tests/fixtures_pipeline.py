"""Pipeline runs against the suite's Prefect server: the `run_pipeline` fixture, `by_id`."""

import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def run_pipeline(prefect_server, tmp_path):
    """Write a pipeline file in a temp workspace and run it in-process; returns the summary."""
    from ansflow.flows.pipeline import pipeline_flow

    def run(text: str, variables: dict | None = None, name: str = "pipeline.yaml"):
        path = Path(tmp_path, name)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        state = pipeline_flow(str(path), variables, return_state=True)
        summary = state.result(raise_on_failure=False)
        return state, summary

    return run


def by_id(summary: dict) -> dict:
    """A run summary's steps by id."""
    return {s["id"]: s for s in summary["steps"]}
