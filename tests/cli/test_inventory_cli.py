"""`ansflow inventory`: the cluster and namespace tables in a terminal, its filters, and bad
input refused with one line (exit 2) and no traceback. The inventory is a real store (SQLite
file) written through the Inventory API, as a sync writes it."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from ansflow.cli.app import app
from ansflow.cli.inventory import matches, parse_selector
from ansflow.upkeep.inventory import Changes, Inventory

NOW = datetime.now(timezone.utc)


def row(kind, ns, name, health, message="", **fields):
    return {"cluster": "prod", "uid": str(uuid.uuid4()), "kind": kind, "namespace": ns,
            "name": name, "resource_version": "1", "first_seen": NOW - timedelta(days=3),
            "last_seen": NOW, "changed": NOW, "removed": None, "fields": json.dumps(fields),
            "applied_time": None, "applied_fields": None, "drift": None, "health": health,
            "health_message": message}


@pytest.fixture
def store(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/inv.db"
    monkeypatch.setenv("ANSFLOW_DATABASE_URL", url)
    hostile_image = "evil/[x](http://e.example)|<b>img</b>\n| fake | row |" + "y" * 5000
    rows = [row("namespaces", "", "shop", "Healthy", "phase Active"),
            row("namespaces", "", "ops", "Healthy"),
            row("deployments", "shop", "web", "Degraded",
                "Deployment \"web\" exceeded its progress deadline",
                images=["shop/web:1.4"], replicas=3, ready=1, labels={"app": "web"}),
            row("pods", "shop", "web-1", "Degraded", "back-off [restarting](http://e)",
                containers=[{"image": hostile_image}], labels={"app": "web", "tier": "fe"}),
            row("pods", "shop", "db-0", "Healthy", "", labels={"app": "db"}),
            row("configmaps", "ops", "settings", "Healthy", "exists")]
    with Inventory(url) as inv:
        assert inv.commit("prod", 0, Changes(added=rows, summary={}), NOW)
    return url


def invoke(*args):
    out = CliRunner().invoke(app, ["inventory", *args])
    assert "Traceback" not in out.output
    return out


def test_the_cluster_and_namespace_tables(store):
    out = invoke("prod")
    assert out.exit_code == 0, out.output
    text = out.output
    assert "cluster prod: not checked" in text and "6 object(s): 4 Healthy, 2 Degraded" in text
    for shown in ("namespace shop: 3 object(s)", "namespace ops: 1 object(s)",
                  "(cluster-scoped)", "Degraded", "1/3", "shop/web:1.4", "3d"):
        assert shown in text, shown
    # The hostile image is one bounded cell: no injected row, no newline, cut.
    assert "| fake | row |" not in text and "y" * 300 not in text
    assert text.index("web-1") < text.index("db-0")  # the least healthy first


def test_filters_by_namespace_kind_health_and_label(store):
    out = invoke("prod", "-n", "shop", "--kind", "pods", "--health", "degraded")
    assert out.exit_code == 0, out.output
    assert "web-1" in out.output and "db-0" not in out.output and "settings" not in out.output
    out = invoke("prod", "-l", "app=web,tier!=fe", "--json")
    names = [o["name"] for o in json.loads(out.output)["objects"]]
    assert names == ["web"]
    out = invoke("prod", "-l", "app in (db, web)", "--health", "Healthy,Degraded", "--json")
    assert sorted(o["name"] for o in json.loads(out.output)["objects"]) == \
        ["db-0", "web", "web-1"]
    out = invoke("prod", "--summary")
    assert out.exit_code == 0 and "web-1" not in out.output and "shop" in out.output


@pytest.mark.parametrize("args, message", [
    (["--health", "Broken"], "--health 'Broken' is not one of Healthy"),
    (["--kind", "nodes"], "unknown kind 'nodes'"),
    (["--namespace", "../kube-system"], "--namespace '../kube-system' is not a valid"),
    (["--namespace", "a\x00b"], "is not a valid Kubernetes namespace"),
    (["--label", "app=web;rm -rf /"], "is not a valid Kubernetes label selector"),
    (["--label", "{{ 7*7 }}"], "is not a valid Kubernetes label selector"),
    (["--label", "x" * 100_000], "is not a valid Kubernetes label selector"),
    (["--label", "count>3"], "is not supported here"),
])
def test_bad_filters_are_refused_with_one_line(store, args, message):
    out = invoke("prod", *args)
    assert out.exit_code == 2, out.output
    assert message in out.output and len(out.output) < 1000


def test_an_unknown_or_hostile_cluster_has_no_inventory(store):
    for name in ("never-synced", "../../etc/passwd", "x" * 10_000, "$(touch /tmp/x)"):
        out = invoke(name)
        assert out.exit_code == 1 and "has no inventory yet" in out.output
        assert len(out.output) < 600


def test_selectors_follow_kubectl():
    req = parse_selector("app=web,!legacy,env notin (prod),tier")
    assert matches({"app": "web", "tier": "x"}, req)
    assert not matches({"app": "web", "tier": "x", "legacy": "1"}, req)
    assert not matches({"app": "web", "tier": "x", "env": "prod"}, req)
    assert not matches({"app": "web"}, req)
    assert matches({}, parse_selector("app!=web"))  # != matches a missing key
