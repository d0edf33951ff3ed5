"""Inventory artifacts: publishing the namespace tables (and the cluster table and summary)
of 10,000 objects, vs Prefect's own `create_table_artifact` / `create_markdown_artifact`
called once per artifact with the same rows.

    python bench/bench_inventory_artifacts.py [--objects 10000] [--reps 3]

Starts a private Prefect server, writes an SQLite inventory of --objects objects as a sync
does (pods, deployments, services, configmaps, a share of them not Healthy, with drift on
some), then, inside one flow run, for each layout (all objects in 1, 10, 30 and 100
namespaces):
1. build: reading the inventory and building every table (pure, masked, escaped);
2. publish: `publish_inventory` (build + one API client, 8 requests in flight);
3. peer: build + the same artifact bodies through `create_table_artifact` /
   `create_markdown_artifact`, one call after the other (a new client per call).
The median of --reps is printed with the ratio publish / peer. Target: publish <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_deployments import free_port, start, stop, wait_healthy  # noqa: E402

KINDS = ("pods", "deployments", "services", "configmaps")


def rows_for(objects: int, namespaces: int, now: datetime) -> list[dict]:
    out = []
    for i in range(objects):
        kind = KINDS[0] if i % 10 < 7 else KINDS[1 + i % 3]
        health = "Degraded" if i % 50 == 0 else ("Progressing" if i % 33 == 0 else "Healthy")
        fields = {"labels": {"app": f"app-{i % 40}", "tier": "web"}}
        if kind == "pods":
            fields.update(phase="Running", containers=[
                {"name": "main", "image": f"registry.example/team/app-{i % 40}:1.{i % 7}"},
                {"name": "sidecar", "image": "registry.example/mesh/proxy:2.3"}])
        elif kind == "deployments":
            fields.update(images=[f"registry.example/team/app-{i % 40}:1.{i % 7}"],
                          replicas=3, ready=3 if health == "Healthy" else 1)
        out.append({
            "cluster": "bench", "uid": str(uuid.uuid4()), "kind": kind,
            "namespace": f"ns-{i % namespaces:03}", "name": f"{kind[:-1]}-{i:06}",
            "resource_version": "1", "first_seen": now - timedelta(hours=i % 500),
            "last_seen": now, "changed": now, "removed": None, "fields": json.dumps(fields),
            "applied_time": None, "applied_fields": None,
            "drift": json.dumps([{"field": "spec.replicas", "manager": "kubectl-edit"}])
            if i % 97 == 0 else None,
            "health": health,
            "health_message": "" if health == "Healthy" else
            f"Deployment \"x-{i}\" exceeded its progress deadline"})
    out += [{**out[0], "uid": str(uuid.uuid4()), "kind": "namespaces", "namespace": "",
             "name": f"ns-{n:03}", "fields": "{}", "health": "Healthy", "drift": None}
            for n in range(namespaces)]
    return out


def measure(objects: int, reps: int, work: Path) -> list[tuple]:
    from prefect import flow
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from ansflow.flows.inventory_publish import artifacts_of, inventory_items, publish_inventory
    from ansflow.masking import Masker
    from ansflow.upkeep import inventory_tables as T
    from ansflow.upkeep.inventory import Changes, Inventory

    results = []
    now = datetime.now(timezone.utc)
    masker = Masker(["s3cr3t-not-in-the-inventory"])

    @flow(name="bench-inventory-artifacts", persist_result=False)
    def run() -> None:
        warm = f"sqlite:///{work}/inv-warm.db"  # the server's first writes are slow: not measured
        with Inventory(warm) as inv:
            inv.commit("bench", 0, Changes(added=rows_for(100, 2, now), summary={}), now)
            publish_inventory("bench", masker, inventory=inv)
            create_table_artifact(table=[{"a": 1}], key="bench-warm")
        for namespaces in (1, 10, 30, 100):
            url = f"sqlite:///{work}/inv-{namespaces}.db"
            with Inventory(url) as inv:
                inv.commit("bench", 0, Changes(added=rows_for(objects, namespaces, now),
                                               summary={}), now)
            build, publish, peer = [], [], []
            with Inventory(url) as inv:
                for _ in range(reps):
                    t0 = time.monotonic()
                    tables = T.build("bench", inventory_items(inv, "bench"),
                                     inv.cluster_record("bench"), mask=masker)
                    bodies = artifacts_of(tables, masker, "http://ui.example")
                    build.append(time.monotonic() - t0)
                    t0 = time.monotonic()
                    published = publish_inventory("bench", masker, inventory=inv,
                                                  ui_url="http://ui.example")
                    publish.append(time.monotonic() - t0)
                    t0 = time.monotonic()
                    for body in bodies:
                        if body["type"] == "table":
                            create_table_artifact(table=json.loads(body["data"]),
                                                  key=body["key"] + "-peer",
                                                  description=body["description"])
                        else:
                            create_markdown_artifact(markdown=body["data"],
                                                     key=body["key"] + "-peer",
                                                     description=body["description"])
                    peer.append(time.monotonic() - t0 + build[-1])
            size = sum(len(b["data"]) for b in bodies)
            results.append((namespaces, len(published.keys), size, statistics.median(build),
                            statistics.median(publish), statistics.median(peer)))

    run()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ansflow-bench-invart-"))
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect"), "ANSFLOW_HOME": str(work / "af"),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false"}
    os.environ.update(env)
    server = start([sys.executable, "-m", "prefect", "server", "start"], env, work / "server.log")
    try:
        wait_healthy(env["PREFECT_API_URL"])
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            rows = measure(args.objects, args.reps, work)
    finally:
        stop(server)
    print(f"| {args.objects:,} objects in | artifacts | JSON + markdown | build (pure) | "
          "publish (ansflow) | peer (create_*_artifact each) | ratio | target |")
    print("|---|---|---|---|---|---|---|---|")
    for ns, count, size, build, publish, peer in rows:
        print(f"| {ns} namespace{'s' if ns > 1 else ''} | {count} | {size / 1e6:.2f} MB | "
              f"{build:.2f} s | {publish:.2f} s | {peer:.2f} s | {publish / peer:.2f}x | "
              "<= 2 s |")
    print(f"(median of {args.reps}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}; "
          f"logs in {work})")


if __name__ == "__main__":
    main()
