"""The one Kubernetes client factory, exec in a pod, and error translation.

Every Kubernetes client in ansflow is built here (:func:`build_api_client`, or a block's
``get_client()`` that calls it), and every call goes through the ``ansflow.engines.kube*``
modules: exec here, the REST object calls in ``kube_objects`` (get, list, apply, watch,
discovery, any raw path), the cluster-level reads in ``kube_cluster`` (version, rules review,
nodes, logs). Clients are built from explicit material (a kubeconfig text, or URL +
token/client certificate, or the in-cluster service account) into a fresh
`kubernetes.client.Configuration`; kubernetes' process-global default configuration is never
read or written, so two clusters in one process never interfere. Failures are the adapter's
own errors (``ansflow.engines.errors``, ``ansflow.engines.kube_errors``).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes.config.incluster_config import (
    SERVICE_CERT_FILENAME,
    SERVICE_TOKEN_FILENAME,
    InClusterConfigLoader,
)
from kubernetes.stream import stream
from kubernetes.stream.ws_client import ERROR_CHANNEL, STDERR_CHANNEL, STDOUT_CHANNEL

from ansflow.engines.errors import EngineError, EngineTimedOut, EngineTransient, EngineUnreachable
from ansflow.engines.kube_errors import KubeError
from ansflow.engines.kube_exec import check_exec_plugins, exec_loader_class
from ansflow.engines.kube_names import check_container, check_name, check_namespace
from ansflow.engines.reaper import private_dir

ERROR_BODY_LIMIT = 500
DEFAULT_MAX_OUTPUT = 4 * 1024 * 1024
# kwok (and cri-streaming) wrap a non-zero exit as an InternalError "... exit status N".
_EXIT_STATUS_RE = re.compile(r"exit status (\d+)\s*$")
_HANDSHAKE_RE = re.compile(r"Handshake status (\d{3})")


class ClusterSource(Protocol):
    """Anything that builds an ApiClient: the KubernetesCluster block, for instance."""

    def get_client(self) -> k8s.ApiClient: ...


def _private_dir(configuration: k8s.Configuration) -> Path:
    # Key material the TLS stack needs as files lives in a 0700 directory that is removed
    # when the Configuration (held by its ApiClient) is garbage-collected, inside the
    # process's private directory that the reaper removes if the process dies first.
    directory = Path(tempfile.mkdtemp(prefix="ansflow-kube-", dir=private_dir()))
    weakref.finalize(configuration, shutil.rmtree, str(directory), True)
    return directory


def _materialize_kubeconfig_data(doc: dict, directory: Path) -> dict:
    """Turn inline `*-data` certificates/keys into files in `directory` (0600).

    kubernetes' own loader would write them to a process-wide temp-file cache instead.
    """
    pairs = (
        ("clusters", "cluster", "certificate-authority"),
        ("users", "user", "client-certificate"),
        ("users", "user", "client-key"),
    )
    for section, key, field in pairs:
        for i, entry in enumerate(doc.get(section) or []):
            body = (entry or {}).get(key) or {}
            data = body.pop(f"{field}-data", None)
            if data:
                path = directory / f"{section}-{i}-{field}"
                path.touch(mode=0o600)
                path.write_bytes(base64.b64decode(data))
                body[field] = str(path)
    return doc


def build_api_client(
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    server: str | None = None,
    token: str | None = None,
    ca_cert: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
    in_cluster: bool = False,
    verify_ssl: bool = True,
) -> k8s.ApiClient:
    """Build a fresh, isolated ApiClient from explicit credentials.

    Args:
        kubeconfig: kubeconfig YAML text (wins over server/token/certificates).
        context: the kubeconfig context (default: its current-context).
        server: API server URL, e.g. https://127.0.0.1:6443.
        token: bearer token.
        ca_cert: PEM of the CA that signed the API server's certificate.
        client_cert: PEM client certificate.
        client_key: PEM key of `client_cert`.
        in_cluster: use the pod's service account (token and CA mounted by Kubernetes).
        verify_ssl: verify the API server's certificate.

    Returns:
        A new ApiClient; close it (or use it as a context manager) when done.

    Raises:
        EngineError: the credentials are incomplete or the kubeconfig is invalid.
    """
    cfg = k8s.Configuration()
    try:
        if kubeconfig:
            doc = yaml.safe_load(kubeconfig)
            if not isinstance(doc, dict):
                raise EngineError("the kubeconfig is not a YAML mapping")
            directory = _private_dir(cfg)
            doc = _materialize_kubeconfig_data(check_exec_plugins(doc), directory)
            # exec plugins run bounded, their failures are errors (ansflow.engines.kube_exec)
            exec_loader_class()(config_dict=doc, active_context=context,
                                temp_file_path=str(directory)).load_and_set(cfg)
        elif in_cluster:
            InClusterConfigLoader(SERVICE_TOKEN_FILENAME, SERVICE_CERT_FILENAME).load_and_set(cfg)
        else:
            if not server:
                raise EngineError("no kubeconfig, no API server URL and not in-cluster")
            cfg.host = server.rstrip("/")
            if token:
                cfg.api_key = {"authorization": token}
                cfg.api_key_prefix = {"authorization": "Bearer"}
            if ca_cert:
                cfg.ca_cert_data = ca_cert
            if client_cert or client_key:
                if not (client_cert and client_key):
                    raise EngineError("a client certificate needs both the certificate and key")
                directory = _private_dir(cfg)
                for name, pem in (("client.crt", client_cert), ("client.key", client_key)):
                    (directory / name).touch(mode=0o600)
                    (directory / name).write_text(pem)
                cfg.cert_file = str(directory / "client.crt")
                cfg.key_file = str(directory / "client.key")
    except EngineError:
        raise
    except Exception as exc:  # the loaders raise ConfigException, KeyError, yaml errors...
        # Never echo the kubeconfig (it holds keys); the exception text names the field.
        raise EngineError(f"invalid Kubernetes credentials: {type(exc).__name__}: {exc}") from None
    if not verify_ssl:
        cfg.verify_ssl = False
    return k8s.ApiClient(cfg)


def api_client_for(cluster: ClusterSource) -> k8s.ApiClient:
    """The ApiClient of a cluster credentials block (a new one on every call)."""
    return cluster.get_client()


# ---- errors ---------------------------------------------------------------------------------


def _status_body(exc: k8s.ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body or "{}")
        return body if isinstance(body, dict) else {}
    except (TypeError, ValueError):
        return {}


def translate_error(exc: BaseException, *, cluster: str, action: str) -> EngineError:
    """Map a kubernetes/urllib3 exception to ansflow's error tree, with an actionable message.

    Args:
        exc: what the client raised.
        cluster: the cluster's name, for the message.
        action: what was being done, e.g. "create deployments in namespace ci".

    Returns:
        The error to raise (`raise translate_error(...) from exc`). 5xx, 429 and network
        errors are EngineTransient/EngineUnreachable (retryable), the rest EngineError.
    """
    where = f"cluster {cluster!r}: {action}"
    if isinstance(exc, KubeError):  # the adapter's own error: what the client raised, if any
        if exc.__cause__ is None:
            return EngineError(f"{where}: {exc}")
        exc = exc.__cause__
    if type(exc) is EngineError:  # an exec plugin failing when its token was refreshed
        return EngineError(f"{where}: {exc.message}", hint=exc.hint)
    if isinstance(exc, k8s.ApiException):
        body = _status_body(exc)
        message = str(body.get("message") or exc.reason or "")[:ERROR_BODY_LIMIT]
        status = exc.status or 0
        handshake = _HANDSHAKE_RE.search(str(exc.reason or ""))
        if status == 0 and handshake:  # websocket (exec) errors arrive as status 0
            status = int(handshake.group(1))
            message = message or str(exc.reason)[:ERROR_BODY_LIMIT]
        if status == 401:
            return EngineError(
                f"{where}: 401 Unauthorized (the credentials were rejected)",
                hint="the token or client certificate is wrong or expired",
            )
        if status == 403:
            return EngineError(f"{where}: 403 Forbidden: {message}",
                              hint="grant the identity this verb on this resource (RBAC)")
        if status == 404:
            return EngineError(f"{where}: 404 Not Found: {message}")
        if status == 409:
            return EngineError(f"{where}: 409 Conflict: {message}")
        if status == 422:
            return EngineError(f"{where}: invalid object: {message}")
        if status == 429 or status >= 500:
            return EngineTransient(f"{where}: {status} {exc.reason}: {message}")
        if status == 0:
            return EngineUnreachable(f"{where}: no answer from the API server ({exc.reason})")
        return EngineError(f"{where}: {status} {exc.reason}: {message}")
    if isinstance(exc, urllib3.exceptions.SSLError) or "SSL" in type(exc).__name__ or (
        isinstance(exc, urllib3.exceptions.MaxRetryError)
        and isinstance(exc.reason, urllib3.exceptions.SSLError)
    ):
        return EngineUnreachable(
            f"{where}: TLS failure talking to the API server",
            hint="check the CA certificate (or verify_ssl) and the server URL",
        )
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return EngineUnreachable(
            f"{where}: the API server is unreachable ({type(exc).__name__})",
            hint="is the cluster running and the server URL right?",
        )
    return EngineError(f"{where}: {type(exc).__name__}: {exc}")


# ---- exec -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecResult:
    """What a command exec'd in a pod produced."""

    exit_code: int
    stdout: str
    stderr: str
    truncated: bool = False


def decode_exec_status(raw: str | bytes) -> int:
    """Decode the exec status channel (3) the way client-go does, plus kwok's wrapped form.

    Args:
        raw: the channel's content: a JSON `metav1.Status`.

    Returns:
        The exit code: 0 for Success; the ExitCode cause for NonZeroExitCode; N for an
        InternalError whose message ends in `exit status N` (kwok).

    Raises:
        EngineError: the status is empty (exit code unknown: never taken for 0) or reports an
            error that is not an exit code.
    """
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not raw or not raw.strip():
        raise EngineError("exec ended without a status: the exit code is unknown")
    try:
        status = json.loads(raw)
    except ValueError:
        raise EngineError(f"exec returned an unreadable status: {raw[:200]!r}") from None
    if status.get("status") == "Success":
        return 0
    reason = status.get("reason", "")
    message = str(status.get("message", ""))
    if reason == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message", ""))
                except ValueError:
                    break
        raise EngineError(f"exec failed with a non-zero exit and no readable code: {message}")
    match = _EXIT_STATUS_RE.search(message)
    if reason == "InternalError" and match:
        return int(match.group(1))
    raise EngineError(f"exec failed: {reason or 'error'}: {message[:ERROR_BODY_LIMIT]}")


def exec_in_pod(
    api: k8s.ApiClient,
    *,
    namespace: str,
    pod: str,
    command: list[str],
    container: str | None = None,
    timeout: float = 300.0,
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> ExecResult:
    """Run a command in a pod through the API server; stdout, stderr and exit code apart.

    Output is drained incrementally (no preload: that merges the streams and drops the exit
    code); each stream keeps at most `max_output` bytes.

    Raises:
        EngineTimedOut: the command ran past `timeout` (the remote process is not killed).
        EngineError: exec could not start, or the status channel is empty or an error.
    """
    buffers = {"stdout": bytearray(), "stderr": bytearray()}
    truncated = False
    deadline = time.monotonic() + timeout

    def collect(name: str, chunk: bytes) -> None:
        nonlocal truncated
        buf = buffers[name]
        room = max_output - len(buf)
        truncated |= len(chunk) > room
        buf += chunk[: max(room, 0)]

    def check() -> None:
        if time.monotonic() > deadline:
            raise EngineTimedOut(f"exec in pod {namespace}/{pod} ran past {timeout:.0f} s")

    code = exec_streaming(api, namespace=namespace, pod=pod, command=command,
                          on_output=collect, check=check, container=container)
    return ExecResult(code, buffers["stdout"].decode("utf-8", "replace"),
                      buffers["stderr"].decode("utf-8", "replace"), truncated)


def check_exec_target(namespace: str, pod: str, container: str | None) -> None:
    """The typed client quotes its path parameters but takes any string: the names are
    checked by the API server's rules here, before the exec connects.

    Raises:
        KubeNameError: one of them is not a valid name of its kind.
    """
    check_namespace(namespace)
    check_name(pod, "Pod", "pod")
    if container:
        check_container(container)


def exec_streaming(
    api: k8s.ApiClient,
    *,
    namespace: str,
    pod: str,
    command: list[str],
    on_output: Any,
    check: Any = None,
    container: str | None = None,
    stdin_data: bytes | None = None,
) -> int:
    """Run a command in a pod, handing its output over as it comes; returns the exit code.
    ``stdin_data`` is written to the command's stdin once at start (secrets, say).

    `on_output(stream_name, data)` gets each chunk ("stdout"/"stderr", bytes). `check()` is
    called about every 0.5 s while the command runs and may raise to stop it (deadline,
    cancel); the socket is then closed (the remote process is not killed).

    Raises:
        EngineError: exec could not start, or the status channel is empty or an error.
    """
    check_exec_target(namespace, pod, container)
    core = k8s.CoreV1Api(api)
    kwargs: dict[str, Any] = dict(
        command=command, stdin=stdin_data is not None, stdout=True, stderr=True, tty=False,
        _preload_content=False, binary=True,
    )
    if container:
        kwargs["container"] = container
    ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace, **kwargs)
    channels = ((STDOUT_CHANNEL, "stdout"), (STDERR_CHANNEL, "stderr"))
    try:
        if stdin_data is not None:
            ws.write_stdin(stdin_data)
        while ws.is_open():
            if check is not None:
                check()
            ws.update(timeout=0.5)
            for channel, name in channels:
                chunk = ws.read_channel(channel)
                if chunk:
                    on_output(name, chunk)
        for channel, name in channels:
            chunk = ws.read_channel(channel)
            if chunk:
                on_output(name, chunk)
        return decode_exec_status(ws.read_channel(ERROR_CHANNEL))
    finally:
        ws.close()
