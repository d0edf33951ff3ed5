"""The inventory as tables (pure): keys, cells, bounds, ordering, the summary's links, and
hostile values (markdown, HTML, pipes, newlines, huge values) that must stay text."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from ansflow.masking import Masker
from ansflow.upkeep import inventory_tables as T

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
KEY_RE = re.compile(r"^[a-z0-9-]+$")


def item(kind, namespace, name, health="Healthy", message="", **fields):
    return {"kind": kind, "namespace": namespace, "name": name, "health": health,
            "health_message": message, "first_seen": NOW - timedelta(hours=5),
            "fields": fields, "drift": None}


def test_keys_are_prefect_keys_stable_and_collision_free():
    keys = {T.namespace_key("a-b", "c"), T.namespace_key("a", "b-c"),
            T.namespace_key("A_B", "c"), T.namespace_key("a-b", ""),
            T.cluster_key("a-b"), T.cluster_key("A.B"), T.summary_key("a-b")}
    assert len(keys) == 7
    for key in keys | {T.cluster_key("x" * 500 + "!"), T.namespace_key("é/..", "n" * 63),
                       T.cluster_key("../\0|")}:
        assert KEY_RE.match(key) and len(key) <= 120, key
    assert T.namespace_key("prod", "shop") == T.namespace_key("prod", "shop")
    assert T.namespace_key("prod", "shop").startswith("ansflow-namespace-prod-shop-")
    assert T.cluster_key("prod").startswith("ansflow-inventory-prod-")
    assert "cluster-scoped" in T.namespace_key("prod", "")


def test_cells_are_one_masked_bounded_line():
    masker = Masker(["s3cr3t-token-value"])
    cell = T.plain("a\nb\r\tc\x00d\u202eevil s3cr3t-token-value " + "x" * 10_000, masker)
    assert "\n" not in cell and "\x00" not in cell and "\u202e" not in cell
    assert "s3cr3t" not in cell and "***" in cell
    assert len(cell) == T.MAX_CELL and cell.endswith("…")
    assert T.plain(None) == "" and T.plain(3) == "3"


def test_markdown_and_html_are_escaped_to_text():
    for hostile in ("[click](http://evil.example/x)", "![img](http://e/i.png)",
                    "<img src=x onerror=alert(1)>", "a|b|c", "**bold** _it_ `code`",
                    "# heading", "- list", "1. list", "&lt;script&gt;", "www.evil.example",
                    "> quote", "<https://evil.example>"):
        escaped = T.md(T.plain(hostile))
        assert not re.search(r"(?<!\\)[\[\]()<>|*_`&!]", escaped), escaped
        assert "://" not in escaped and "www." not in escaped
        # Removing the escapes gives the text back: nothing was lost.
        assert re.sub(r"\\(.)", r"\1", escaped) == hostile


def test_ages_are_kubectls_short_form():
    assert T.human_age(NOW - timedelta(seconds=45), NOW) == "45s"
    assert T.human_age(NOW - timedelta(minutes=12), NOW) == "12m"
    assert T.human_age(NOW - timedelta(minutes=90), NOW) == "90m"
    assert T.human_age(NOW - timedelta(hours=5), NOW) == "5h"
    assert T.human_age(NOW - timedelta(days=3), NOW) == "3d"
    assert T.human_age(NOW - timedelta(days=800), NOW) == "2y"
    assert T.human_age(NOW + timedelta(hours=1), NOW) == "0s"
    assert T.human_age(None, NOW) == ""


def test_object_rows_show_health_age_images_replicas_and_drift():
    dep = item("deployments", "shop", "web", "Degraded", "ProgressDeadlineExceeded",
               images=["web:1", "sidecar:2"], replicas=3, ready=1,
               created="2026-12-01T12:00:00Z")
    dep["drift"] = [{"field": "spec.template.spec.containers[name=web].image",
                     "manager": "kubectl-edit"}]
    row = T.object_row(dep, NOW)
    assert row == {"kind": "Deployment", "name": "web", "health": "Degraded",
                   "message": "ProgressDeadlineExceeded", "age": "6d",
                   "images": "web:1, sidecar:2", "replicas": "1/3",
                   "drift": "spec.template.spec.containers[name=web].image (kubectl-edit)"}
    pod = item("pods", "shop", "web-1", containers=[{"image": "web:1"}], ready=True)
    assert T.object_row(pod, NOW)["images"] == "web:1"
    assert T.object_row(pod, NOW)["replicas"] == "" and T.object_row(pod, NOW)["age"] == "5h"
    assert T.replicas({"completions": None, "succeeded": 0}) == "0/1"
    assert T.replicas({"replicas": 2, "desired": 5, "min": 1}) == "2/5"
    assert T.replicas({"replicas": None, "ready": 0}) == "0/?"
    assert T.replicas({"ready": True}) == ""
    old = item("configmaps", "shop", "c", health=None)
    assert T.object_row(old, NOW)["health"] == T.NO_HEALTH


def test_tables_count_by_kind_and_health_and_keep_the_least_healthy_rows():
    items = [item("namespaces", "", "shop", "Healthy")]
    items += [item("pods", "shop", f"p{i:03}") for i in range(50)]
    items += [item("pods", "shop", "broken", "Degraded", "CrashLoopBackOff")]
    items += [item("deployments", "shop", "web", "Progressing")]
    items += [item("configmaps", "other", "c", None)]
    tables = T.build("prod", iter(items), {"status": "ok", "nodes_total": 3,
                                           "nodes_ready": 2}, now=NOW, max_rows=10)
    shop = tables.namespaces["shop"]
    assert shop.objects == 52 and shop.health == "Healthy"
    assert shop.by_kind == {"pods": 51, "deployments": 1}
    assert shop.by_health == {"Healthy": 50, "Degraded": 1, "Progressing": 1}
    assert [r["name"] for r in shop.rows[:3]] == ["broken", "web", "p000"]
    assert len(shop.rows) == 10 and shop.truncated == 42
    assert T.namespace_rows(shop)[-1]["name"] == "(42 more objects not shown)"
    assert tables.objects == 54
    rows = T.cluster_rows(tables)
    assert rows[0]["namespace"] == "(all)" and rows[0]["nodes"] == "2/3 ready"
    assert rows[0]["objects"] == 54 and rows[0]["Degraded"] == 1
    assert rows[0]["no health yet"] == 1
    assert [r["namespace"] for r in rows[1:]] == ["(cluster-scoped)", "other", "shop"]
    assert rows[3]["Pod"] == 51 and rows[3]["health"] == "Healthy"
    assert all(set(r) == set(rows[0]) for r in rows)  # one set of columns
    json.dumps(rows)


def test_filters_select_kind_health_and_namespace():
    items = [item("pods", "a", "p1"), item("pods", "b", "p2", "Degraded"),
             item("services", "a", "s1", "Degraded")]
    tables = T.build("c", items, now=NOW, kinds={"pods"}, healths={"Degraded"})
    assert list(tables.namespaces) == ["b"] and tables.objects == 1
    tables = T.build("c", items, now=NOW, namespaces={"a"})
    assert tables.by_kind == {"pods": 1, "services": 1}


def test_the_summary_links_every_published_table_and_lists_problems():
    items = [item("pods", "shop", "web-1", "Degraded", "ImagePullBackOff"),
             item("pods", "[evil](http://x)", "p", "Missing", "<b>gone</b>")]
    tables = T.build("prod|x", items, {"status": "degraded", "message": "1 pod stuck",
                                       "last_sync": NOW, "nodes_total": 1,
                                       "nodes_ready": 1}, now=NOW)
    text = T.summary_markdown(tables, "http://ui:4200/", linked={"shop"},
                              problems=T.problem_rows(tables))
    assert text.startswith("# Cluster prod\\|x\n")
    assert f"(http://ui:4200/artifacts/key/{T.cluster_key('prod|x')})" in text
    assert f"[shop](http://ui:4200/artifacts/key/{T.namespace_key('prod|x', 'shop')})" in text
    assert "not published" in text  # the other namespace has no table
    assert "Nodes: 1 of 1 ready." in text and "Last sync: 2026-12-07 12:00:00 UTC" in text
    assert "ImagePullBackOff" in text and "\\<b\\>gone\\</b\\>" in text
    assert "[evil]" not in text and "](http://x)" not in text
    relative = T.summary_markdown(tables, None)
    assert f"(/artifacts/key/{T.cluster_key('prod|x')})" in relative


def test_many_namespaces_are_bounded_and_ranked():
    items = [item("pods", f"ns-{i:04}", "p") for i in range(T.MAX_NAMESPACES + 50)]
    items.append(item("pods", "ns-9999", "bad", "Degraded"))
    tables = T.build("c", items, now=NOW)
    shown = tables.shown_namespaces()
    assert len(shown) == T.MAX_NAMESPACES and "ns-9999" in {t.namespace for t in shown}
    rows = T.cluster_rows(tables)
    assert len(rows) == 1 + T.MAX_NAMESPACES + 1
    assert rows[-1]["namespace"] == "(51 more namespaces)" and rows[-1]["objects"] == 51
    text = T.summary_markdown(tables, None)
    assert text.count("\n| ns-") == T.MAX_SUMMARY_ROWS


def test_rows_kept_per_namespace_stay_bounded_while_reading():
    seen = []

    def items():
        for i in range(5000):
            seen.append(i)
            yield item("pods", "big", f"p{i:05}", "Degraded" if i == 4321 else "Healthy")

    tables = T.build("c", items(), now=NOW, max_rows=10)
    big = tables.namespaces["big"]
    assert len(seen) == 5000 and big.objects == 5000 and len(big.rows) == 10
    assert big.rows[0]["name"] == "p04321"
    assert [r["name"] for r in big.rows[1:3]] == ["p00000", "p00001"]
