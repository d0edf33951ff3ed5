"""The dev cluster's audit log, for tests that prove a request was never sent: the events
since a mark, and the checks that nothing reached a victim namespace while a legitimate
request of the same test did (so the check can fail)."""

from __future__ import annotations

import time

from kubernetes import client as k8s


def events_after(dev_cluster, mark: int, until, timeout: float = 20) -> list[dict]:
    """The audit events since `mark`, once `until(events)` holds (the log is written as
    requests finish)."""
    deadline = time.monotonic() + timeout
    while True:
        events = dev_cluster.audit_events(mark)
        if until(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def assert_nothing_reached(events: list[dict], victim_ns: str, legit_uri: str) -> None:
    uris = [e.get("requestURI", "") for e in events]
    # The check can fail: the legitimate request of the same test is in the log.
    assert any(u.startswith(legit_uri) for u in uris), uris[-20:]
    assert not [u for u in uris if victim_ns in u]
    # Only ansflow's requests (the Python client): the cluster's own controllers renew their
    # watches at any moment, with `&watch=true` and `%2F` in label selectors of their own.
    ours = [e.get("requestURI", "") for e in events
            if "python" in str(e.get("userAgent", "")).lower()]
    assert any(u.startswith(legit_uri) for u in ours), "the client's requests are not seen"
    leaked = [u for u in ours if "%2F.." in u or "%2f.." in u or "/x/" in u
              or "x&watch" in u or "x%26watch" in u.lower() or "%252e" in u.lower()
              or "review-x" in u]
    assert not leaked, leaked[:5]


def victim_stays(dev_cluster, victim_ns: str) -> None:
    with dev_cluster.client() as api:
        k8s.CoreV1Api(api).read_namespaced_config_map("victim", victim_ns)
        k8s.CoreV1Api(api).read_namespace(victim_ns)
