"""The k8s_logs step: the logs of a pod, or of every pod a selector matches, streamed live to
the step's log (masked and bounded), optionally followed; the last lines are published as a
markdown artifact of the flow run."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

import urllib3
from kubernetes import client as k8s

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.engines.kube_kinds import PODS
from ansflow.engines.kube_objects import KubeError, get_object, list_objects, request
from ansflow.engines.lines import LineSplitter
from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.k8s_session import api_errors, cluster_session
from ansflow.runtime.public import StepOutput, run_cluster_task, step_task
from ansflow.spec.steps import K8sLogsConfig
from ansflow.tasks.k8s_delete import close_names
from ansflow.tasks.k8s_exec import pick_container

TAIL_KEPT = 200  # lines kept in memory for the artifact
FOLLOW_DEFAULT = 300.0  # seconds a follow lasts without a timeout
MAX_PODS = 50  # a selector matching more follows / reads only the first ones (by name)
READ_TIMEOUT = 30.0  # seconds without a byte before a non-follow read gives up
STOP_GRACE = 2.0  # seconds a stopped reader gets to end before it is left behind


@dataclass
class LogCollector:
    """Every pod's lines go through here: emitted (masked, bounded by the log cap), counted,
    and the last ``TAIL_KEPT`` kept (masked) for the artifact. Thread-safe."""

    ctx: StepContext
    prefixed: bool
    lines: int = 0
    closed: bool = False  # set when the step ends: a reader left behind logs nothing more
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=TAIL_KEPT))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, pod: str, lines: list[str]) -> None:
        """A burst of one pod's lines, logged as one record (see StepContext.emit_lines)."""
        if not lines:
            return
        texts = [f"[{pod}] {line}" for line in lines] if self.prefixed else lines
        with self.lock:
            if self.closed:
                return
            self.lines += len(texts)
            logged = self.ctx.emit_lines(texts)
            if len(logged) < len(texts):  # beyond the log cap: the tail still shows the end
                logged = self.ctx.masker("\n".join(texts[-TAIL_KEPT:])).split("\n")
            self.tail.extend(logged[-TAIL_KEPT:])


def pod_log_query(config: K8sLogsConfig, container: str, follow: bool) -> list[tuple[str, str]]:
    """The query of GET .../pods/NAME/log for this config."""
    query = [("container", container)]
    if config.tail_lines is not None:
        query.append(("tailLines", str(config.tail_lines)))
    if config.since_seconds is not None:
        query.append(("sinceSeconds", str(max(1, int(config.since_seconds)))))
    if config.previous:
        query.append(("previous", "true"))
    if follow:
        query.append(("follow", "true"))
    return query


def _find_pods(api: k8s.ApiClient, config: K8sLogsConfig, namespace: str) -> list[dict]:
    if config.pod:
        pod = get_object(api, PODS, config.pod, namespace)
        if pod is None:
            names = [str(p["metadata"]["name"])
                     for p in list_objects(api, PODS, namespace).get("items") or []]
            similar = close_names(config.pod, names)
            raise StepFailed(f"pod {config.pod!r} not found in namespace {namespace}",
                             hint=("did you mean " + ", ".join(repr(n) for n in similar) + "?")
                             if similar else None)
        return [pod]
    pods = list_objects(api, PODS, namespace,
                        label_selector=config.pod_selector or "").get("items") or []
    if not pods:
        raise StepFailed(f"no pods match the selector {config.pod_selector!r} in namespace "
                         f"{namespace}")
    pods.sort(key=lambda p: p["metadata"]["name"])
    return pods


class _Streams:
    """The open log responses, so the deadline or a cancel can close them from any thread."""

    def __init__(self) -> None:
        self.open: list = []
        self.lock = threading.Lock()
        self.stopped = False

    def add(self, response) -> bool:
        with self.lock:
            if self.stopped:
                return False
            self.open.append(response)
            return True

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            responses = list(self.open)
        for response in responses:
            try:
                response.shutdown()
            except Exception:  # noqa: BLE001 - best effort: the read then fails and ends
                pass


def _read_pod(api: k8s.ApiClient, config: K8sLogsConfig, namespace: str, pod: str,
              container: str, follow: bool, streams: _Streams, sink: LogCollector,
              errors: list, deadline: float) -> None:
    """Stream one pod's log into ``sink``; an error is appended to ``errors``.

    No read blocks past the deadline: an API server may send a followed log's headers only
    with its first line, and until then there is no response to close."""
    path = PODS.path(namespace, pod) + "/log"
    read_timeout = max(1.0, deadline - time.monotonic() + 1.0)
    if not follow:
        read_timeout = min(read_timeout, READ_TIMEOUT)
    try:
        response = request(api, "GET", path, query=pod_log_query(config, container, follow),
                           stream=True, timeout=(10, read_timeout))
    except KubeError as exc:
        if not (streams.stopped or follow and time.monotonic() >= deadline - 1.0):
            errors.append((pod, exc))
        return
    splitter = LineSplitter(masker=sink.ctx.masker)
    if not streams.add(response):
        response.close()
        return
    try:
        for chunk in response.stream(65536, decode_content=True):
            sink.add(pod, list(splitter.feed(chunk)))
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        if not (streams.stopped or follow and time.monotonic() >= deadline - 1.0):
            errors.append((pod, exc))
    finally:
        sink.add(pod, list(splitter.flush()))
        response.close()
        response.release_conn()


def publish_tail(ctx: StepContext, sink: LogCollector, pods: list[str]) -> bool:
    """The last lines as a markdown artifact of the current flow run; False (and nothing
    done) outside a flow run or when the server refuses it."""
    from prefect.artifacts import create_markdown_artifact  # noqa: PLC0415
    from prefect.context import FlowRunContext  # noqa: PLC0415

    if FlowRunContext.get() is None:
        return False
    body = "\n".join(line.replace("```", "`\u200b``") for line in sink.tail)
    shown = ", ".join(pods[:10]) + (f" and {len(pods) - 10} more" if len(pods) > 10 else "")
    markdown = (f"# Logs of {ctx.masker(shown)}\n\nThe last {len(sink.tail)} of {sink.lines} "
                f"lines.\n\n```text\n{body}\n```\n")
    try:
        create_markdown_artifact(markdown=markdown, description=f"k8s_logs: {ctx.step_name}"[:200])
    except Exception as exc:  # noqa: BLE001 - an artifact is a convenience: the step goes on
        ctx.emit(f"[ansflow] could not publish the logs artifact ({type(exc).__name__})",
                 stream="stderr")
        return False
    return True


@step_executor
def execute_k8s_logs(ctx: StepContext, config: K8sLogsConfig) -> StepResult:
    """Stream the logs of a pod or of the pods a selector matches into the step's log.

    Returns:
        Outputs ``pods`` (comma-separated names) and ``lines`` (how many were read).

    Raises:
        StepFailed: no such pod (closest names suggested), no pod matches the selector, no
            such container, or the API refused a pod's log.
        StepTimedOut / StepCancelled: the step's own deadline or a cancel stopped it. A
            ``follow`` that reaches its ``timeout`` ends the step successfully.
    """
    own = config.timeout if config.timeout is not None else (
        FOLLOW_DEFAULT if config.follow else None)
    budget = ctx.budget(own)
    cut_by_step = budget is not None and (own is None or budget < own)
    deadline = time.monotonic() + (budget if budget is not None else 86400.0)
    with cluster_session(ctx, config.cluster, config.namespace) as session:
        api, cluster, namespace = session.api, config.cluster or session.name, session.namespace
        target = config.pod or f"pods matching {config.pod_selector!r}"
        with api_errors(cluster, f"find {target} in namespace {namespace}"):
            pods = _find_pods(api, config, namespace)
        if len(pods) > MAX_PODS:
            ctx.emit(f"{len(pods)} pods match; reading the first {MAX_PODS} (by name)",
                     stream="stderr")
            pods = pods[:MAX_PODS]
        chosen = []
        for pod in pods:
            container, why = pick_container(pod, config.container)
            chosen.append((pod["metadata"]["name"], container))
            if config.pod_selector or why != "the only container":
                ctx.emit(f"logs of pod {pod['metadata']['name']}, container {container} ({why})")
        sink = LogCollector(ctx, prefixed=config.pod_selector is not None)
        streams = _Streams()
        errors: list = []
        unregister = ctx.on_cancel(streams.stop)
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), streams.stop)
        timer.daemon = True
        timer.start()
        threads = [threading.Thread(target=_read_pod, daemon=True, name=f"ansflow-logs-{name}",
                                    args=(api, config, namespace, name, container,
                                          config.follow, streams, sink, errors, deadline))
                   for name, container in chosen]
        stopped_at: float | None = None
        try:
            for thread in threads:
                thread.start()
            while any(thread.is_alive() for thread in threads):
                threads[0].join(0.2)
                now = time.monotonic()
                if stopped_at is None and (ctx.cancelled or now >= deadline or streams.stopped):
                    streams.stop()
                    stopped_at = now
                if stopped_at is not None and now - stopped_at >= STOP_GRACE:
                    break  # a reader still waiting for headers: left behind (daemon, bounded)
        finally:
            timer.cancel()
            unregister()
            streams.stop()
            with sink.lock:
                sink.closed = True
        names = [name for name, _ in chosen]
        publish_tail(ctx, sink, names)
        if ctx.cancelled:
            raise StepCancelled(f"the run was cancelled after {sink.lines} log lines")
        if errors:
            pod, exc = errors[0]
            with api_errors(cluster, f"read the log of pod {pod} in namespace {namespace}"):
                if isinstance(exc, KubeError):
                    raise exc
                raise StepFailed(f"reading the log of pod {pod} in namespace {namespace} "
                                 f"failed ({type(exc).__name__})")
        if streams.stopped and time.monotonic() >= deadline - 0.05 and (
                config.follow or cut_by_step):
            if cut_by_step:
                raise StepTimedOut(f"the step's timeout stopped the logs after {sink.lines} "
                                   "lines")
            ctx.emit(f"stopped following after {own:.0f} s (timeout)")
    return StepResult(outputs={"pods": ",".join(names), "lines": str(sink.lines)})


@step_task("k8s_logs", execute_k8s_logs)
def k8s_logs(
    *,
    cluster: str | KubernetesCluster | None = None,
    namespace: str | None = None,
    pod: str | None = None,
    pod_selector: str | None = None,
    container: str | None = None,
    tail_lines: int | None = None,
    since_seconds: float | str | None = None,
    previous: bool = False,
    follow: bool = False,
    timeout: float | None = None,
    since: float | str | None = None,
) -> StepOutput:
    """Stream the logs of a pod, or of every pod a label selector matches (each line
    prefixed with ``[pod]``), into the run's log, masked and bounded; in a flow run, the last
    200 lines are also published as a markdown artifact.

    Args:
        cluster: A KubernetesCluster block, or the name of a saved one (required).
        namespace: The namespace (default: the block's namespace).
        pod: The pod's name (give this or ``pod_selector``).
        pod_selector: A label selector, e.g. ``app=web``.
        container: The container (default: the pod's default-container, else the first).
        tail_lines: Only the last N lines of each pod.
        since_seconds: Only lines newer than this: seconds, or ``"10m"``.
        previous: The previous (crashed) container's log.
        follow: Keep streaming until the pods end or ``timeout``.
        timeout: Seconds to follow (default 300); reaching it ends the step successfully.
        since: The same as ``since_seconds`` (``"10m"``, ``"1h"``).

    Returns:
        ``exit_code`` (None) and ``outputs``: ``pods`` (names) and ``lines`` (count).

    Raises:
        StepFailed: no such pod or container, no pod matches, the API refused.
        StepTimedOut / StepCancelled: the step's own timeout or a cancel stopped it.

    Example:
        ```python
        from ansflow.tasks import k8s_logs

        k8s_logs(cluster="prod", namespace="shop", pod_selector="app=web", tail_lines=100)
        ```
    """
    return run_cluster_task("k8s_logs", execute_k8s_logs, K8sLogsConfig, locals())
