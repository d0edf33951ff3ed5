"""Deployments of ansflow's flows to Prefect work pools: prefect.yaml (for `prefect deploy`)
and its Python equivalent, pipelines.py (the one module here). `ansflow serve` builds served
deployments itself (ansflow.flows.deployment, ansflow.flows.manage, ansflow.flows.upkeep)."""
