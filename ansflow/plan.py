"""The plan: a validated pipeline resolved into steps with explicit dependencies (pure data)."""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PlannedStep:
    id: str
    name: str
    type: str
    stage: str
    config: dict[str, Any]  # raw: templates are rendered just before the step runs
    needs: list[str] = field(default_factory=list)  # resolved step ids
    when: bool | str | None = None
    retries: int = 0
    retry_delay: float = 0.0
    retry_on_exit_codes: list[int] | None = None
    timeout: float | None = None
    allow_failure: bool = False
    env: dict[str, str] = field(default_factory=dict)
    runs_on: str = "local"
    is_finally: bool = False
    # A combination of a `matrix:` step: its values, its key ("python=3.11,os=a") and the
    # id of the step it expands (its id is "<that id>.<n>").
    matrix: dict[str, Any] | None = None
    matrix_key: str | None = None
    matrix_of: str | None = None


@dataclass
class PlannedStage:
    name: str
    needs: list[str]
    parallel: bool
    steps: list[str]


@dataclass
class Plan:
    name: str
    type: str
    source: str
    workspace: str
    description: str | None = None
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedule: dict[str, str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    env_passthrough: list[str] = field(default_factory=list)  # worker variables steps inherit
    defaults: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    max_parallel: int | None = None
    stages: list[PlannedStage] = field(default_factory=list)
    steps: list[PlannedStep] = field(default_factory=list)
    finally_steps: list[PlannedStep] = field(default_factory=list)
    # Matrix steps by id: {"name", "keys", "combinations": {key: combination id},
    # "fail_fast", "max_parallel"}.
    matrices: dict[str, dict[str, Any]] = field(default_factory=dict)
    source_sha256: str = ""  # of the file's bytes: a retry tells whether the file changed
    # `source:` (ansflow.spec.source.GitSource's fields), None: the pipeline's folder is copied.
    git_source: dict[str, Any] | None = None
    # `on.push`: {"repository": clone URL, "filters": {branches: [...], ...}}; None: no trigger.
    on_push: dict[str, Any] | None = None

    def step(self, step_id: str) -> PlannedStep:
        for s in self.steps + self.finally_steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def variable_defaults(self) -> dict[str, Any]:
        return {k: v.get("default") for k, v in self.variables.items()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle in ``graph`` (node -> its dependencies) as [a, b, ..., a], or None.

    Iterative depth-first search (no recursion limit on long chains): linear in nodes plus
    edges, memory linear in nodes."""
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    for root in graph:
        if root in state:
            continue
        path: list[str] = [root]
        where: dict[str, int] = {root: 0}  # node on the path -> its index there
        iters = [iter(graph.get(root, []))]
        state[root] = 1
        while iters:
            dep = next(iters[-1], None)
            if dep is None:
                node = path.pop()
                iters.pop()
                del where[node]
                state[node] = 2
                continue
            if state.get(dep) == 1:
                return path[where[dep]:] + [dep]
            if dep not in state and dep in graph:
                state[dep] = 1
                where[dep] = len(path)
                path.append(dep)
                iters.append(iter(graph.get(dep, [])))
    return None


class RunsBefore:
    """Answers "does step A run before step B" in an acyclic ``graph`` (node -> its
    dependencies) without materializing every node's ancestor set (that was quadratic in
    memory: 15,000 sequential steps took 4.9 GB).

    A query is a breadth-first search backwards from B that stops at A, pruned by the
    topological rank (nothing placed before A in the run order can lead to A). A step asked
    about often (many steps read one build step's outputs) gets its set of dependents
    computed once instead, and a few such sets are kept. Memory stays linear in nodes plus
    edges; a query costs at most one walk of the graph.
    """

    HOT_AFTER = 3  # queries about one step before its dependents are computed
    KEEP = 8  # dependents sets kept at a time

    def __init__(self, graph: dict[str, list[str]], order: list[str] | None = None) -> None:
        self.graph = graph
        order = order if order is not None else topological(graph, list(graph))
        self.rank = {n: i for i, n in enumerate(order)}
        self._asked: dict[str, int] = {}
        self._dependents: OrderedDict[str, set[str]] = OrderedDict()
        self._reverse: dict[str, list[str]] | None = None

    def __call__(self, earlier: str, later: str) -> bool:
        """Is ``earlier`` a (transitive) dependency of ``later``?"""
        rank = self.rank
        if earlier not in rank or later not in rank or rank[later] <= rank[earlier]:
            return False
        dependents = self._dependents.get(earlier)
        if dependents is not None:
            self._dependents.move_to_end(earlier)
            return later in dependents
        asked = self._asked[earlier] = self._asked.get(earlier, 0) + 1
        if asked >= self.HOT_AFTER:
            dependents = self._dependents_of(earlier)
            self._dependents[earlier] = dependents
            if len(self._dependents) > self.KEEP:
                self._dependents.popitem(last=False)
            return later in dependents
        return self._search(earlier, later)

    def _search(self, earlier: str, later: str) -> bool:
        rank = self.rank
        floor = rank[earlier]
        seen = {later}
        frontier = [later]
        while frontier:
            nxt: list[str] = []
            for node in frontier:
                for dep in self.graph.get(node, ()):
                    if dep == earlier:
                        return True
                    if dep not in seen and rank.get(dep, -1) > floor:
                        seen.add(dep)
                        nxt.append(dep)
            frontier = nxt
        return False

    def _dependents_of(self, node: str) -> set[str]:
        if self._reverse is None:
            self._reverse = {}
            for child, deps in self.graph.items():
                for dep in deps:
                    self._reverse.setdefault(dep, []).append(child)
        out: set[str] = set()
        frontier = [node]
        while frontier:
            nxt = []
            for n in frontier:
                for child in self._reverse.get(n, ()):
                    if child not in out:
                        out.add(child)
                        nxt.append(child)
            frontier = nxt
        return out


def topological(graph: dict[str, list[str]], order: list[str]) -> list[str]:
    """Nodes sorted so dependencies come first, ties broken by the written ``order``
    (Kahn's algorithm with a heap: linear in nodes plus edges, times log n). Nodes left on
    a cycle keep their written order at the end."""
    index = {n: i for i, n in enumerate(order)}
    waiting = {n: 0 for n in order}
    dependents: dict[str, list[str]] = {}
    for node in order:
        for dep in set(graph.get(node, [])):
            if dep in index:
                waiting[node] += 1
                dependents.setdefault(dep, []).append(node)
    ready = [index[n] for n in order if waiting[n] == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        node = order[heapq.heappop(ready)]
        out.append(node)
        for child in dependents.get(node, []):
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, index[child])
    if len(out) < len(order):
        placed = set(out)
        out.extend(n for n in order if n not in placed)
    return out


def stage_step_deps(
    stages: list[PlannedStage], step_needs: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Step-level dependencies from stage order, `needs`, `parallel` and step `needs`.

    A stage without `needs` follows the stage before it. In a sequential stage each step
    follows the one before it; a stage's entry steps wait for the last steps (sinks) of every
    stage it needs.
    """
    sinks: dict[str, list[str]] = {}
    deps: dict[str, list[str]] = {}
    # A stage may need one written after it: visit the stages in their run order, so the
    # sinks of every needed stage are known when its dependents are wired.
    by_name = {st.name: st for st in stages}
    order = topological({st.name: list(st.needs) for st in stages}, list(by_name))
    for st in (by_name[name] for name in order):
        in_stage = set(st.steps)
        for i, sid in enumerate(st.steps):
            own = list(step_needs.get(sid, []))
            if not st.parallel and i > 0 and st.steps[i - 1] not in own:
                own.append(st.steps[i - 1])
            deps[sid] = own
        for sid in st.steps:
            if not any(d in in_stage for d in deps[sid]):
                if st.needs:
                    have = set(deps[sid])
                    for needed in st.needs:
                        for s in sinks.get(needed, []):
                            if s not in have:
                                have.add(s)
                                deps[sid].append(s)
        used = {d for sid in st.steps for d in deps[sid] if d in in_stage}
        sinks[st.name] = [s for s in st.steps if s not in used]
    return deps
