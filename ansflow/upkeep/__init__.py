"""Cluster upkeep: the inventory of what runs in each saved cluster, its sync and health
checks (``inventory``, ``sync``, ``health``), and the cleanup of what pipeline runs leave
behind. The Prefect flows that schedule them live in ``ansflow.flows``."""
