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
