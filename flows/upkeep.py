"""The upkeep deployments `ansflow serve --upkeep` serves: sync, health and cleanup on cron.

A registry: each entry names its deployment, the flow (``module:attribute``, imported only
when served, so an entry whose module is not installed is skipped with a log line), its
default cron schedule, the environment variable that overrides it and its parameters. Every
deployment has a concurrency limit of one that cancels a new run while the previous one is
still going (Prefect's ``CANCEL_NEW`` collision strategy), so a slow sync never piles up.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from ansflow.errors import UsageError

TAGS = ["ansflow", "ansflow-upkeep"]
log = logging.getLogger("ansflow.upkeep")


@dataclass(frozen=True)
class UpkeepJob:
    """One scheduled upkeep deployment."""

    name: str  # the deployment's name
    flow: str  # "module:attribute" of the flow
    cron: str  # the default schedule (UTC)
    cron_env: str  # the environment variable that overrides it
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)


UPKEEP: dict[str, UpkeepJob] = {job.name: job for job in (
    UpkeepJob("ansflow-sync", "ansflow.flows.sync:sync", "*/5 * * * *",
              "ANSFLOW_SYNC_CRON", "Sync the inventory of every saved cluster."),
    UpkeepJob("ansflow-health", "ansflow.flows.health:health", "* * * * *",
              "ANSFLOW_HEALTH_CRON", "Check the health of every saved cluster."),
    UpkeepJob("ansflow-cleanup", "ansflow.flows.cleanup:cleanup_flow", "0 * * * *",
              "ANSFLOW_CLEANUP_CRON", "Remove what finished pipeline runs left behind."),
)}


def check_cron(name: str, cron: str) -> str:
    """``cron`` if Prefect accepts it as a schedule, else a UsageError naming the job."""
    from prefect.client.schemas.schedules import CronSchedule  # noqa: PLC0415

    try:
        CronSchedule(cron=cron, timezone="UTC")
    except ValueError:
        raise UsageError(f"{name}: {cron[:80]!r} is not a cron schedule (five fields, e.g. "
                         "'*/5 * * * *')") from None
    return cron


def schedules(overrides: dict[str, str | None] | None = None) -> dict[str, str]:
    """Each job's cron: an override given, else its environment variable, else the default.

    Raises:
        UsageError: a schedule that is not a cron expression.
    """
    out = {}
    for name, job in UPKEEP.items():
        given = (overrides or {}).get(name) or os.environ.get(job.cron_env, "").strip()
        out[name] = check_cron(name, given or job.cron)
    return out


def load_flow(job: UpkeepJob) -> Any | None:
    """The job's flow, or None (logged) when its module or attribute is not installed."""
    module_name, _, attribute = job.flow.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            log.warning(f"{job.name}: skipped, {module_name} is not installed in this version")
            return None
        log.error(f"{job.name}: skipped, {module_name} cannot be imported ({exc})")
        return None
    except ImportError as exc:
        log.error(f"{job.name}: skipped, {module_name} cannot be imported ({exc})")
        return None
    flow = getattr(module, attribute, None)
    if flow is None:
        log.warning(f"{job.name}: skipped, {module_name} has no flow {attribute!r}")
    return flow


def upkeep_deployments(crons: dict[str, str]) -> list[Any]:
    """The served deployments of the jobs whose flow is installed, on their schedules."""
    from prefect.client.schemas.objects import (  # noqa: PLC0415
        ConcurrencyLimitConfig,
        ConcurrencyLimitStrategy,
    )
    from prefect.deployments.runner import EntrypointType  # noqa: PLC0415

    deployments = []
    for name, job in UPKEEP.items():
        flow = load_flow(job)
        if flow is None:
            continue
        deployments.append(flow.to_deployment(
            name=name, cron=crons[name], description=job.description, tags=TAGS,
            parameters=dict(job.parameters), entrypoint_type=EntrypointType.MODULE_PATH,
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)))
    return deployments
