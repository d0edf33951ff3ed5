"""Prefect deployments and schedules of ansflow flows."""
