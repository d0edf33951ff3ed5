"""The `apply` operation: a manifest (YAML text, several documents) applied with server-side
apply under the field manager `ansflow`, or a server-side dry run showing the diff."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from ansflow.engines.kube_objects import (
    KubeNotFound,
    Resource,
    apply_object,
    get_object,
    resolve_kind,
)
from ansflow.errors import StepFailed
from ansflow.manage import ObjectRef, OperationResult, register
from ansflow.manage.present import fenced, object_diff, table
from ansflow.manage.validation import (
    Problems,
    check_dns_label,
    check_object_name,
    require_namespace,
)
from ansflow.runtime.k8s_session import api_errors, wrong_types
from ansflow.spec.yaml_loader import YamlError, load_plain_all
from ansflow.tasks.k8s_deploy import (  # discovery, CRDs of the batch; the scope rule
    object_scopes,
    refuse_out_of_scope,
)

MAX_MANIFEST_BYTES = 1024 * 1024  # the API server's own request limit is ~3 MiB
MAX_OBJECTS = 200
CRD_WAIT = 30.0  # seconds a kind defined by a CRD of the same manifest may take to be served


def parse_manifest(text: str) -> list[dict]:
    """The objects of a manifest from a run form (untrusted): plain YAML only, bounded.

    ``kind: ...List`` documents are expanded into their items.

    Raises:
        StepFailed: too big, not YAML (the position and the problem, never the text),
            YAML tags, or a document that is not an object with apiVersion, kind and
            metadata.name.
    """
    if isinstance(text, dict | list):
        # `prefect deployment run --param` reads JSON first: a JSON manifest arrives parsed
        # (and goes through the same loader and bounds as text, JSON being YAML).
        text = "\n---\n".join(json.dumps(doc) for doc in
                               (text if isinstance(text, list) else [text]))
    if not isinstance(text, str) or not text.strip():
        raise StepFailed("manifest is empty: paste one or more YAML documents")
    size = len(text.encode("utf-8", "replace"))
    if size > MAX_MANIFEST_BYTES:
        raise StepFailed(f"manifest is {size} bytes: at most {MAX_MANIFEST_BYTES} are accepted",
                         hint="apply it in parts, or with a k8s_deploy step from a file")
    try:
        docs = load_plain_all(text, "manifests")
    except YamlError as exc:
        at = f" at line {exc.position.line}, column {exc.position.col}" if exc.position else ""
        raise StepFailed(f"manifest is not valid YAML{at}: {exc}") from None
    objects: list[Any] = []
    for doc in docs:
        if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") \
                and isinstance(doc.get("items"), list):
            objects.extend(doc["items"])
        else:
            objects.append(doc)
    if not objects:
        raise StepFailed("manifest holds no objects")
    if len(objects) > MAX_OBJECTS:
        raise StepFailed(f"manifest holds {len(objects)} objects: at most {MAX_OBJECTS} at once")
    for index, obj in enumerate(objects, 1):
        if not isinstance(obj, dict):
            raise StepFailed(f"manifest: document {index} is not a mapping")
        meta = obj.get("metadata")
        missing = [k for k in ("apiVersion", "kind") if not isinstance(obj.get(k), str)
                   or not obj.get(k)]
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) \
                or not meta.get("name"):
            missing.append("metadata.name")
        if missing:
            kind = obj.get("kind") if isinstance(obj.get("kind"), str) else "no kind"
            raise StepFailed(f"manifest: document {index} ({kind}) has no {', '.join(missing)}")
    problems = Problems("manifest")
    for index, obj in enumerate(objects, 1):
        meta = obj["metadata"]
        check_object_name(problems, f"document {index}: metadata.name", meta["name"])
        if meta.get("namespace") is not None:
            check_dns_label(problems, f"document {index}: metadata.namespace",
                            meta["namespace"])
    problems.raise_if_any()  # names go into URL paths: "../secrets/x" never reaches one
    refuse_secret_values(objects)
    return objects


def refuse_secret_values(objects: list[dict]) -> None:
    """A Secret carrying values may not come through a run form: flow-run parameters are
    stored in clear on the Prefect server, so no secret value may ever be one.

    Raises:
        StepFailed: naming each such Secret (never a value).
    """
    found = [f"object {index} (secret/{obj['metadata']['name']})"
             for index, obj in enumerate(objects, 1)
             if obj.get("kind") == "Secret" and (obj.get("data") or obj.get("stringData"))]
    if found:
        raise StepFailed(
            f"manifest: nothing applied: {', '.join(found[:10])} carr"
            f"{'ies' if len(found) == 1 else 'y'} values in data / stringData, and run "
            "parameters are stored in clear on the Prefect server",
            hint="create Secrets with the `secret` operation (ansflow-k8s/secret), whose values "
                 "come from Prefect Secret blocks; a Secret here may only set labels, "
                 "annotations or its type")


def check_scopes(objects: list[dict], scopes: list[bool], namespace: str,
                 allow_cluster_scoped: bool) -> None:
    """Refuse, before anything is applied, objects in another namespace than the form's and
    cluster-scoped objects not allowed; every offending object is named.

    Raises:
        StepFailed: one or more objects refused.
    """
    refuse_out_of_scope(
        objects, scopes, [f"object {index} ({obj['kind'].lower()}/{obj['metadata']['name']})"
                          for index, obj in enumerate(objects, 1)],
        namespace, allow_cluster_scoped, target="this apply is for",
        fix="choose that namespace", setting="allow_cluster_scoped",
        prefix="manifest: nothing applied: ")


def _state(live: dict | None, result: dict, dry_run: bool, diff: str) -> str:
    if live is None:
        return "would create" if dry_run else "created"
    if dry_run:
        return "would change" if diff else "unchanged"
    old = (live.get("metadata") or {}).get("resourceVersion")
    return "unchanged" if (result.get("metadata") or {}).get("resourceVersion") == old \
        else "configured"


def _served_kind(ctx, session, obj: dict) -> Resource:
    """The Resource of a kind a CRD applied just before defines: the API server serves it a
    moment after the CRD is created (once Established), so discovery is asked again for a
    while.

    Raises:
        StepFailed: still not served after CRD_WAIT seconds (or the run's deadline).
    """
    budget = ctx.budget(CRD_WAIT)
    deadline = time.monotonic() + (budget if budget is not None else CRD_WAIT)
    with api_errors(session.name, f"look up kind {obj['kind']} ({obj['apiVersion']})"):
        while True:
            try:
                return resolve_kind(session.api, obj["apiVersion"], obj["kind"])
            except KubeNotFound:
                if time.monotonic() >= deadline or ctx.cancelled:
                    raise
                time.sleep(0.5)


def _preview(session, planned: list[tuple[Resource | None, dict]], force: bool
             ) -> list[tuple[dict | None, dict] | None]:
    """A server-side dry run of every object before any is applied, so that a refusal of
    the third object leaves the first two as they were: (live, dry-run answer) per object,
    None for objects of a kind a CRD of the same manifest defines (checked when applied).

    Raises:
        StepFailed: an object was refused (conflict, invalid, forbidden...).
    """
    previews: list[tuple[dict | None, dict] | None] = []
    for res, obj in planned:
        if res is None:
            previews.append(None)
            continue
        meta = obj["metadata"]
        ref = res.ref(meta["name"], meta.get("namespace"))
        with wrong_types(), api_errors(session.name, f"apply (server-side, dry run) {ref}"):
            live = get_object(session.api, res, meta["name"], meta.get("namespace"))
            previews.append((live, apply_object(session.api, res, obj, dry_run=True,
                                                force=force)))
    return previews


@register("apply")
def apply(ctx, session, *, manifest: str, dry_run: bool = False,
          force_conflicts: bool = False, allow_cluster_scoped: bool = False
          ) -> OperationResult:
    """Apply a manifest with server-side apply (field manager `ansflow`).

    Args:
        manifest: One or more YAML documents (separated by ---): any kinds the cluster
            serves. Objects without a namespace go to the chosen namespace.
        dry_run: Server-side dry run: shows the diff of what would change, changes nothing.
        force_conflicts: Take over fields other field managers own; without it such a
            conflict is refused, naming each field and its manager.
        allow_cluster_scoped: Allow cluster-scoped objects (Namespace, ClusterRole, CRD...).

    Returns:
        Outputs ``objects`` (kind/name, comma-separated) and ``states`` (created /
        configured / unchanged, or would create / would change, in the same order); the
        diff of each object as markdown.

    Raises:
        StepFailed: a bad manifest, an object outside the namespace, a conflict, a refusal
            by the API server (nothing is applied when any object fails the dry run).
    """
    objects = parse_manifest(manifest)
    api, cluster = session.api, session.name
    namespace = require_namespace("apply", session.namespace)
    kinds: dict[tuple[str, str], Resource] = {}
    check_scopes(objects, object_scopes(api, cluster, objects, kinds), namespace,
                 allow_cluster_scoped)
    planned: list[tuple[Resource | None, dict]] = []
    for obj in objects:
        res = kinds.get((obj["apiVersion"], obj["kind"]))  # None: its CRD is in this batch
        meta = obj["metadata"]
        if res is None or res.namespaced:
            meta["namespace"] = meta.get("namespace") or namespace
        else:
            meta.pop("namespace", None)
        planned.append((res, obj))
    previews = _preview(session, planned, force_conflicts)
    report = _Report(ctx)
    for (res, obj), preview in zip(planned, previews, strict=True):
        meta = obj["metadata"]
        if res is None and dry_run:
            # Its CRD is only dry-run created: the server cannot check this object yet.
            report.add(f"{obj['kind'].lower()}/{meta['name']}", obj, None, "would create",
                       "", note=" (its kind is defined by this manifest: not checked)")
            continue
        try:
            if res is None:
                res = _served_kind(ctx, session, obj)
            ref = res.ref(meta["name"], meta.get("namespace"))
            if preview is not None and dry_run:
                live, result = preview
            else:
                with wrong_types(), api_errors(cluster, f"apply {ref}"):
                    live = get_object(api, res, meta["name"], meta.get("namespace"))
                    result = apply_object(api, res, obj, dry_run=dry_run,
                                          force=force_conflicts)
        except StepFailed as exc:
            if dry_run or not report.refs:
                raise
            raise type(exc)(f"{exc} (applied before this failure: {report.done()})",
                            exit_code=exc.exit_code) from exc
        diff = object_diff(live, result, label=f"{res.kind.lower()}/{meta['name']}")
        report.add(ref, obj, live, _state(live, result, dry_run, diff), diff)
    first = objects[0]["metadata"]
    first_res = kinds.get((objects[0]["apiVersion"], objects[0]["kind"]))
    target = ObjectRef(cluster, objects[0]["kind"], first["name"],
                       first.get("namespace") if first_res is None or first_res.namespaced
                       else None)
    return report.result(target, dry_run)


@dataclass
class _Report:
    """What an apply did to each object, in order, for the log and the result."""

    ctx: Any
    refs: list[str] = field(default_factory=list)  # kind/name
    states: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)
    before: dict[str, str] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)

    def add(self, ref: str, obj: dict, live: dict | None, state: str, diff: str,
            note: str = "") -> None:
        self.ctx.emit(f"{ref}: {state}{note}")
        self.refs.append(f"{obj['kind'].lower()}/{obj['metadata']['name']}")
        self.states.append(state)
        self.rows.append([ref, state + note])
        self.before[ref] = "absent" if live is None else "present"
        self.after[ref] = state
        if diff:
            self.diffs.append(f"### {ref}: {state}\n\n{fenced(diff, 'diff')}")

    def done(self) -> str:
        return ", ".join(f"{r} {s}" for r, s in zip(self.refs, self.states, strict=True))

    def result(self, target: ObjectRef, dry_run: bool) -> OperationResult:
        counts = ", ".join(f"{self.states.count(s)} {s}" for s in dict.fromkeys(self.states))
        mode = "dry run: " if dry_run else ""
        markdown = (("Server-side dry run: nothing was changed.\n\n" if dry_run else "")
                    + table(["object", "result"], self.rows) + "\n" + "\n".join(self.diffs))
        return OperationResult(
            target=target,
            summary=f"{mode}applied {len(self.refs)} object(s) to cluster {target.cluster!r}: "
                    f"{counts}",
            outputs={"objects": ",".join(self.refs), "states": ",".join(self.states)},
            before=self.before, after=self.after, markdown=self.ctx.masker(markdown),
            changed=not dry_run and any(s in ("created", "configured") for s in self.states))
