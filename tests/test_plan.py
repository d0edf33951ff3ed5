"""Stage and step dependencies resolved from stage order, needs and parallel."""

from ansflow.plan import PlannedStage, find_cycle, stage_step_deps, topological


def test_sequential_stages_and_steps():
    stages = [PlannedStage("a", [], False, ["a1", "a2"]), PlannedStage("b", ["a"], False, ["b1"])]
    assert stage_step_deps(stages, {}) == {"a1": [], "a2": ["a1"], "b1": ["a2"]}


def test_parallel_stage_entry_steps_wait_for_needed_stage_sinks():
    stages = [PlannedStage("a", [], True, ["a1", "a2"]),
              PlannedStage("b", ["a"], True, ["b1", "b2"]),
              PlannedStage("c", [], False, ["c1"])]
    deps = stage_step_deps(stages, {"b2": ["b1"]})
    assert deps["a1"] == [] and deps["a2"] == []
    assert sorted(deps["b1"]) == ["a1", "a2"]
    assert deps["b2"] == ["b1"]
    assert deps["c1"] == []


def test_cycle_and_topological_order():
    assert find_cycle({"a": ["b"], "b": ["a"]}) == ["a", "b", "a"]
    assert find_cycle({"a": [], "b": ["a"]}) is None
    assert topological({"a": ["b"], "b": []}, ["a", "b"]) == ["b", "a"]


def test_a_stage_may_need_a_stage_written_after_it():
    stages = [PlannedStage("deploy", ["build"], False, ["d1"]),
              PlannedStage("build", [], False, ["b1", "b2"])]
    assert stage_step_deps(stages, {}) == {"b1": [], "b2": ["b1"], "d1": ["b2"]}


def test_topological_breaks_ties_by_written_order_and_keeps_cycles_last():
    assert topological({"c": ["a"], "b": []}, ["c", "b", "a"]) == ["b", "a", "c"]
    assert topological({"x": ["y"], "y": ["x"], "z": []}, ["x", "y", "z"]) == ["z", "x", "y"]
    n = 50_000  # linear, not quadratic: a long chain written in reverse
    chain = {f"s{i}": [f"s{i + 1}"] for i in range(n - 1)}
    assert topological(chain, [f"s{i}" for i in range(n)])[:2] == [f"s{n - 1}", f"s{n - 2}"]


# -- 50,000 nodes: iterative, memory-linear (no recursion limit, no quadratic walk) --------------------------------
N = 50_000


def _peak_mb(fn):
    import tracemalloc

    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def test_find_cycle_walks_a_50000_chain_without_recursion():
    chain = {f"s{i}": [f"s{i + 1}"] for i in range(N - 1)}
    chain[f"s{N - 1}"] = []
    assert find_cycle(chain) is None  # was: RecursionError
    chain[f"s{N - 1}"] = ["s0"]
    cycle = find_cycle(chain)
    assert cycle[0] == cycle[-1] == "s0" and len(cycle) == N + 1


def test_runs_before_on_50000_sequential_steps_stays_small():
    from ansflow.plan import RunsBefore

    chain = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(N)}

    def queries():
        before = RunsBefore(chain)
        # every step asks about the first one (a hot target) and its predecessor
        return (all(before("s0", f"s{i}") for i in range(1, N))
                and all(before(f"s{i - 1}", f"s{i}") for i in range(1, N))
                and not before(f"s{N - 1}", "s0") and not before("s5", "s5")
                and not before("nope", "s3"))

    ok, peak = _peak_mb(queries)
    assert ok
    assert peak < 100, f"{peak:.0f} MB"  # the old ancestor sets: gigabytes


def test_runs_before_respects_branches():
    from ansflow.plan import RunsBefore

    graph = {"a": [], "b": ["a"], "c": ["a"], "d": ["b"]}
    before = RunsBefore(graph)
    for _ in range(5):  # past the hot threshold: the dependents set answers the same
        assert before("a", "d") and before("b", "d") and not before("c", "d")
        assert not before("d", "a") and not before("b", "c")


def test_stage_deps_wide_fan_in_and_many_stages_are_linear():
    import time

    wide = [PlannedStage("a", [], True, [f"s{i}" for i in range(N)]),
            PlannedStage("b", ["a"], False, ["last", "after"])]
    many = [PlannedStage(f"t{i}", [f"t{i - 1}"] if i else [], False, [f"m{i}"])
            for i in range(N)]
    start = time.perf_counter()
    deps = stage_step_deps(wide, {})
    assert len(deps["last"]) == N and deps["after"] == ["last"]
    deps = stage_step_deps(many, {})
    assert deps[f"m{N - 1}"] == [f"m{N - 2}"]
    # The stage order itself (written in reverse) must not recurse either.
    assert find_cycle({st.name: st.needs for st in reversed(many)}) is None
    assert time.perf_counter() - start < 5  # quadratic membership tests: 16 s and more
