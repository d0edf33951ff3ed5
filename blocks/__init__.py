"""Prefect blocks holding the credentials of external systems.

Importing this module imports every Block subclass, so that Prefect's `prefect.collections`
entry point registers them all with a starting server.
"""

from ansflow.blocks import docker, git, kubernetes, ssh  # noqa: F401  (registers the blocks)
