"""Kubernetes cluster credentials block (`KubernetesCluster`, slug ansflow-kubernetes-cluster)."""

from __future__ import annotations

import base64
import os
import shlex
import stat
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, model_validator

from ansflow.blocks.saved import BlockNotFound, load_saved_block, saved_block_names
from ansflow.engines.errors import EngineError
from ansflow.engines.kube import build_api_client
from ansflow.engines.kube_exec import check_exec_plugins
from ansflow.errors import step_error

KUBERNETES_LOGO = (
    "https://raw.githubusercontent.com/PrefectHQ/prefect/"
    "420d0d6a78bb6df1fc18bcf188fdad43c1d22ea9/assets/block-logos/kubernetes.png"
)


class KubernetesCluster(Block):
    """Credentials of one Kubernetes cluster, for ansflow's Kubernetes steps.

    Fill in one way to authenticate: a kubeconfig (optionally with a context); or the API
    server URL with a bearer token and/or a client certificate and key (plus the CA); or
    `in_cluster` when the flow runs in a pod. At least one is required; when several are
    filled in, the kubeconfig wins, then `in_cluster`, then the server fields (the
    `auth_method` property says which is used). Secrets are kept in secret fields and never
    shown. Every `get_client()` builds a new, isolated `kubernetes.client.ApiClient`;
    kubernetes' process-global configuration is never touched, so flows can talk to several
    clusters at once. `ansflow dev-cluster up` saves one of these for its local cluster, and
    `ansflow cluster add NAME --kubeconfig FILE` saves one from a kubeconfig file.

    Example:
        ```python
        from kubernetes.client import VersionApi

        from ansflow.blocks.kubernetes import KubernetesCluster

        cluster = KubernetesCluster.load("local")
        with cluster.get_client() as api:
            print(VersionApi(api).get_code().git_version)
        ```
    """

    _block_type_name = "Ansflow Kubernetes Cluster"
    _block_type_slug = "ansflow-kubernetes-cluster"
    # A refusal never repeats what was given: pydantic would show the whole input, token too.
    model_config = ConfigDict(hide_input_in_errors=True)
    _logo_url = KUBERNETES_LOGO

    kubeconfig: SecretStr | None = Field(
        default=None,
        description="The content of a kubeconfig file (YAML). Takes precedence over the "
        "server, token and certificate fields.",
    )
    context: str | None = Field(
        default=None,
        description="The kubeconfig context to use; empty means its current-context.",
    )
    server: str | None = Field(
        default=None,
        description="API server URL, e.g. https://10.0.0.1:6443 (when not using a kubeconfig).",
    )
    token: SecretStr | None = Field(
        default=None, description="Bearer token (e.g. a service-account token)."
    )
    certificate_authority: str | None = Field(
        default=None,
        description="PEM of the CA that signed the API server's certificate.",
    )
    client_certificate: str | None = Field(
        default=None, description="PEM client certificate (with client_key)."
    )
    client_key: SecretStr | None = Field(
        default=None, description="PEM private key of the client certificate."
    )
    in_cluster: bool = Field(
        default=False,
        description="Use the service account of the pod the flow runs in.",
    )
    verify_ssl: bool = Field(
        default=True, description="Verify the API server's TLS certificate."
    )
    namespace: str = Field(
        default="default",
        description="Namespace used by steps that do not name one.",
    )

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> KubernetesCluster:
        if self.kubeconfig is None and not self.in_cluster and not self.server:
            raise ValueError("give a kubeconfig, a server URL (with token or client "
                             "certificate), or set in_cluster")
        if (self.client_certificate is None) != (self.client_key is None):
            raise ValueError("client_certificate and client_key go together")
        return self

    @property
    def auth_method(self) -> str:
        """Which credentials are used: kubeconfig, token, client-certificate, in-cluster, none."""
        if self.kubeconfig is not None:
            return "kubeconfig"
        if self.in_cluster:
            return "in-cluster"
        if self.token is not None:
            return "token"
        if self.client_certificate is not None:
            return "client-certificate"
        return "none"

    def get_client(self) -> k8s.ApiClient:
        """A new, isolated ApiClient for this cluster (close it when done).

        Raises:
            StepFailed: the credentials are incomplete or do not load.
        """
        try:
            return self._build_client()
        except EngineError as exc:
            raise step_error(exc) from None  # the kubeconfig is never echoed

    def _build_client(self) -> k8s.ApiClient:
        return build_api_client(
            kubeconfig=self.kubeconfig.get_secret_value() if self.kubeconfig else None,
            context=self.context,
            server=self.server,
            token=self.token.get_secret_value() if self.token else None,
            ca_cert=self.certificate_authority,
            client_cert=self.client_certificate,
            client_key=self.client_key.get_secret_value() if self.client_key else None,
            in_cluster=self.in_cluster,
            verify_ssl=self.verify_ssl,
        )

    @classmethod
    def from_kubeconfig_file(
        cls, path: str | Path, context: str | None = None, namespace: str | None = None
    ) -> KubernetesCluster:
        """A block holding the content of a kubeconfig file (checked to be YAML with a context).

        The files the chosen context's cluster and user name (certificate-authority,
        client-certificate, client-key, tokenFile) are read now and kept in the block as
        their ``-data`` / ``token`` forms, so the block works on every worker; relative
        paths are resolved against the kubeconfig's own folder, as kubectl does.

        Args:
            path: the kubeconfig file.
            context: the context to pin (default: the file's current-context at use time).
            namespace: default namespace; else the context's namespace, else "default".

        Raises:
            ValueError: not a kubeconfig, no such context, or a file it names is missing,
                unreadable, too large or no regular file (the message names the field).
            OSError: the kubeconfig itself cannot be read.
        """
        source = Path(path).expanduser()
        text = _read_regular_file(source, "the kubeconfig", MAX_KUBECONFIG_BYTES).decode(
            "utf-8", "replace")
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not YAML ({str(exc).splitlines()[0][:200]})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("contexts"), list):
            raise ValueError(f"{path} is not a kubeconfig (no contexts)")
        names = {c.get("name"): c.get("context") or {} for c in doc["contexts"]
                 if isinstance(c, dict)}
        chosen = context or doc.get("current-context")
        if chosen not in names:
            shown = ", ".join(str(n)[:60] for n in list(names)[:20])
            raise ValueError(f"{path} has no context {str(chosen)[:100]!r} (has: {shown})")
        ctx = names[chosen] if isinstance(names[chosen], dict) else {}
        ns = namespace or ctx.get("namespace") or "default"
        if inline_kubeconfig_files(doc, ctx, source.absolute().parent):
            text = yaml.safe_dump(doc, sort_keys=False)
        return cls(kubeconfig=SecretStr(text), context=context, namespace=ns)

    def to_kubeconfig_dict(self, check_exec: bool = True) -> dict[str, Any]:
        """These credentials as a kubeconfig dict (holds secrets in clear: do not log or save).

        For handing to tools that only take a kubeconfig (prefect-kubernetes, kubectl, helm),
        which run its ``exec:`` plugins: those are refused unless this worker's operator
        allows them (ansflow.engines.kube_exec); ``check_exec=False`` only to read fields.
        In-cluster credentials have no kubeconfig form.

        Raises:
            StepFailed: an ``exec:`` plugin this worker does not allow.
        """
        if self.kubeconfig is not None:
            doc = yaml.safe_load(self.kubeconfig.get_secret_value())
            if not (check_exec and isinstance(doc, dict)):
                return doc
            try:
                return check_exec_plugins(doc)
            except EngineError as exc:
                raise step_error(exc) from None
        if self.in_cluster:
            raise ValueError("in-cluster credentials have no kubeconfig form")
        cluster: dict[str, Any] = {"server": self.server}
        if self.certificate_authority:
            cluster["certificate-authority-data"] = _b64(self.certificate_authority)
        if not self.verify_ssl:
            cluster["insecure-skip-tls-verify"] = True
        user: dict[str, Any] = {}
        if self.token is not None:
            user["token"] = self.token.get_secret_value()
        if self.client_certificate and self.client_key:
            user["client-certificate-data"] = _b64(self.client_certificate)
            user["client-key-data"] = _b64(self.client_key.get_secret_value())
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cluster", "cluster": cluster}],
            "users": [{"name": "user", "user": user}],
            "contexts": [
                {
                    "name": "ansflow",
                    "context": {"cluster": "cluster", "user": "user",
                                "namespace": self.namespace},
                }
            ],
            "current-context": "ansflow",
        }

    def secret_values(self) -> list[tuple[str, str]]:
        """(what, value) of every secret these credentials hold, for the run's masker: the
        token and client key, and in a kubeconfig each user's token, password, client key
        and auth-provider / exec secrets (never the whole kubeconfig: its ordinary lines are
        no secret)."""
        found: list[tuple[str, str]] = []
        if self.token is not None:
            found.append(("its token", self.token.get_secret_value()))
        if self.client_key is not None:
            found.append(("its client key", self.client_key.get_secret_value()))
        if self.kubeconfig is not None:
            try:
                doc = yaml.safe_load(self.kubeconfig.get_secret_value())
            except yaml.YAMLError:
                doc = None
            users = doc.get("users") if isinstance(doc, dict) else None
            for entry in users if isinstance(users, list) else []:
                user = entry.get("user") if isinstance(entry, dict) else None
                if isinstance(user, dict):
                    found += _user_secrets(str(entry.get("name")), user)
        return found

    def to_prefect_kubernetes_credentials(self):
        """A prefect-kubernetes `KubernetesCredentials` for its job tasks and work pools.

        Don't save the result: prefect-kubernetes keeps the kubeconfig in a plain dict
        (secrets in clear, Prefect issue #8624). In-cluster gives credentials without a
        cluster config (prefect-kubernetes then uses the pod's service account).
        """
        from prefect_kubernetes.credentials import (  # optional integration, imported late
            KubernetesClusterConfig,
            KubernetesCredentials,
        )

        if self.in_cluster:
            return KubernetesCredentials()
        doc = self.to_kubeconfig_dict()
        context = self.context or doc.get("current-context")
        return KubernetesCredentials(
            cluster_config=KubernetesClusterConfig(config=doc, context_name=context)
        )


class ClusterNotFound(BlockNotFound):
    """No saved KubernetesCluster block of that name (or its block cannot be loaded)."""


def saved_cluster_names() -> list[str]:
    """The names of the saved KubernetesCluster blocks, sorted.

    Raises:
        AnsflowError: the Prefect API cannot be reached.
    """
    return saved_block_names(KubernetesCluster.get_block_type_slug(), "Kubernetes clusters")


def load_saved_cluster(name: str) -> KubernetesCluster:
    """The saved KubernetesCluster block ``name``.

    Raises:
        StepFailed: ``name`` is not a block name.
        ClusterNotFound: no such block (the hint says how to save one), or it cannot be
            loaded.
    """
    return load_saved_block(KubernetesCluster, name, "cluster", "Kubernetes cluster",
                            f"ansflow cluster add {shlex.quote(name)} --kubeconfig FILE",
                            ClusterNotFound)


_USER_SECRET_KEYS = ("token", "password", "client-key-data", "id-token", "refresh-token",
                     "client-secret", "access-token")


def _user_secrets(name: str, user: dict[str, Any]) -> list[tuple[str, str]]:
    """The secret values of one kubeconfig user (nested auth-provider / exec config too)."""
    found: list[tuple[str, str]] = []

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif key in _USER_SECRET_KEYS and isinstance(value, str | int) and str(value):
            what = f"the {key} of kubeconfig user {name!r}"
            found.append((what, str(value)))
            if key == "client-key-data":
                try:
                    found.append((what, base64.b64decode(str(value), validate=True).decode()))
                except (ValueError, UnicodeDecodeError):
                    pass

    walk(user)
    return found


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ---- kubeconfig files kept in the block ------------------------------------------------------

MAX_KUBECONFIG_BYTES = 4 * 1024 * 1024
MAX_CREDENTIAL_FILE_BYTES = 1024 * 1024
# (section, body key, path field, field it becomes, base64 like kubectl's -data fields)
_FILE_FIELDS = (
    ("clusters", "cluster", "certificate-authority", "certificate-authority-data", True),
    ("users", "user", "client-certificate", "client-certificate-data", True),
    ("users", "user", "client-key", "client-key-data", True),
    ("users", "user", "tokenFile", "token", False),
)


def _read_regular_file(path: Path, what: str, limit: int) -> bytes:
    """The bytes of ``path`` (symlinks followed), refusing what is no regular file (a FIFO
    is never waited on, a device never opened) and anything over ``limit`` bytes.

    Raises:
        ValueError: missing, unreadable, no regular file, or too large (names ``what``).
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ValueError(f"{what} {str(path)[:300]!r} is not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise ValueError(f"{what} {str(path)[:300]!r} cannot be read: "
                         f"{exc.strerror or type(exc).__name__}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # swapped in meanwhile
            raise ValueError(f"{what} {str(path)[:300]!r} is not a regular file")
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise ValueError(f"{what} {str(path)[:300]!r} cannot be read: "
                             f"{exc.strerror or type(exc).__name__}") from None
    if len(data) > limit:
        raise ValueError(f"{what} {str(path)[:300]!r} is larger than {limit // 1024} KiB")
    return data


def _named(doc: dict, section: str, key: str, name: Any) -> dict | None:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(key)
            if body is None:
                entry[key] = body = {}
            return body if isinstance(body, dict) else None
    return None


def inline_kubeconfig_files(doc: dict, context: dict, base: Path) -> bool:
    """Replace the file paths that ``context``'s cluster and user name in ``doc`` by the
    files' content (in place), as kubectl reads them: a relative path against ``base`` (the
    kubeconfig's folder), no ``~`` expansion; a ``-data`` field (or ``token``) given too
    wins and the path is dropped, as kubernetes' client does. A token file is stripped of
    surrounding white space, as client-go does. Returns whether anything changed.

    Raises:
        ValueError: a named file is missing, unreadable, too large, no regular file, or a
            token file is empty or no UTF-8 text (the message names the kubeconfig field).
    """
    changed = False
    targets = {"clusters": _named(doc, "clusters", "cluster", context.get("cluster")),
               "users": _named(doc, "users", "user", context.get("user"))}
    for section, _key, field, data_field, encode in _FILE_FIELDS:
        body = targets[section]
        if body is None or field not in body:
            continue
        raw = body.pop(field)
        changed = True
        if body.get(data_field):
            continue  # the data form wins (kubernetes' client reads it first)
        owner = context.get("cluster" if section == "clusters" else "user")
        what = f"{section[:-1]} {str(owner)[:60]!r} {field}"
        if not isinstance(raw, str) or not raw.strip() or "\x00" in raw:
            raise ValueError(f"{what}: no file path")
        path = Path(raw) if os.path.isabs(raw) else base / raw
        content = _read_regular_file(path, what, MAX_CREDENTIAL_FILE_BYTES)
        if encode:
            if not content.strip():
                raise ValueError(f"{what} {str(path)[:300]!r} is empty")
            body[data_field] = base64.b64encode(content).decode()
        else:
            try:
                token = content.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise ValueError(f"{what} {str(path)[:300]!r} is not UTF-8 text") from None
            if not token or any(c in token for c in "\r\n\x00"):
                raise ValueError(f"{what} {str(path)[:300]!r} holds no single-line token")
            body[data_field] = token
    return changed
