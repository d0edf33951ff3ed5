"""k8s_deploy with `helm:`: `helm upgrade --install` through the one subprocess runner."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from ansflow.engines.process import run_process
from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.spec.steps import K8sDeployConfig
from ansflow.tasks.base import StepContext, StepResult

HELM_QUERY_SECONDS = 60.0  # `helm status` / `helm get manifest` after the install
HELM_OUTPUT_LINE_BYTES = 16 * 1024 * 1024  # status JSON is one line: never cut it

# helm's post-renderer: add the run's labels to every rendered object's metadata (not to pod
# templates: a new run id there would start a rollout on every run).
_LABELLER = """
import json, sys, yaml
labels = json.loads(sys.argv[1])
docs = [d for d in yaml.safe_load_all(sys.stdin) if isinstance(d, dict)]
for d in docs:
    meta = d.setdefault("metadata", {}) or {}
    d["metadata"] = meta
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
"""


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
              context: str | None = None) -> list[str]:
    """The `helm upgrade --install` command line of a k8s_deploy `helm:` config."""
    spec = config.helm
    assert spec is not None
    argv = [helm, "upgrade", "--install", spec.release, spec.chart, "--namespace", namespace,
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
        path = Path(spec.values_file)
        argv += ["-f", str(path if path.is_absolute() else Path(workspace) / path)]
    if values_path:
        argv += ["-f", values_path]
    argv += ["--post-renderer", sys.executable, "--post-renderer-args", "-c",
             "--post-renderer-args", _LABELLER, "--post-renderer-args", json.dumps(labels)]
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
                     namespace: str) -> StepResult:
    """Install or upgrade the release; outputs revision (the release's) and objects."""
    spec = config.helm
    assert spec is not None
    helm = helm_binary()
    try:
        kubeconfig_doc = block.to_kubeconfig_dict()
    except ValueError as exc:
        raise StepFailed(f"helm needs a kubeconfig: cluster {config.cluster!r}: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="ansflow-helm-") as scratch:
        kubeconfig = Path(scratch, "kubeconfig")
        kubeconfig.touch(mode=0o600)
        kubeconfig.write_text(yaml.safe_dump(kubeconfig_doc))
        values_path = None
        if spec.values:
            values_path = str(Path(scratch, "values.yaml"))
            Path(values_path).write_text(yaml.safe_dump(spec.values))
        argv = helm_argv(helm, config, namespace, str(kubeconfig), values_path, ctx.labels,
                         ctx.workspace, context=block.context)
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
                              on_start=ctx.on_cancel)
        if outcome.cancelled:
            raise StepCancelled(f"helm release {spec.release!r}: the run was cancelled")
        if outcome.timed_out:
            raise StepTimedOut(f"helm release {spec.release!r} ({where}) ran past the deadline")
        if outcome.exit_code != 0:
            why = errors[-1] if errors else f"exit code {outcome.exit_code}"
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
