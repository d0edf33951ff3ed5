"""What the cleanup tests create: flow runs that are over or still running on the suite's
server, and the labels that tie an object to a pipeline's run."""

from __future__ import annotations

from ansflow.upkeep.cleanup import PIPELINE_LABEL, RUN_LABEL


def finished_and_running_runs(n_done: int = 1):
    """Flow runs on the suite's server: `n_done` Completed ones and one Running."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Running

    @flow(name="ansflow-cleanup-test")
    def probe() -> None:
        pass

    with get_client(sync_client=True) as client:
        done = [str(client.create_flow_run(probe, state=Completed()).id) for _ in range(n_done)]
        running = str(client.create_flow_run(probe, state=Running()).id)
    return done, running


def run_labels(pipeline: str, run: str, **more: str) -> dict[str, str]:
    return {RUN_LABEL: run, PIPELINE_LABEL: pipeline, **more}
