"""Build numbers: per pipeline, increasing, unique under concurrent allocation."""

import multiprocessing
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest

from ansflow.store import Store

# SQLite in the main pass; PostgreSQL in the suite's PostgreSQL pass (scripts/test.sh).
pytestmark = pytest.mark.postgres
_PG = os.environ.get("ANSFLOW_TEST_DATABASE_URL")


@pytest.fixture(params=["postgresql"] if _PG else ["sqlite"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    return _PG


def _allocate(url: str, pipeline: str) -> int:
    store = Store(url)
    try:
        return store.next_build_number(pipeline)
    finally:
        store.close()


def test_build_numbers_increase_per_pipeline(store_url):
    store = Store(store_url)
    a, b = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
    try:
        assert [store.next_build_number(a) for _ in range(3)] == [1, 2, 3]
        assert store.next_build_number(b) == 1
    finally:
        store.close()


def test_twenty_concurrent_allocations_across_processes_are_unique(store_url):
    Store(store_url).close()
    allocate = partial(_allocate, store_url, f"concurrent-{uuid.uuid4().hex}")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(20) as pool:
        numbers = pool.starmap(allocate, [()] * 20)
    assert sorted(numbers) == list(range(1, 21))
    with ThreadPoolExecutor(20) as pool:
        more = list(pool.map(lambda _: allocate(), range(20)))
    assert sorted(more) == list(range(21, 41))
