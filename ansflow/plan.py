"""The plan: a validated pipeline resolved into steps with explicit dependencies (pure data)."""

from __future__ import annotations

import heapq
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
    defaults: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    stages: list[PlannedStage] = field(default_factory=list)
    steps: list[PlannedStep] = field(default_factory=list)
    finally_steps: list[PlannedStep] = field(default_factory=list)

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
    """A cycle in ``graph`` (node -> its dependencies) as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and dep in graph:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def ancestors(graph: dict[str, list[str]]) -> dict[str, set[str]]:
    """Every node's transitive dependencies (graph must be acyclic)."""
    memo: dict[str, set[str]] = {}

    def of(node: str) -> set[str]:
        if node in memo:
            return memo[node]
        result: set[str] = set()
        for dep in graph.get(node, []):
            result.add(dep)
            result |= of(dep)
        memo[node] = result
        return result

    for node in graph:
        of(node)
    return memo


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
                for needed in st.needs:
                    deps[sid].extend(s for s in sinks.get(needed, []) if s not in deps[sid])
        used = {d for sid in st.steps for d in deps[sid] if d in in_stage}
        sinks[st.name] = [s for s in st.steps if s not in used]
    return deps
