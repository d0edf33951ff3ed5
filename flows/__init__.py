"""Prefect flows: the pipeline flow that runs a plan (pipeline.py) with its scheduler
(scheduler.py) and the wrapper every step runs in (step_task.py), one deployment flow per
served pipeline (deployment.py), and each run's artifacts and events (publish.py)."""
