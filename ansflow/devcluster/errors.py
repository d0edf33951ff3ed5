"""Errors of the dev-cluster manager; every message is meant for the user of the CLI."""

from __future__ import annotations

from ansflow.errors import AnsflowError


class DevClusterError(AnsflowError):
    """A dev cluster cannot be started, stopped or inspected; the message says why."""


class BinariesMissing(DevClusterError):
    """The control-plane binaries are not there; the message says how to build them."""


class ComponentFailed(DevClusterError):
    """A component exited or never became healthy; the message ends with its last log lines."""
