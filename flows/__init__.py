"""Prefect flows.

- Pipelines: the pipeline flow that runs a plan (pipeline.py), its scheduler (scheduler.py),
  the wrapper every step runs in (step_task.py), what a run sets up before its first step:
  its secrets (run_secrets.py), its workspace (run_workspace.py) and its git source
  (git_source.py); the run's records (run_records.py), the retry of a run (rerun.py),
  task-tag concurrency (tag_limits.py), the deployment of a served pipeline
  (deployment.py), and each run's artifacts and events (publish.py).
- Cluster management: the `ansflow-k8s/<operation>` flows and deployments (manage.py) and
  what each run publishes (manage_publish.py).
- Upkeep on cron: the saved clusters they cover (clusters.py), `ansflow-sync` (sync.py)
  and the inventory it publishes (inventory_publish.py), `ansflow-health` (health.py),
  `ansflow-cleanup` (cleanup.py) and their deployments (upkeep.py).
"""
