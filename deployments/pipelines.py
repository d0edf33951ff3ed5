"""The Python equivalent of deployments/prefect.yaml: pipeline files as work-pool deployments.

    python -m ansflow.deployments.pipelines --pool ansflow examples/demo/pipeline.yaml

Each file becomes a deployment of the pipeline flow (`ansflow-pipeline/<pipeline name>`) with
the file's name and its variables' defaults as parameters, the file's folder as the pipelines
root a run's `pipeline_file` must stay under (job variable env ANSFLOW_PIPELINES_ROOT), a
module-path entrypoint (the package is installed on the workers) and the pipeline's
schedule, active.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ansflow.errors import AnsflowError


def pipeline_deployments(files: list[str]) -> list:
    """One RunnerDeployment of the pipeline flow per valid file. Raises AnsflowError."""
    from prefect.deployments.runner import EntrypointType  # noqa: PLC0415
    from prefect.schedules import Cron  # noqa: PLC0415

    from ansflow.flows.pipeline import pipeline_flow  # noqa: PLC0415
    from ansflow.spec.validate import load_plan  # noqa: PLC0415

    deployments = []
    for file in files:
        plan = load_plan(file)
        schedules = [Cron(plan.schedule["cron"], timezone=plan.schedule.get("timezone") or "UTC")
                     ] if plan.schedule else None
        deployments.append(pipeline_flow.to_deployment(
            name=plan.name,
            description=plan.description or f"Pipeline {plan.name!r}",
            tags=["ansflow"],
            parameters={"pipeline_file": Path(file).resolve().name,
                        "variables": plan.variable_defaults()},
            # The root a run's pipeline_file must stay under: the deployment's, not the
            # run form's (ansflow.paths.confine_pipeline_file).
            job_variables={"env": {"ANSFLOW_PIPELINES_ROOT": str(Path(file).resolve().parent)}},
            schedules=schedules,
            entrypoint_type=EntrypointType.MODULE_PATH,
        ))
    return deployments


def deploy_pipelines(files: list[str], pool: str) -> list:
    """Register the deployments of ``files`` on work pool ``pool``; returns their ids."""
    from prefect import deploy  # noqa: PLC0415

    return deploy(*pipeline_deployments(files), work_pool_name=pool, build=False, push=False,
                  print_next_steps_message=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", required=True, help="work pool name")
    parser.add_argument("files", nargs="+", help="pipeline files")
    args = parser.parse_args(argv)
    try:
        ids = deploy_pipelines(args.files, args.pool)
    except AnsflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(ids)} deployment(s) on work pool {args.pool!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
