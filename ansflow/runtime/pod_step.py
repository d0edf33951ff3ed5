"""`runs_on: kubernetes`: a command or script step as a Pod in the step's cluster.

One pod per step attempt, in the step's namespace, with the step's image. The workspace goes
in as a tar stream over exec (as ``kubectl cp`` does, so any cluster that serves exec works);
``download:`` paths come back the same way. The environment, the command and an inline script
are in a Secret the pod owns (ansflow.engines.kube_pod). The step's lines are the pod's log,
followed live; its exit code is the container's terminated state. A timeout or a cancel
deletes the pod (and waits until it is gone); so does the end of every attempt.
"""

from __future__ import annotations

import os
import secrets
import shlex
import tarfile
import tempfile
import time
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client as k8s

from ansflow.engines.archive import BoundedSpool, Limits, extract
from ansflow.engines.kube_kinds import NODES, PODS, SECRETS
from ansflow.engines.kube_objects import KubeNotFound, get_object, request
from ansflow.engines.kube_pod import (
    CONTAINER,
    ENV_NAME,
    SCRIPT_KEY,
    SECRET_DIR,
    STEP_DIR,
    STEP_POD_LABEL,
    WORKSPACE,
    MarkedLog,
    PodSpecInput,
    owner_patch,
    pod_manifest,
    pod_name,
    pod_state,
    secret_manifest,
    terminated_reason,
)
from ansflow.engines.kube_pod_io import (
    PodExec,
    Stopped,
    StopSignal,
    StreamWriter,
    keep,
    regular_only,
    text_of,
)
from ansflow.engines.lines import clean_lines
from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.outputs import OutputFormatError, parse_outputs
from ansflow.paths import confine, lexically_outside
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.k8s_session import api_errors, cluster_session
from ansflow.runtime.remote import SCRIPT_PATH

# In the argv of a script step: the path of the step's script in the pod.
SCRIPT_IN_POD = f"{SECRET_DIR}/{SCRIPT_KEY}"
GONE_WAIT = 30.0  # seconds to wait for a stopped pod to be gone
END_WAIT = 120.0  # seconds for the kubelet to report a container that has ended
MERGE_PATCH = "application/merge-patch+json"


def step_script(argv: list[str], working_dir: str) -> str:
    """``step.sh``: go to the working directory in the pod's workspace and exec ``argv``."""
    q = shlex.quote
    target = WORKSPACE if working_dir == "." else f"{WORKSPACE}/{working_dir}"
    return (f"cd {q(target)} 2>/dev/null || {{ echo 'ansflow: working directory '{q(working_dir)}"
            "' does not exist in the pod' >&2; exit 125; }\n"
            "exec " + " ".join(q(SCRIPT_IN_POD if a == SCRIPT_PATH else a)
                               for a in argv) + "\n")


def pod_working_dir(working_dir: str | None) -> str:
    if not working_dir:
        return "."
    if "\0" in working_dir or os.path.isabs(working_dir) or lexically_outside(working_dir):
        raise StepFailed(f"working_dir {working_dir!r} is outside the workspace: in a pod it "
                         f"is a path relative to the pod's {WORKSPACE}")
    return os.path.normpath(working_dir)


def _download_paths(ctx: StepContext, paths: list[str]) -> list[str]:
    out = []
    for path in paths:
        if not path or "\0" in path or os.path.isabs(path) or lexically_outside(path):
            raise StepFailed(f"download {path!r} is outside the workspace: give a path "
                             "relative to the workspace")
        confine(path, ctx.workspace, "download")
        out.append(os.path.normpath(path))
    return out


@step_executor
def execute_in_pod(ctx: StepContext, config: Any, argv: list[str],
                   inline: str | None = None) -> StepResult:
    """Run ``argv`` (with an inline script's text, if any) for a command or script step in a
    pod of the step's cluster; see the module's docstring.

    Raises:
        StepFailed: non-zero exit (``exit_code``), the pod could not be scheduled or its
            container could not start (the reason given), a bad path, an API error.
        StepTimedOut / StepCancelled: the pod was deleted at the deadline / on cancel.
    """
    if not config.image:
        raise StepFailed("this step runs on kubernetes but names no image: set the step's "
                         "config.image or the pipeline's defaults.kubernetes.image")
    env = dict(ctx.env)
    for name in env:
        if not ENV_NAME.match(name):
            raise StepFailed(f"env {name!r} is not a valid environment variable name")
    working_dir = pod_working_dir(config.working_dir)
    downloads = _download_paths(ctx, list(config.download or []))
    upload = config.upload_workspace is not False
    name = pod_name(ctx.step_id, secrets.token_hex(3))
    mark = f"ansflow-{secrets.token_hex(16)}"
    plain = ctx.ansflow_env(workspace=WORKSPACE, output=f"{STEP_DIR}/outputs")
    env = {k: v for k, v in env.items() if k not in plain}
    stop = StopSignal(ctx, ctx.budget())
    try:
        with cluster_session(ctx, config.cluster, config.namespace) as session:
            namespace = session.namespace or "default"
            labels = {**ctx.labels, "app.kubernetes.io/managed-by": "ansflow",
                      STEP_POD_LABEL: "true"}
            spec = PodSpecInput(
                name=name, namespace=namespace, image=config.image, labels=labels,
                env_names=list(env), plain_env=plain, mark=mark, wait_workspace=upload,
                hold=bool(downloads), timeout=ctx.budget(),
                service_account=config.service_account, node_selector=config.node_selector,
                tolerations=config.tolerations, resources=config.resources)
            run = _PodRun(ctx, session.api, session.name, namespace, name, stop)
            with api_errors(session.name, f"run the step's pod in namespace {namespace}"):
                return run.run(spec, secret_manifest(name, namespace, labels, env,
                                                     step_script(argv, working_dir), inline),
                               upload, downloads, mark)
    finally:
        stop.close()


class _PodRun:
    """One attempt's pod, from its Secret to its deletion."""

    def __init__(self, ctx: StepContext, api: k8s.ApiClient, cluster: str, namespace: str,
                 name: str, stop: StopSignal) -> None:
        self.ctx, self.api, self.cluster = ctx, api, cluster
        self.namespace, self.name, self.stop = namespace, name, stop
        self.ended = False
        self._exec = PodExec(api, namespace, name, CONTAINER, stop)

    def run(self, spec: PodSpecInput, secret: dict, upload: bool, downloads: list[str],
            mark: str) -> StepResult:
        ctx = self.ctx
        created = False
        try:
            request(self.api, "POST", SECRETS.path(self.namespace), body=secret)
            pod = request(self.api, "POST", PODS.path(self.namespace), body=pod_manifest(spec))
            created = True
            request(self.api, "PATCH", SECRETS.path(self.namespace, self.name),
                    body=owner_patch(pod), content_type=MERGE_PATCH)
            ctx.emit(f"pod {self.name} in namespace {self.namespace} ({spec.image})")
            state = self._wait(lambda s: s.started, "to start")
            if upload and state.terminated is None:
                self._upload()
            log = self._follow(mark)
            if downloads or log.exit_code is None:
                state = pod_state(self._get())
            if downloads and log.exit_code is not None and state.terminated is None:
                self._release(downloads if log.exit_code == 0 else [])
            state = self._wait(lambda s: s.terminated is not None, "to end", END_WAIT)
            self.ended = True
            return self._result(log, state.terminated or {})
        except Stopped as stopped:
            if stopped.reason == "timeout":
                raise StepTimedOut(f"timed out after {ctx.timeout:g}s; the pod {self.name} "
                                   "was deleted") from None
            raise StepCancelled(f"cancelled; the pod {self.name} was deleted") from None
        finally:
            self._delete(created)

    # ---- phases --------------------------------------------------------------------------

    def _get(self) -> dict:
        pod = get_object(self.api, PODS, self.name, self.namespace)
        if pod is None:
            raise StepFailed(f"the step's pod {self.name} is gone (deleted by someone else?)")
        return pod

    def _wait(self, done: Callable[[Any], bool], what: str, cap: float | None = None) -> Any:
        """Watch the pod until ``done(pod_state)``; fail fast when it is stuck."""
        give_up = time.monotonic() + cap if cap is not None else None
        checked_node = False
        pod = self._get()
        while True:
            state = pod_state(pod)
            if state.node and not checked_node:
                self._check_node(state.node)
                checked_node = True
            if done(state):
                return state
            if state.stuck:
                raise StepFailed(f"the step's pod {self.name} cannot run: {state.stuck}")
            self.stop.check()
            if give_up is not None and time.monotonic() >= give_up:
                raise StepFailed(f"the step's pod {self.name} did not get {what} within "
                                 f"{cap:.0f} s ({state.progress})")
            seconds = self.stop.left(30.0)
            if give_up is not None:
                seconds = min(seconds, max(0.0, give_up - time.monotonic()))
            pod = self._watch_once(pod, max(1.0, seconds), done) or self._get()

    def _watch_once(self, pod: dict, seconds: float, done: Callable[[Any], bool]
                    ) -> dict | None:
        query = [("watch", "true"), ("fieldSelector", f"metadata.name={self.name}"),
                 ("resourceVersion", pod["metadata"].get("resourceVersion", "0")),
                 ("timeoutSeconds", str(int(seconds)))]
        try:
            response = request(self.api, "GET", PODS.path(self.namespace), query=query,
                               stream=True, timeout=(10, seconds + 10))
        except KubeNotFound:
            return None
        self.stop.watch(response)
        latest = None
        try:
            import json  # noqa: PLC0415

            from kubernetes.watch.watch import iter_resp_lines  # noqa: PLC0415
            for line in iter_resp_lines(response):
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") in ("ADDED", "MODIFIED"):
                    latest = event["object"]
                    state = pod_state(latest)
                    if done(state) or state.stuck:
                        return latest
                elif event.get("type") == "DELETED":
                    raise StepFailed(f"the step's pod {self.name} was deleted by someone else")
                else:  # ERROR (410 Gone...): read the pod again
                    return latest
        except (urllib3.exceptions.HTTPError, OSError, ValueError):
            self.stop.check()
        finally:
            response.close()
            response.release_conn()
        return latest

    def _check_node(self, node: str) -> None:
        """Refuse a kwok node: it runs no containers, and its exec runs on kwok's host."""
        try:
            obj = get_object(self.api, NODES, node, None)
        except Exception:  # noqa: BLE001 - no right to read nodes: nothing to check
            return
        annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
        if "kwok.x-k8s.io/node" in annotations:
            raise StepFailed(
                f"the step's pod {self.name} was scheduled to {node}, a kwok node that runs "
                "no containers",
                hint="steps in pods need a real node: on the dev cluster start it with "
                     "`ansflow dev-cluster up --real-node` (its kwok nodes are then tainted, "
                     "so pods land on the real node; see docs/k8s-steps.md)")

    def _upload(self) -> None:
        """The workspace as a tar stream into the pod's /workspace, then the ready flag."""
        argv = ["sh", "-c", f'tar xf - -C {WORKSPACE} && : > {STEP_DIR}/ready']
        errors = bytearray()

        def produce(write: Callable[[bytes], None]) -> None:
            with tarfile.open(fileobj=StreamWriter(write), mode="w|") as tar:
                for entry in sorted(os.listdir(self.ctx.workspace)):
                    tar.add(os.path.join(self.ctx.workspace, entry), arcname=entry,
                            filter=regular_only)

        code = self._exec.exec_(argv, lambda chunk: None, lambda chunk: keep(errors, chunk),
                          produce)
        if code != 0:
            raise StepFailed(f"copying the workspace into the pod failed (exit {code}): "
                             f"{text_of(errors)}",
                             hint="the step's image needs sh and tar, as kubectl cp does")

    def _release(self, downloads: list[str]) -> None:
        """Copy ``downloads`` out of the pod (when given), then let the wrapper end."""
        script = (f'cd {WORKSPACE} && tar cf - -- "$@"; rc=$?; : > {STEP_DIR}/release; '
                  'exit $rc')
        errors = bytearray()
        limits = Limits.from_env()
        source = f"the pod {self.name}"
        with tempfile.TemporaryFile() as spool:
            sink = BoundedSpool(spool, limits.stream_bytes, source)
            code = self._exec.exec_(["sh", "-c", script, "sh", *downloads], sink.write,
                                    lambda chunk: keep(errors, chunk))
            if not downloads:
                return
            if code != 0:
                raise StepFailed(f"download {', '.join(map(repr, downloads))} from the pod "
                                 f"failed: {text_of(errors) or f'exit {code}'}")
            spool.seek(0)
            done = extract(spool, self.ctx.workspace, downloads, source, limits)
        note = done.skipped_note()
        if note:
            self.ctx.emit(f"[ansflow] {note}", stream="stderr")

    def _follow(self, mark: str) -> MarkedLog:
        """The pod's log, followed to its end: step lines emitted, outputs and code kept."""
        log = MarkedLog(mark)
        query = [("follow", "true"), ("container", CONTAINER)]
        path = PODS.path(self.namespace, self.name) + "/log"
        for attempt in range(20):
            try:
                response = request(self.api, "GET", path, query=query, stream=True,
                                   timeout=(10, None))
                break
            except Exception as exc:  # noqa: BLE001 - "waiting to start" right after start
                self.stop.check()
                if attempt == 19:
                    raise
                del exc
                time.sleep(0.1)
        self.stop.watch(response)
        try:
            for chunk in response.stream(65536, decode_content=True):
                self._show(log.feed(chunk))
                if log.exit_code is not None:
                    break
        except (urllib3.exceptions.HTTPError, OSError, ValueError):
            self.stop.check()
        finally:
            response.close()
            response.release_conn()
        self._show(log.flush())
        self.stop.check()
        return log

    def _show(self, lines: list[bytes]) -> None:
        if lines:
            self.ctx.emit_lines(clean_lines(lines))

    def _result(self, log: MarkedLog, terminated: dict) -> StepResult:
        code = terminated.get("exitCode")
        if code is None:
            code = log.exit_code if log.exit_code is not None else -1
        if log.exit_code is None:
            raise StepFailed(f"the step's container ended before the step finished "
                             f"({terminated_reason(terminated)}, exit code {code})",
                             exit_code=code or -1)
        if log.too_big:
            raise StepFailed("$ANSFLOW_OUTPUT is larger than 1 MiB")
        try:
            outputs = parse_outputs(log.outputs_text)
        except OutputFormatError as exc:
            raise StepFailed(f"bad $ANSFLOW_OUTPUT content: {exc}") from exc
        if code != 0:
            raise StepFailed(f"exited with code {code} in pod {self.name}", exit_code=code)
        return StepResult(exit_code=0, outputs=outputs)

    # ---- exec and cleanup ----------------------------------------------------------------

    def _delete(self, created: bool) -> None:
        """Delete the pod (waiting until it is gone unless it had ended) and its Secret."""
        api = self.api
        try:
            if created:
                query = [("gracePeriodSeconds", "0" if self.ended else "1")]
                try:
                    request(api, "DELETE", PODS.path(self.namespace, self.name), query=query)
                except KubeNotFound:
                    pass
                if not self.ended:
                    give_up = time.monotonic() + GONE_WAIT
                    while time.monotonic() < give_up and \
                            get_object(api, PODS, self.name, self.namespace) is not None:
                        time.sleep(0.2)
            try:
                request(api, "DELETE", SECRETS.path(self.namespace, self.name))
            except KubeNotFound:
                pass
        except Exception as exc:  # noqa: BLE001 - the step's outcome stands; say what is left
            self.ctx.emit(f"[ansflow] could not delete the step's pod {self.name} in "
                          f"namespace {self.namespace}: {exc} (the cleanup flow removes it "
                          "by its run labels)", stream="stderr")
