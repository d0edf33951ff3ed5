"""Prefect blocks holding the credentials of external systems: ``kubernetes``
(KubernetesCluster), ``ssh`` (SshHost), ``git`` (GitCredentials), and ``saved`` (finding
saved blocks by name).

Importing this module imports every Block subclass, so that Prefect's `prefect.collections`
entry point registers them all with a starting server. Docker hosts and registry credentials
are prefect-docker's own blocks (registered by prefect-docker); how a step names them is the
step runtime's (``ansflow.runtime.docker_access``).
"""

from ansflow.blocks import git, kubernetes, ssh  # noqa: F401  (registers the blocks)
