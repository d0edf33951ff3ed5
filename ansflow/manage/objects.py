"""The object operations, registered by importing this module: `apply`,
`describe`, and the create-or-update forms `namespace`, `configmap`, `secret`, `deployment`,
`service` (see docs/manage.md, "Object operations")."""

from __future__ import annotations

from ansflow.manage.apply import apply
from ansflow.manage.describe import describe
from ansflow.manage.forms import configmap, deployment, namespace, secret, service

__all__ = ["apply", "describe", "namespace", "configmap", "secret", "deployment", "service"]
