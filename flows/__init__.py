"""Prefect flows: the pipeline flow that runs a plan, sync, cleanup, management."""
