"""`ansflow inventory`: the inventory of a cluster in the terminal, as the Prefect UI shows it
after each sync: the cluster table (namespaces, counts by health and by kind, nodes), then
one table per namespace (kind, name, health and message, age, images, replicas, drift),
filtered by namespace, kind, health and label selector."""

from __future__ import annotations

import json
import re
from typing import Any

import typer

from ansflow.cli.common import fail as _fail
from ansflow.errors import AnsflowError, bounded

_HEALTH_STYLE = {"Healthy": "green", "Progressing": "cyan", "Degraded": "bold red",
                 "Suspended": "yellow", "Missing": "magenta", "Unknown": "dim"}


# ---- label selectors on the inventory's labels (pure) ---------------------------------------

_REQUIREMENT = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<nkey>[^\s=!,()<>]+)"
    r"|(?P<key>[^\s=!,()<>]+)(?:\s*(?P<op>==|=|!=)\s*(?P<value>[^\s=!,()]*)"
    r"|\s+(?P<set>in|notin)\s*\((?P<values>[^()]*)\))?)\s*$")


def _split(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current]


def parse_selector(selector: str) -> list[tuple[str, str, set[str]]]:
    """A label selector (the API server's syntax, checked by its rules) as requirements
    (key, operator, values); operators: exists, !exists, =, !=, in, notin.

    Raises:
        KubeNameError: not a selector the API server would parse (the rule named).
        ValueError: a form this filter does not support (``key>N``).
    """
    from ansflow.engines.kube_names import check_selector  # noqa: PLC0415

    check_selector(selector, "--label")
    out = []
    for part in _split(selector):
        if not part.strip():
            continue
        m = _REQUIREMENT.match(part)
        if m is None:
            raise ValueError(f"--label: {part.strip()!r} is not supported here "
                             "(key, !key, key=v, key!=v, key in (a,b), key notin (a,b))")
        if m.group("not"):
            out.append((m.group("nkey"), "!exists", set()))
        elif m.group("op"):
            out.append((m.group("key"), "!=" if m.group("op") == "!=" else "=",
                        {m.group("value")}))
        elif m.group("set"):
            values = {v.strip() for v in m.group("values").split(",") if v.strip()}
            out.append((m.group("key"), m.group("set"), values))
        else:
            out.append((m.group("key"), "exists", set()))
    return out


def matches(labels: dict[str, str], requirements: list[tuple[str, str, set[str]]]) -> bool:
    """Whether ``labels`` satisfy every requirement (kubectl's semantics: ``!=`` and
    ``notin`` also match objects without the key)."""
    for key, op, values in requirements:
        present = key in labels
        value = labels.get(key)
        ok = {"exists": present, "!exists": not present, "=": present and value in values,
              "in": present and value in values, "!=": not present or value not in values,
              "notin": not present or value not in values}[op]
        if not ok:
            return False
    return True


# ---- the command ----------------------------------------------------------------------------


def _jsonable(item: dict) -> dict:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in item.items()}


def _healths(values: list[str]) -> set[str]:
    from ansflow.upkeep.inventory_tables import NO_HEALTH, STATUSES  # noqa: PLC0415

    known = {s.lower(): s for s in STATUSES}
    out = set()
    for value in values:
        for part in value.split(","):
            wanted = part.strip().lower()
            if wanted in ("-", "none", "unassessed"):
                out.add(NO_HEALTH)
            elif wanted in known:
                out.add(known[wanted])
            else:
                raise ValueError(f"--health {part.strip()[:40]!r} is not one of "
                                 f"{', '.join(STATUSES)}")
    return out


def _filters(kind: list[str], namespace: list[str], health: list[str], label: str | None
             ) -> tuple[set[str] | None, set[str] | None, set[str] | None, list | None]:
    from ansflow.engines.kube_names import check_namespace  # noqa: PLC0415
    from ansflow.upkeep.fields import kind_named  # noqa: PLC0415

    kinds = {kind_named(k.strip()) for value in kind for k in value.split(",") if k.strip()}
    namespaces = set()
    for value in namespace:
        for ns in value.split(","):
            namespaces.add(check_namespace(ns.strip(), "--namespace"))
    healths = _healths(health) if health else None
    requirements = parse_selector(label) if label else None
    return kinds or None, namespaces or None, healths, requirements


def _text(value: Any, style: str | None = None):
    from rich.text import Text  # noqa: PLC0415

    return Text("" if value is None else str(value), style=style or "")


def _print_tables(console: Any, tables: Any, summary_only: bool) -> None:
    from rich.table import Table  # noqa: PLC0415

    from ansflow.upkeep import inventory_tables as T  # noqa: PLC0415

    record = tables.record
    when = record.get("last_sync")
    console.print(_text(
        f"cluster {tables.cluster}: {record.get('status') or 'not checked'}, last sync "
        f"{when:%Y-%m-%d %H:%M:%S}Z, {tables.objects} object(s): "
        f"{T.counts_text(tables.by_health)}", "bold"))
    rows = T.cluster_rows(tables)
    columns = [c for c in rows[0] if c != "nodes" or rows[0]["nodes"]]
    columns = [c for c in columns
               if c in ("namespace", "health", "objects") or any(r.get(c) for r in rows)]
    table = Table(title=_text(f"cluster {tables.cluster}"), title_justify="left")
    for c in columns:
        table.add_column(_text(c), no_wrap=c == "namespace")
    for r in rows:
        table.add_row(*[_text(r[c], _HEALTH_STYLE.get(r[c]) if c == "health" else None)
                        for c in columns])
    console.print(table)
    if summary_only:
        return
    for ns in tables.namespaces.values():
        cut = f", the {len(ns.rows)} least healthy shown" if ns.truncated > 0 else ""
        table = Table(title=_text(f"namespace {ns.label}: {ns.objects} object(s)"
                                  f"{cut}"), title_justify="left")
        for c in ("kind", "name", "health", "message", "age", "images", "replicas", "drift"):
            table.add_column(_text(c), overflow="fold")
        for r in T.namespace_rows(ns):
            table.add_row(*[_text(v, _HEALTH_STYLE.get(v) if k == "health" else None)
                            for k, v in r.items()])
        console.print(table)


def inventory(
    cluster: str = typer.Argument(..., help="The cluster (its block's name)."),
    kind: list[str] = typer.Option(None, "--kind", "-k",
                                   help="Only these kinds (pods, deploy, svc, cm...; "
                                        "repeat or comma-separate)."),
    namespace: list[str] = typer.Option(None, "--namespace", "-n",
                                        help="Only these namespaces (repeat or "
                                             "comma-separate)."),
    health: list[str] = typer.Option(None, "--health",
                                     help="Only objects of this health: Healthy, Progressing, "
                                          "Degraded, Suspended, Missing, Unknown (repeat or "
                                          "comma-separate)."),
    label: str = typer.Option(None, "--label", "-l",
                              help="A label selector, e.g. app=web,tier!=db (kubectl's)."),
    removed: bool = typer.Option(False, "--removed", help="Include objects found removed."),
    summary: bool = typer.Option(False, "--summary", help="Only the cluster table."),
    limit: int = typer.Option(500, "--limit", min=1, max=100000,
                              help="Rows per namespace table (the least healthy first)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """What the inventory holds of CLUSTER (as of its last sync), as tables: the cluster's
    namespaces with counts by health and kind, then each namespace's objects."""
    from ansflow.engines.kube_errors import KubeNameError  # noqa: PLC0415
    from ansflow.upkeep import inventory_tables as T  # noqa: PLC0415
    from ansflow.upkeep.inventory import Inventory  # noqa: PLC0415

    try:
        kinds, namespaces, healths, requirements = _filters(kind or [], namespace or [],
                                                            health or [], label)
    except (ValueError, KubeNameError) as exc:
        _fail(bounded(str(exc), 600), 2)
    try:
        with Inventory() as inv:
            record = inv.cluster_record(cluster)
            if record is None or record.get("last_sync") is None:
                _fail(f"cluster {cluster[:100]!r} has no inventory yet (run `ansflow sync "
                      f"{cluster[:100]}`)")
            items = _selected(inv.objects(cluster, removed=removed), requirements)
            if as_json:
                objects = [_jsonable(i) for i in items
                           if (kinds is None or i["kind"] in kinds)
                           and (namespaces is None or i["namespace"] in namespaces)
                           and (healths is None or T.health_of(i) in healths)]
                typer.echo(json.dumps({"cluster": _jsonable(record), "objects": objects},
                                      default=str))
                return
            items = [{**i, "name": f"{i['name']} (removed)"} if i.get("removed") else i
                     for i in items]
            tables = T.build(cluster, items, record, kinds=kinds, healths=healths,
                             namespaces=namespaces, max_rows=limit)
    except AnsflowError as exc:
        _fail(str(exc))
    from rich.console import Console  # noqa: PLC0415

    console = Console(width=None if _is_terminal() else 200, highlight=False,
                      soft_wrap=False)
    _print_tables(console, tables, summary)


def _is_terminal() -> bool:
    import sys  # noqa: PLC0415

    return sys.stdout.isatty()


def _selected(items: Any, requirements: list | None) -> list[dict]:
    """The items matching the label selector (all without one)."""
    out = []
    for item in items:
        if requirements is not None:
            labels = (item.get("fields") or {}).get("labels")
            if not matches(labels if isinstance(labels, dict) else {}, requirements):
                continue
        out.append(item)
    return out
