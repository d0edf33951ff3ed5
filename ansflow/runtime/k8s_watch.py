"""Watching one Kubernetes object until it reaches a condition: the wait k8s_wait, k8s_deploy,
k8s_delete and the management forms share (rollout, ready, available, deleted, ...)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import urllib3
from kubernetes import client as k8s

from ansflow.engines.kube_cluster import container_log
from ansflow.engines.kube_objects import (
    Resource,
    get_object,
    list_objects,
    resolve_kind,
    watch_events,
)
from ansflow.engines.untrusted import clean_text
from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.runtime.base import StepContext
from ansflow.runtime.k8s_rollout import (
    REVISION_ANNOTATION,
    Verdict,
    evaluate,
    selector_string,
    stuck_container,
)
from ansflow.spec.conditions import WaitCondition

POD_CHECK_EVERY = 2.0  # seconds between looks at the rollout's pods (fail fast)
WATCH_WINDOW = 5  # seconds per watch request; a closed window resumes from resourceVersion


@dataclass
class _Watcher:
    """What one wait carries between watch windows."""

    api: k8s.ApiClient
    ctx: StepContext
    res: Resource
    name: str
    namespace: str | None
    cond: WaitCondition
    fail_fast: bool
    last_progress: str = ""
    last_pod_check: float = 0.0
    open_responses: list = field(default_factory=list)

    def report(self, verdict: Verdict) -> None:
        if verdict.progress and verdict.progress != self.last_progress:
            self.ctx.emit(verdict.progress)
            self.last_progress = verdict.progress

    def check(self, obj: dict, *, force_pods: bool = False) -> bool:
        """Evaluate the object (and its pods); True when done, StepFailed when it never will."""
        verdict = evaluate(obj, self.cond)
        self.report(verdict)
        if verdict.failed:
            raise StepFailed(f"{self.res.ref(self.name, self.namespace)}: {verdict.failed}")
        if verdict.done:
            return True
        now = time.monotonic()
        if self.fail_fast and (force_pods or now - self.last_pod_check >= POD_CHECK_EVERY):
            self.last_pod_check = now
            kind = obj.get("kind")
            stuck = stuck_container(rollout_pods(self.api, obj), final_exits=kind == "Pod",
                                    restarts=kind != "Job")
            if stuck:
                raise StepFailed(f"{self.res.ref(self.name, self.namespace)} will not become "
                                 f"ready: {stuck[0]}{crash_report(self.api, *stuck[1:])}",
                                 hint="set fail_fast: false to keep waiting anyway")
        return False

    def abort_watch(self) -> None:
        for response in list(self.open_responses):
            try:
                response.shutdown()
            except Exception:  # noqa: BLE001 - best effort: the read then fails and we stop
                pass


CRASH_LINES = 10


def crash_report(api: k8s.ApiClient, pod: dict, status: dict) -> str:
    """For a container that ran and died: its exit code and the last lines it wrote (the
    ended container's own log when it has not been restarted yet, else the previous
    container's), as text to append to the failure.
    The lines come from the cluster: control characters are dropped, lengths bounded."""
    last = ((status.get("state") or {}).get("terminated")) or {}
    previous = not last
    last = last or ((status.get("lastState") or {}).get("terminated")) or {}
    if not last:
        return ""
    meta = pod.get("metadata") or {}
    report = f"; it exited with code {last.get('exitCode')}"
    if last.get("reason"):
        report += f" ({clean_text(str(last['reason']), 60)})"
    try:
        text = container_log(api, meta.get("namespace"), meta.get("name"), status.get("name"),
                             previous=previous, tail_lines=CRASH_LINES, limit_bytes=8192)
    except Exception:  # noqa: BLE001 - the log is a courtesy: the failure stands without it
        return report
    lines = [clean_text(line, 300) for line in str(text or "").splitlines()[-CRASH_LINES:]]
    if lines:
        report += "; its last lines:\n" + "\n".join(f"  {line}" for line in lines)
    return report


def rollout_pods(api: k8s.ApiClient, obj: dict) -> list[dict]:
    """The pods a wait on `obj` depends on (the new ReplicaSet's pods for a Deployment)."""
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    if kind == "Pod":
        return [obj]
    if kind not in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return []
    selector = selector_string((obj.get("spec") or {}).get("selector"))
    if not selector:
        return []
    namespace = meta.get("namespace")
    if kind == "Deployment":
        revision = (meta.get("annotations") or {}).get(REVISION_ANNOTATION)
        rs_res = resolve_kind_cached(api, "apps/v1", "ReplicaSet")
        for rs in list_objects(api, rs_res, namespace, label_selector=selector).get("items", []):
            rs_meta = rs.get("metadata") or {}
            owned = any(o.get("uid") == meta.get("uid")
                        for o in rs_meta.get("ownerReferences") or [])
            if owned and (rs_meta.get("annotations") or {}).get(REVISION_ANNOTATION) == revision:
                template_hash = (rs_meta.get("labels") or {}).get("pod-template-hash")
                if template_hash:
                    selector += f",pod-template-hash={template_hash}"
                break
    elif kind == "StatefulSet":
        update = (obj.get("status") or {}).get("updateRevision")
        if update:
            selector += f",controller-revision-hash={update}"
    pod_res = Resource("v1", "Pod", "pods", True)
    return list_objects(api, pod_res, namespace, label_selector=selector).get("items", [])


def resolve_kind_cached(api: k8s.ApiClient, api_version: str, kind: str) -> Resource:
    # ReplicaSets and Pods never move: no discovery call needed for them.
    if (api_version, kind) == ("apps/v1", "ReplicaSet"):
        return Resource("apps/v1", "ReplicaSet", "replicasets", True)
    return resolve_kind(api, api_version, kind)


def wait_for(api: k8s.ApiClient, ctx: StepContext, res: Resource, name: str,
             namespace: str | None, cond: WaitCondition, *, deadline: float,
             fail_fast: bool = True, what: str | None = None,
             uid: str | None = None) -> dict | None:
    """Watch `name` until `cond` holds; returns the object (None once deleted).

    With ``uid`` (deleted mode), an object of the same name but another uid counts as gone:
    its controller made a new one (a StatefulSet's pod), as ``kubectl delete --wait`` sees it.

    Raises:
        StepFailed: the object is missing or deleted, or will never get there (failed
            rollout, stuck pod, failed Job, paused Deployment).
        StepTimedOut: `deadline` (time.monotonic) passed first.
        StepCancelled: the run was cancelled.
    """
    ref = res.ref(name, namespace)
    what = what or cond.mode
    watcher = _Watcher(api, ctx, res, name, namespace, cond, fail_fast)
    unregister = ctx.on_cancel(watcher.abort_watch)
    def replaced(current: dict | None) -> bool:
        return cond.mode == "deleted" and current is not None and bool(uid) and \
            (current.get("metadata") or {}).get("uid") != uid

    def gone(how: str = "") -> None:
        ctx.emit(f"{ref} is gone{how}")

    def ended(failure: str) -> None:
        # The object is gone: what a wait for its deletion waits for, else a failure.
        if cond.mode != "deleted":
            raise StepFailed(failure)
        gone()

    renewed = " (a new object of the same name replaced it)"
    try:
        obj = get_object(api, res, name, namespace)
        if obj is None:
            ended(f"{ref} not found")
            return None
        if replaced(obj):
            gone(renewed)
            return None
        if watcher.check(obj, force_pods=True):
            return obj
        version = obj["metadata"]["resourceVersion"]
        while True:
            _stop_if_due(ctx, deadline, ref, what, watcher.last_progress)
            window = max(1, min(WATCH_WINDOW, int(deadline - time.monotonic()) or 1))
            try:
                for event in watch_events(api, res, namespace, name, version, window,
                                          on_open=watcher.open_responses.append):
                    kind, body = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if body.get("code") == 410:  # too old: re-list, then watch again
                            again = get_object(api, res, name, namespace)
                            if cond.mode == "deleted" and (again is None or replaced(again)):
                                gone("" if again is None else renewed)
                                return None
                            obj = again or obj
                            version = obj["metadata"]["resourceVersion"]
                            break
                        raise StepFailed(f"watching {ref} failed: {body.get('message')}")
                    version = (body.get("metadata") or {}).get("resourceVersion", version)
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        ended(f"{ref} was deleted while waiting for {what}")
                        return None
                    if replaced(body):
                        gone(renewed)
                        return None
                    obj = body
                    obj.setdefault("kind", res.kind)
                    if watcher.check(obj):
                        return obj
            except (urllib3.exceptions.HTTPError, OSError):
                # A dropped watch resumes from the last resourceVersion, unless we stopped it.
                _stop_if_due(ctx, deadline, ref, what, watcher.last_progress)
            finally:
                watcher.open_responses.clear()
            if cond.mode != "deleted" and watcher.check(obj, force_pods=True):
                return obj
    finally:
        unregister()


def _stop_if_due(ctx: StepContext, deadline: float, ref: str, what: str, progress: str) -> None:
    if ctx.cancelled:
        raise StepCancelled(f"stopped waiting for {ref}: the run was cancelled")
    if time.monotonic() >= deadline:
        last = f" (last status: {progress})" if progress else ""
        raise StepTimedOut(f"{ref} did not reach {what} in time{last}")
