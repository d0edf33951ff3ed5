"""k8s_deploy with `helm:`: `helm upgrade --install` through the one subprocess runner."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from ansflow.engines.kube_errors import KubeNameError
from ansflow.engines.kube_names import check_namespace
from ansflow.engines.process import run_process
from ansflow.engines.reaper import private_dir
from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.paths import confine
from ansflow.runtime.base import StepContext, StepResult
from ansflow.spec.steps import K8sDeployConfig

HELM_QUERY_SECONDS = 60.0  # `helm status` / `helm get manifest` after the install
HELM_OUTPUT_LINE_BYTES = 16 * 1024 * 1024  # status JSON is one line: never cut it

# helm's post-renderer: refuse (exit 1, nothing installed) objects in another namespace than
# the release's and cluster-scoped objects unless allowed -- k8s_deploy's apply rules; then add
# the run's labels to every rendered object's metadata (not to pod templates: a new run id
# there would start a rollout on every run). argv: labels JSON, rules JSON (see _rules).
_LABELLER = """
import json, sys, yaml
labels, rules = json.loads(sys.argv[1]), json.loads(sys.argv[2])
docs = [d for d in yaml.safe_load_all(sys.stdin) if isinstance(d, dict)]
known = dict(rules["known"])
for d in docs:
    spec = d.get("spec") if d.get("kind") == "CustomResourceDefinition" else None
    if isinstance(spec, dict) and isinstance(spec.get("names"), dict):
        for v in spec.get("versions") or []:
            if isinstance(v, dict):
                key = f"{spec.get('group')}/{v.get('name')} {spec['names'].get('kind')}"
                known.setdefault(key, spec.get("scope", "Namespaced") == "Namespaced")
problems = []
for i, d in enumerate(docs, 1):
    meta = d.get("metadata") if isinstance(d.get("metadata"), dict) else {}
    kind = str(d.get("kind", ""))
    namespaced = known.get(f"{d.get('apiVersion')} {kind}", kind not in rules["cluster_kinds"])
    what = f"rendered object {i} ({kind.lower()}/{meta.get('name')})"
    ns = meta.get("namespace")
    if namespaced and ns is not None and str(ns) != rules["namespace"]:
        problems.append(f"{what} is in namespace {str(ns)!r}, but the step deploys to "
                        f"namespace {rules['namespace']!r}")
    elif not namespaced and not rules["allow"]:
        problems.append(f"{what} is cluster-scoped (kind {kind}); set allow_cluster_scoped: "
                        "true to install cluster-scoped objects")
if problems:
    more = [f"... and {len(problems) - 10} more"] if len(problems) > 10 else []
    print("ansflow: nothing installed: " + "; ".join(problems[:10] + more), file=sys.stderr)
    sys.exit(1)
for d in docs:
    meta = d.setdefault("metadata", {}) or {}
    d["metadata"] = meta
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
"""


def render_rules(config: K8sDeployConfig, namespace: str,
                 known: dict[tuple[str, str], bool] | None) -> str:
    """The post-renderer's rules: the release namespace, whether cluster-scoped objects are
    allowed, the scope of each kind the cluster serves (`known`, from discovery; None when
    discovery failed: the list of well-known cluster-scoped kinds decides)."""
    from ansflow.engines.kube_objects import CLUSTER_SCOPED_KINDS

    return json.dumps({"namespace": namespace, "allow": config.allow_cluster_scoped,
                       "known": {f"{gv} {kind}": v for (gv, kind), v in (known or {}).items()},
                       "cluster_kinds": sorted(CLUSTER_SCOPED_KINDS)})


def helm_binary() -> str:
    """helm on PATH, else the one built with the dev-cluster binaries."""
    found = shutil.which("helm")
    if found:
        return found
    try:
        from ansflow.devcluster.binaries import find_binaries

        candidate = find_binaries().path("helm")
        if os.access(candidate, os.X_OK):
            return candidate
    except Exception:  # noqa: BLE001 - no dev-cluster build: fall through to the error
        pass
    raise StepFailed("helm is not installed", hint="put helm (v3) on PATH")


def helm_argv(helm: str, config: K8sDeployConfig, namespace: str, kubeconfig: str,
              values_path: str | None, labels: dict[str, str], workspace: str,
              context: str | None = None, rules: str | None = None) -> list[str]:
    """The `helm upgrade --install` command line of a k8s_deploy `helm:` config."""
    spec = config.helm
    assert spec is not None
    chart = spec.chart
    if chart.startswith((".", "/")):  # a local chart directory or archive, not a repo name
        chart = confine(chart, workspace, "helm chart")
    argv = [helm, "upgrade", "--install", spec.release, chart, "--namespace", namespace,
            "--kubeconfig", kubeconfig]
    if context:
        argv += ["--kube-context", context]
    if config.create_namespace:
        argv.append("--create-namespace")
    if spec.repo:
        argv += ["--repo", spec.repo]
    if spec.version:
        argv += ["--version", spec.version]
    if spec.values_file:
        argv += ["-f", confine(spec.values_file, workspace, "helm values_file")]
    if values_path:
        argv += ["-f", values_path]
    argv += ["--post-renderer", sys.executable, "--post-renderer-args", "-c",
             "--post-renderer-args", _LABELLER, "--post-renderer-args", json.dumps(labels),
             "--post-renderer-args", rules or render_rules(config, namespace, None)]
    if config.dry_run:
        argv += ["--dry-run=server", "--hide-secret"]  # dry runs print the manifests
    elif config.wait:
        argv += ["--wait", "--timeout", f"{max(1, int(config.timeout))}s"]
        if config.rollback_on_failure:
            argv.append("--atomic")
    return argv


def manifest_objects(manifest: str) -> list[str]:
    """`kind/name` of every object in a rendered manifest."""
    names = []
    for doc in yaml.safe_load_all(manifest):
        if isinstance(doc, dict) and doc.get("kind") and (doc.get("metadata") or {}).get("name"):
            names.append(f"{doc['kind'].lower()}/{doc['metadata']['name']}")
    return names


def deploy_with_helm(ctx: StepContext, config: K8sDeployConfig, block,
                     namespace: str, known: dict[tuple[str, str], bool] | None = None
                     ) -> StepResult:
    """Install or upgrade the release; outputs revision (the release's) and objects.

    `known` is the scope of each served kind (discovery), for the post-renderer's check."""
    spec = config.helm
    assert spec is not None
    try:  # helm gets it on its command line, not through the adapter's checked paths
        check_namespace(namespace)
    except KubeNameError as exc:
        raise StepFailed(f"cluster {config.cluster!r}: {exc}") from None
    helm = helm_binary()
    try:
        kubeconfig_doc = block.to_kubeconfig_dict()
    except ValueError as exc:
        raise StepFailed(f"helm needs a kubeconfig: cluster {config.cluster!r}: {exc}") from None
    # The kubeconfig holds the cluster's credentials: in the process's private directory,
    # which the reaper removes if the worker dies before this block's own cleanup.
    with tempfile.TemporaryDirectory(prefix="ansflow-helm-", dir=private_dir()) as scratch:
        kubeconfig = Path(scratch, "kubeconfig")
        kubeconfig.touch(mode=0o600)
        kubeconfig.write_text(yaml.safe_dump(kubeconfig_doc))
        values_path = None
        if spec.values:
            values_path = str(Path(scratch, "values.yaml"))
            Path(values_path).write_text(yaml.safe_dump(spec.values))
        argv = helm_argv(helm, config, namespace, str(kubeconfig), values_path, ctx.labels,
                         ctx.workspace, context=block.context,
                         rules=render_rules(config, namespace, known))
        errors: list[str] = []

        def emit(line: str, stream: str) -> None:
            ctx.emit(line, stream=stream)
            if stream == "stderr" and line.strip():
                errors.append(line.strip())

        where = f"cluster {config.cluster!r}, namespace {namespace}"
        ctx.emit(f"helm upgrade --install {spec.release} {spec.chart} ({where})")
        outcome = run_process(argv, cwd=ctx.workspace, env=dict(os.environ), emit=emit,
                              timeout=max(1.0, ctx.budget(config.timeout + 60) or 1.0),
                              cancelled=ctx.control.cancelled,
                              on_start=ctx.on_cancel, masker=ctx.masker)
        if outcome.cancelled:
            raise StepCancelled(f"helm release {spec.release!r}: the run was cancelled")
        if outcome.timed_out:
            raise StepTimedOut(f"helm release {spec.release!r} ({where}) ran past the deadline")
        if outcome.exit_code != 0:
            ours = [e.removeprefix("ansflow: ") for e in errors if e.startswith("ansflow: ")]
            why = (ours or errors or [f"exit code {outcome.exit_code}"])[-1]
            raise StepFailed(f"helm release {spec.release!r} ({where}) failed: {why}",
                             exit_code=outcome.exit_code)
        if config.dry_run:
            return StepResult(outputs={"objects": "", "revision": ""})
        base = [helm, spec.release, "--namespace", namespace, "--kubeconfig", str(kubeconfig)]
        status = _helm_json(base[:1] + ["status"] + base[1:] + ["-o", "json"], ctx.workspace,
                            ctx)
        manifest = _helm_text(base[:1] + ["get", "manifest"] + base[1:], ctx.workspace, ctx)
    return StepResult(outputs={"objects": ",".join(manifest_objects(manifest)),
                               "revision": str(status.get("version", ""))})


def _helm_text(argv: list[str], cwd: str, ctx: StepContext) -> str:
    """What a helm query prints, through the one process runner (deadline and cancel)."""
    out: list[str] = []
    err: list[str] = []
    outcome = run_process(argv, cwd=cwd, env=dict(os.environ),
                          emit=lambda line, stream: (out if stream == "stdout" else err).append(
                              line),
                          timeout=HELM_QUERY_SECONDS, cancelled=ctx.control.cancelled,
                          on_start=ctx.on_cancel, line_bytes=HELM_OUTPUT_LINE_BYTES)
    what = " ".join(argv[1:3])
    if outcome.cancelled:
        raise StepCancelled(f"{what}: the run was cancelled")
    if outcome.timed_out:
        raise StepFailed(f"{what} did not answer within {HELM_QUERY_SECONDS:g} s")
    if outcome.exit_code != 0:
        raise StepFailed(f"{what} failed: {' '.join(err).strip()[-300:]}")
    return "\n".join(out)


def _helm_json(argv: list[str], cwd: str, ctx: StepContext) -> dict:
    try:
        return json.loads(_helm_text(argv, cwd, ctx))
    except ValueError:
        raise StepFailed("helm status gave no JSON") from None
