"""`ansflow dev-cluster`: a real local Kubernetes control plane (etcd, API server, kwok)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ansflow.cli.common import fail as _fail
from ansflow.errors import AnsflowError

if TYPE_CHECKING:
    from ansflow.devcluster.manager import UpResult

app = typer.Typer(
    help="Run a real local Kubernetes control plane (etcd, API server, controller manager, "
    "scheduler; kwok plays the nodes) on 127.0.0.1.",
    no_args_is_help=True,
)

NAME_OPTION = typer.Option("local", "--name", "-n", help="The cluster's name (also its block's).")


def save_cluster_block(name: str, kubeconfig: str) -> str | None:
    """Save (overwrite) the KubernetesCluster block NAME; returns an error message or None.

    Without PREFECT_API_URL this starts Prefect's temporary server (given the time a slow
    machine needs); a process that already started one re-uses it.
    """
    from ansflow.cli.runner import ensure_server  # noqa: PLC0415

    try:
        ensure_server()
        from ansflow.blocks.kubernetes import KubernetesCluster

        KubernetesCluster.from_kubeconfig_file(kubeconfig).save(name, overwrite=True)
    except AnsflowError as exc:
        return str(exc)
    except Exception as exc:  # Prefect API down, bad settings...: the cluster still runs
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return None


def running_cluster_kubeconfig(name: str) -> str:
    """The admin kubeconfig of the running dev cluster NAME (for `ansflow run --dev-cluster`).

    Raises:
        AnsflowError: the cluster is not running (checked before any Prefect server starts).
    """
    from ansflow.devcluster import manager
    from ansflow.devcluster.state import ClusterPaths, load_state

    paths = ClusterPaths.for_name(name)
    if not manager.is_running(paths, load_state(paths)):
        raise AnsflowError(f"dev cluster {name!r} is not running; start it with "
                           f"`ansflow dev-cluster up --name {name}`")
    return str(paths.kubeconfig)


def save_running_cluster_block(name: str, kubeconfig: str) -> None:
    """Save the block NAME of a running dev cluster on the current Prefect server.

    Raises:
        AnsflowError: the block could not be saved.
    """
    problem = save_cluster_block(name, kubeconfig)
    if problem:
        raise AnsflowError(f"could not save the cluster block {name!r}: {problem}")


@app.command()
def up(
    name: str = NAME_OPTION,
    nodes: int = typer.Option(1, "--nodes", min=1, max=50, help="How many kwok nodes."),
    block: bool = typer.Option(
        True, "--block/--no-block", help="Save a KubernetesCluster block named NAME."
    ),
    timeout: float = typer.Option(90.0, help="Seconds each component may take to get healthy."),
    real_node: bool = typer.Option(
        False, "--real-node", help="Also run one real node (kubelet, containerd, runc, CNI: "
        "real containers; kube-proxy and CoreDNS for Services and cluster DNS). The kwok "
        "nodes are then tainted kwok.x-k8s.io/node=fake:NoSchedule, so pods land on the real "
        "node. Needs root."),
    registry: list[str] = typer.Option(
        [], "--registry", metavar="127.0.0.1:PORT",
        help="A plain-HTTP registry on loopback the real node may pull from (repeatable; "
        "default: $ANSFLOW_TEST_REGISTRY, the set-up's registry, when set)."),
) -> None:
    """Start the cluster (a no-op when it already runs) and wait until its nodes are Ready."""
    registries = _loopback_registries(registry)
    started = time.monotonic()
    result = _start(name, nodes=nodes, timeout=timeout, real_node=real_node,
                    registries=registries)
    _report_start(name, result, started)
    if block:
        _save_block_or_warn(name, result.paths.kubeconfig)
    typer.echo(
        "use it:\n"
        f"  export KUBECONFIG={result.paths.kubeconfig}\n"
        f"  kubectl get nodes        (kubectl is in {result.state.binaries})\n"
        f"  KubernetesCluster.load({name!r}) in a flow\n"
        f"stop it: ansflow dev-cluster down --name {name}"
    )


def _loopback_registries(registry: list[str]) -> list[str]:
    """The --registry values, else $ANSFLOW_TEST_REGISTRY; exits unless each is on loopback."""
    import os

    registries = list(registry)
    if not registries and os.environ.get("ANSFLOW_TEST_REGISTRY"):
        registries = [os.environ["ANSFLOW_TEST_REGISTRY"]]
    for reg in registries:
        host, _, port = reg.rpartition(":")
        if host not in ("127.0.0.1", "localhost") or not port.isdigit():
            _fail(f"--registry {reg!r}: give a loopback registry as 127.0.0.1:PORT")
    return registries


def _start(name: str, *, nodes: int, timeout: float, real_node: bool,
           registries: list[str]) -> UpResult:
    """The manager's `up`; any failure is one line and a non-zero exit, never a traceback."""
    from ansflow.devcluster import manager

    try:
        return manager.up(name, nodes=nodes, timeout=timeout, real_node=real_node,
                          registries=registries)
    except AnsflowError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; the components started so far were stopped", 130)
    except Exception as exc:  # never a traceback for the user; the cause in one line
        _fail(f"dev cluster {name!r} failed to start: {type(exc).__name__}: {str(exc)[:500]}")


def _report_start(name: str, result: UpResult, started: float) -> None:
    state = result.state
    if result.recovered:
        typer.echo(f"recovered from a crashed run: stopped leftover {', '.join(result.recovered)}")
    if result.upgraded and (result.previous_security or 0) < 1:
        typer.echo(f"dev cluster {name!r} was started by an older ansflow without client "
                   "authentication on etcd and the API server: restarted with it (data and "
                   "certificates kept)")
    elif result.upgraded:
        typer.echo(f"dev cluster {name!r} was started by an older ansflow without the API "
                   "server's audit log: restarted with it (data and certificates kept)")
    if result.already_running:
        typer.echo(f"dev cluster {name!r} is already running at {state.server}")
    if state.real_node:
        typer.echo("real node 127.0.0.1 Ready (kubelet + containerd, kube-proxy, CoreDNS): "
                   "pods land on it; the kwok nodes are tainted "
                   "kwok.x-k8s.io/node=fake:NoSchedule (tolerate it to run on them)")
        if not state.real_node.get("services", True):
            from ansflow.devcluster.realnode_net import NO_SERVICES

            typer.echo(f"warning: {NO_SERVICES}", err=True)
    else:
        typer.echo(
            f"dev cluster {name!r} is up at {state.server} "
            f"({state.nodes} Ready node(s) in {time.monotonic() - started:.1f} s; "
            f"Kubernetes {state.versions.get('kubernetes', '?')})"
        )


def _save_block_or_warn(name: str, kubeconfig: Path) -> None:
    """The cluster runs either way: a block that cannot be saved is a warning."""
    err = save_cluster_block(name, str(kubeconfig))
    if err:
        typer.echo(
            f"warning: could not save the Prefect block {name!r} ({err}); save it later "
            f"with: ansflow cluster add {name} --kubeconfig {kubeconfig}",
            err=True,
        )
    else:
        typer.echo(f"saved Prefect block ansflow-kubernetes-cluster/{name}")


@app.command()
def expose(
    service: str = typer.Argument(..., help="The Service's name, e.g. prefect."),
    port: int = typer.Argument(..., help="The port on the host's 127.0.0.1 (and the Service's)."),
    namespace: str = typer.Option("default", "--namespace", "-n"),
    name: str = NAME_OPTION,
) -> None:
    """Make a port of the host's 127.0.0.1 (e.g. the Prefect server) reachable from the real
    node's pods as a Service: forwarded on the node's bridge address only."""
    from ansflow.devcluster import manager

    try:
        where = manager.expose(name, service, port, namespace=namespace)
    except AnsflowError as exc:
        _fail(str(exc))
    typer.echo(f"pods reach 127.0.0.1:{port} as {where} (e.g. PREFECT_API_URL="
               f"http://{where}/api)")


@app.command()
def down(
    name: str = NAME_OPTION,
    wipe: bool = typer.Option(
        False, "--wipe", help="Also delete its data, certificates and kubeconfig."
    ),
) -> None:
    """Stop exactly the processes `up` started (by recorded PID); keep the data unless --wipe."""
    from ansflow.devcluster import manager

    try:
        stopped = manager.down(name, wipe=wipe)
    except AnsflowError as exc:
        _fail(str(exc))
    what = f"stopped {', '.join(stopped)}" if stopped else "nothing was running"
    typer.echo(f"dev cluster {name!r}: {what}{'; data wiped' if wipe else ''}")


@app.command()
def status(name: str = NAME_OPTION) -> None:
    """Components, PIDs, ports, versions and health. Exit code 1 when not fully healthy."""
    from ansflow.devcluster import manager

    try:
        state, rows = manager.status(name)
    except AnsflowError as exc:
        _fail(str(exc))
    if state is None:
        typer.echo(f"dev cluster {name!r}: never started (no state)")
        raise typer.Exit(1)
    typer.echo(f"dev cluster {name!r}: {state.server}  nodes: {state.nodes}")
    typer.echo("versions: " + ", ".join(f"{k} {v}" for k, v in sorted(state.versions.items())))
    typer.echo(f"{'COMPONENT':<25}{'PID':>8}{'PORT':>8}  STATE")
    for row in rows:
        condition = "healthy" if row.healthy else ("running" if row.running else "stopped")
        typer.echo(f"{row.name:<25}{row.pid or '-':>8}{row.port or '-':>8}  {condition}")
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


@app.command()
def kubeconfig(name: str = NAME_OPTION) -> None:
    """Print the path of the cluster's admin kubeconfig."""
    from ansflow.devcluster import manager

    try:
        typer.echo(str(manager.kubeconfig_path(name)))
    except AnsflowError as exc:
        _fail(str(exc))


@app.command("list")
def list_() -> None:
    """The dev clusters known under $ANSFLOW_HOME, running or not."""
    from ansflow.devcluster import manager
    from ansflow.devcluster.state import ClusterPaths, load_state

    names = manager.list_clusters()
    if not names:
        typer.echo("no dev clusters")
    for n in names:
        paths = ClusterPaths.for_name(n)
        state = load_state(paths)
        running = manager.is_running(paths, state)
        where = state.server if state else "-"
        typer.echo(f"{n:<20}{'running' if running else 'stopped':<10}{where}")
