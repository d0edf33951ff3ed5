"""`ansflow cluster`: saved Kubernetes cluster credentials (KubernetesCluster Prefect blocks)."""

from __future__ import annotations

from pathlib import Path

import typer

from ansflow.cli.common import fail as _fail
from ansflow.cli.common import list_blocks, save_block
from ansflow.errors import AnsflowError

app = typer.Typer(
    help="Manage saved Kubernetes cluster credentials (Prefect blocks).", no_args_is_help=True
)


def _load(name: str):
    from ansflow.blocks.kubernetes import load_saved_cluster

    try:
        return load_saved_cluster(name)
    except AnsflowError as exc:
        _fail(str(exc))


def _server_of(block) -> str:
    if block.server:
        return block.server
    if block.kubeconfig is None:
        return "in-cluster" if block.in_cluster else "-"
    try:
        doc = block.to_kubeconfig_dict(check_exec=False)  # read, never run
        ctx_name = block.context or doc.get("current-context")
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
        return next(c["cluster"]["server"] for c in doc["clusters"]
                    if c["name"] == ctx["cluster"])
    except (StopIteration, KeyError, TypeError):
        return "?"


@app.command()
def add(
    name: str = typer.Argument(..., help="Block name (lowercase letters, digits, dashes)."),
    kubeconfig: Path = typer.Option(..., "--kubeconfig", help="The kubeconfig file to store."),
    context: str = typer.Option(None, "--context", help="Pin this context."),
    namespace: str = typer.Option(None, "--namespace", help="Default namespace for steps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing block."),
) -> None:
    """Save a kubeconfig file's content as the KubernetesCluster block NAME.

    The files its context names (certificate-authority, client-certificate, client-key,
    tokenFile; relative paths from the kubeconfig's folder, as kubectl reads them) are kept
    in the block, so it works on every worker without them."""
    from ansflow.blocks.kubernetes import KubernetesCluster

    try:
        block = KubernetesCluster.from_kubeconfig_file(kubeconfig, context, namespace)
        block.get_client().close()  # the credentials must at least load
    except OSError as exc:
        _fail(f"cluster {name!r}: cannot read {kubeconfig}: {exc.strerror}")
    except (ValueError, AnsflowError) as exc:  # the message names the file or field
        _fail(f"cluster {name!r}: {str(exc)[:300]}")
    save_block(block, "cluster", name, overwrite)
    typer.echo(f"saved cluster {name!r} ({_server_of(block)}, namespace {block.namespace})")


@app.command("list")
def list_() -> None:
    """The saved cluster blocks: name, how they authenticate, server, namespace."""
    from ansflow.blocks.kubernetes import KubernetesCluster

    list_blocks(KubernetesCluster.get_block_type_slug(), "cluster", "ansflow cluster add",
                KubernetesCluster.load,
                [("AUTH", 20), ("NAMESPACE", 16), ("SERVER", 0)],
                lambda b: (b.auth_method, b.namespace, _server_of(b)))


@app.command()
def remove(
    name: str = typer.Argument(..., help="The cluster block's name."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete the saved KubernetesCluster block NAME (the cluster itself is not touched;
    pipelines and schedules that name it fail until a block of that name is added again)."""
    from prefect.client.orchestration import get_client

    from ansflow.blocknames import check_block_name
    from ansflow.blocks.kubernetes import KubernetesCluster, saved_cluster_names

    try:
        check_block_name(name, "cluster")
        known = saved_cluster_names()
    except AnsflowError as exc:
        _fail(str(exc))
    if name not in known:
        _fail(f"no saved Kubernetes cluster block named {name!r}"
              + (f" (saved: {', '.join(known[:20])})" if known else " (none saved)"))
    if not yes:
        try:
            confirmed = typer.confirm(f"remove the cluster block {name!r}?", default=False)
        except (typer.Abort, EOFError):
            confirmed = False
        if not confirmed:
            _fail(f"cluster {name!r} not removed (confirm, or pass --yes)")
    try:  # by the block type's slug and name: a block that no longer loads goes too
        with get_client(sync_client=True) as client:
            doc = client.read_block_document_by_name(
                name, KubernetesCluster.get_block_type_slug(), include_secrets=False)
            client.delete_block_document(doc.id)
    except Exception as exc:  # noqa: BLE001 - any API failure is one line to the user
        _fail(f"cluster {name!r}: cannot remove its block ({type(exc).__name__}: "
              f"{str(exc)[:200]})")
    typer.echo(f"removed cluster {name!r}")


def _health_counts(name: str) -> None:
    """The inventory's objects of cluster ``name`` by health, per kind (as of its last
    sync); a line saying why when there are none."""
    from ansflow.upkeep.inventory import Inventory, objects_health_text, total_by_health

    try:
        with Inventory() as inv:
            record = inv.cluster_record(name)
            counts = inv.health_counts(name) if record and record.get("last_sync") else {}
    except AnsflowError as exc:
        typer.echo(f"objects: the inventory cannot be read ({str(exc)[:300]})")
        return
    if not counts:
        typer.echo(f"objects: not synced yet (`ansflow sync {name}` fills the inventory)")
        return
    when = record["last_sync"].strftime("%Y-%m-%d %H:%M:%S UTC")
    typer.echo(f"objects at the last sync ({when}): "
               + objects_health_text(total_by_health(counts)).split(": ", 1)[1])
    for kind in sorted(counts):
        per = total_by_health({kind: counts[kind]})
        typer.echo(f"  {kind:<24} " + ", ".join(f"{n} {s or 'not assessed'}"
                                               for s, n in per.items()))


@app.command()
def check(
    name: str = typer.Argument(..., help="The cluster block's name."),
    namespace: str = typer.Option(None, "--namespace", help="Namespace for the rules review."),
) -> None:
    """Reachability, server version, what the identity may do (SelfSubjectRulesReview), and
    the inventory's objects by health (Argo CD's statuses) as of the last sync."""
    from ansflow.engines.kube import translate_error
    from ansflow.engines.kube_cluster import one_attempt_client, rules_review, server_version

    block = _load(name)
    ns = namespace or block.namespace
    try:
        api = one_attempt_client(block)  # that answer (or error) is what we report
    except AnsflowError as exc:
        _fail(f"cluster {name!r}: {exc}")
    with api:
        try:
            version = server_version(api)
        except Exception as exc:
            _fail(str(translate_error(exc, cluster=name, action="read the server version")))
        typer.echo(f"cluster {name!r}: reachable at {api.configuration.host}, "
                   f"Kubernetes {version}")
        try:
            status = rules_review(api, ns)
        except Exception as exc:
            _fail(str(translate_error(
                exc, cluster=name, action="create selfsubjectrulesreviews (authorization.k8s.io)"
            )))
    typer.echo(f"permissions in namespace {ns!r}:")
    for rule in status.resource_rules or []:
        groups = ",".join(g or "core" for g in rule.api_groups or [])
        typer.echo(f"  {','.join(rule.verbs):<40} {','.join(rule.resources or [])} [{groups}]")
    if status.incomplete:
        typer.echo(f"  (incomplete: {status.evaluation_error or 'authorizer gave up'})")
    _health_counts(name)
