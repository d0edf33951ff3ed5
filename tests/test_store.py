"""Build numbers: per pipeline, increasing, unique under concurrent allocation."""

from concurrent.futures import ThreadPoolExecutor
import multiprocessing

from ansflow.store import Store


def _allocate(url: str) -> int:
    store = Store(url)
    try:
        return store.next_build_number("concurrent")
    finally:
        store.close()


def test_build_numbers_increase_per_pipeline(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    assert [store.next_build_number("a") for _ in range(3)] == [1, 2, 3]
    assert store.next_build_number("b") == 1


def test_twenty_concurrent_allocations_across_processes_are_unique(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    Store(url).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(20) as pool:
        numbers = pool.map(_allocate, [url] * 20)
    assert sorted(numbers) == list(range(1, 21))
    with ThreadPoolExecutor(20) as pool:
        more = list(pool.map(_allocate, [url] * 20))
    assert sorted(more) == list(range(21, 41))
