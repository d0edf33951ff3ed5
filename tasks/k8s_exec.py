"""The k8s_exec step: run a command in a pod (by name, or picked by label selector)."""

from __future__ import annotations

import collections
import time

from kubernetes import client as k8s

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.engines.kube import exec_streaming
from ansflow.engines.kube_kinds import PODS
from ansflow.engines.kube_objects import get_object, list_objects
from ansflow.engines.lines import LineSplitter
from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.k8s_rollout import pod_ready
from ansflow.runtime.k8s_session import api_errors, cluster_session
from ansflow.runtime.public import StepOutput, run_cluster_task, step_task
from ansflow.spec.steps import K8sExecConfig
from ansflow.tasks.command import command_argv

SECRET_PREFIX = "ANSFLOW_SECRET_"
POD_GRACE = 30.0  # seconds to wait for a Running+Ready pod to match a selector
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


def exec_argv(command: str | list[str]) -> list[str]:
    """The same meaning as a command step's: a string runs through `sh -e -c`, a list is the
    argv as is."""
    return command_argv([str(part) for part in command] if isinstance(command, list)
                        else command, "sh")


def secrets_prelude(argv: list[str], secrets: dict[str, str]) -> tuple[list[str], bytes]:
    """``argv`` run so that it finds ``secrets`` in its environment although a pod exec has
    none to set: a small sh prelude reads them from stdin (one line each, every byte as a
    printf octal escape), exports them, closes stdin and execs ``argv``. Returns the new argv
    and the stdin bytes."""
    lines, reads = [], []
    for name in secrets:
        reads.append(f'IFS= read -r {name} && {name}=$(printf "%b" "${name}"; echo .) && '
                     f'{name}="${{{name}%.}}" && export {name}')
    for value in secrets.values():
        lines.append("".join(f"\\0{b:03o}" for b in value.encode()) + "\n")
    prelude = " && ".join(reads) + ' && exec "$@" </dev/null'
    return ["sh", "-c", prelude, "sh", *argv], "".join(lines).encode()


def pick_pod(pods: list[dict]) -> dict | None:
    """The oldest Running+Ready pod (ties by name), so repeated runs pick the same one."""
    ready = [p for p in pods if pod_ready(p)]
    ready.sort(key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
    return ready[0] if ready else None


def pick_container(pod: dict, wanted: str | None) -> tuple[str, str]:
    """(container, why): the named one (checked), else the default-container, else the only
    or first one."""
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    pod_name = pod["metadata"]["name"]
    if wanted:
        if wanted not in names:
            raise StepFailed(f"pod {pod_name!r} has no container {wanted!r} "
                             f"(it has: {', '.join(names) or 'none'})")
        return wanted, "as asked"
    if not names:
        raise StepFailed(f"pod {pod_name!r} has no containers")
    default = ((pod["metadata"].get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION))
    if default in names:
        return default, "the pod's default-container"
    if len(names) == 1:
        return names[0], "the only container"
    return names[0], f"the first of {len(names)}; set `container` to choose"


class LineEmitter:
    """Cuts chunks of output into lines per stream and emits each whole line at once."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.splitters = {name: LineSplitter(masker=ctx.masker) for name in ("stdout", "stderr")}
        self.tail: collections.deque[str] = collections.deque(maxlen=20)

    def __call__(self, stream: str, data: bytes) -> None:
        for line in self.splitters[stream].feed(data):
            self._emit(stream, line)

    def flush(self) -> None:
        for stream, splitter in self.splitters.items():
            for line in splitter.flush():
                self._emit(stream, line)

    def _emit(self, stream: str, text: str) -> None:
        self.ctx.emit(text, stream=stream)
        if stream == "stdout":
            self.tail.append(text)


def _find_pod(api: k8s.ApiClient, ctx: StepContext, config: K8sExecConfig, namespace: str,
              deadline: float) -> dict:
    if config.pod:
        pod = get_object(api, PODS, config.pod, namespace)
        if pod is None:
            raise StepFailed(f"pod {config.pod!r} not found in namespace {namespace}")
        phase = (pod.get("status") or {}).get("phase")
        if phase != "Running":
            raise StepFailed(f"pod {config.pod!r} in namespace {namespace} is {phase}, "
                             "not Running")
        return pod
    grace = min(deadline, time.monotonic() + POD_GRACE)
    said = False
    while True:
        pods = list_objects(api, PODS, namespace,
                            label_selector=config.pod_selector or "").get("items", [])
        chosen = pick_pod(pods)
        if chosen is not None:
            ready = sum(1 for p in pods if pod_ready(p))
            ctx.emit(f"chose pod {chosen['metadata']['name']} ({ready} Running+Ready of "
                     f"{len(pods)} matching {config.pod_selector!r})")
            return chosen
        if ctx.cancelled:
            raise StepCancelled("cancelled while looking for a pod")
        if time.monotonic() >= grace:
            raise StepFailed(f"no Running+Ready pod matches {config.pod_selector!r} in "
                             f"namespace {namespace} ({len(pods)} pods match, none ready)")
        if not said:
            ctx.emit(f"no Running+Ready pod matches {config.pod_selector!r} yet; waiting")
            said = True
        time.sleep(1.0)


@step_executor
def execute_k8s_exec(ctx: StepContext, config: K8sExecConfig) -> StepResult:
    """Run a command in a pod and stream its stdout/stderr live.

    Returns:
        exit_code 0 and outputs ``pod`` and ``container`` (where it ran), ``stdout_tail``
        (its last stdout line).

    Raises:
        StepFailed: no such pod/container, exec refused, or the command exited non-zero
            (``exit_code`` set).
        StepTimedOut / StepCancelled: stopped by the deadline or a cancel (the remote process
            is not killed: the API has no way to).
    """
    argv = exec_argv(config.command)
    if not argv:
        raise StepFailed("k8s_exec: the command is empty")
    shown = " ".join(argv)
    stdin_data = None
    # Secrets that the command's shell text refers to (set by the pipeline's templating).
    secrets = {k: v for k, v in ctx.env.items() if k.startswith(SECRET_PREFIX)}
    if secrets:
        argv, stdin_data = secrets_prelude(argv, secrets)
    budget = ctx.budget(config.timeout)
    deadline = time.monotonic() + (budget if budget is not None else 86400.0)
    emitter = LineEmitter(ctx)

    def check() -> None:
        if ctx.cancelled:
            raise StepCancelled("the run was cancelled; the exec connection was closed")
        if time.monotonic() >= deadline:
            raise StepTimedOut(f"the command ran past {budget:.0f} s; the exec connection "
                               "was closed (the process may still run in the pod)")

    with cluster_session(ctx, config.cluster, config.namespace) as session:
        api, namespace = session.api, session.namespace
        target = config.pod or f"pods matching {config.pod_selector!r}"
        with api_errors(config.cluster, f"find {target} in namespace {namespace}"):
            pod = _find_pod(api, ctx, config, namespace, deadline)
        name = pod["metadata"]["name"]
        container, why = pick_container(pod, config.container)
        ctx.emit(f"exec in pod {name}, container {container} ({why}): {shown}")
        with api_errors(config.cluster, f"exec in pod {name} in namespace {namespace}"):
            try:
                code = exec_streaming(api, namespace=namespace, pod=name, command=argv,
                                      container=container, on_output=emitter, check=check,
                                      stdin_data=stdin_data)
            finally:
                emitter.flush()
    outputs = {"pod": name, "container": container,
               "stdout_tail": emitter.tail[-1] if emitter.tail else ""}
    if code != 0:
        raise StepFailed(f"command exited with code {code} in pod {name} "
                         f"(namespace {namespace})", exit_code=code)
    return StepResult(exit_code=0, outputs=outputs)


@step_task("k8s_exec", execute_k8s_exec)
def k8s_exec(
    *,
    cluster: str | KubernetesCluster | None = None,
    command: str | list[str],
    namespace: str | None = None,
    pod: str | None = None,
    pod_selector: str | None = None,
    container: str | None = None,
    timeout: float | None = None,
) -> StepOutput:
    """Run a command in a pod, chosen by name or among the Running and Ready pods matching a
    label selector, with its output streamed live and its real exit code.

    Args:
        cluster: A KubernetesCluster block, or the name of a saved one (required).
        namespace: The namespace (default: the block's namespace).
        command: A command line (run by ``sh -e -c`` in the container) or an argv list.
        pod: The pod's name (give this or ``pod_selector``).
        pod_selector: A label selector, e.g. ``app=web``.
        container: The container, when the pod has several.
        timeout: Seconds before the exec is closed.

    Returns:
        ``exit_code`` (0) and ``outputs``: ``pod``, ``container`` and ``stdout_tail`` (the
        last line the command printed).

    Raises:
        StepFailed: no matching pod, or the command exited non-zero (``exit_code`` set).
        StepTimedOut / StepCancelled: the exec connection was closed.

    Example:
        ```python
        from ansflow.tasks import k8s_exec

        k8s_exec(cluster="prod", namespace="shop", pod_selector="app=web",
                 command=["./manage.py", "migrate"])
        ```
    """
    return run_cluster_task("k8s_exec", execute_k8s_exec, K8sExecConfig, locals())
