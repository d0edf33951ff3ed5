"""A pipeline run's records: what it runs with (RunInfo), each step's outcome
(StepRecord, the run summary's rows) and how many of its steps may run at once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ansflow.errors import AnsflowError
from ansflow.plan import Plan, PlannedStep

DEFAULT_MAX_PARALLEL = 64
MAX_PARALLEL_ENV = "ANSFLOW_MAX_PARALLEL"


def max_parallel(plan: Plan) -> int:
    """How many steps of one run may run at once: the pipeline's `max_parallel`, within the
    worker's ceiling ($ANSFLOW_MAX_PARALLEL, default 64). Steps beyond it wait their turn."""
    raw = os.environ.get(MAX_PARALLEL_ENV, "").strip()
    ceiling = int(raw) if raw.isdigit() and raw.isascii() else -1 if raw else DEFAULT_MAX_PARALLEL
    if not 1 <= ceiling <= 4096:
        raise AnsflowError(f"{MAX_PARALLEL_ENV} must be a whole number from 1 to 4096, got "
                           f"{raw[:40]!r}")
    wanted = plan.max_parallel
    return min(wanted, ceiling) if wanted else ceiling


@dataclass
class StepRecord:
    step: PlannedStep
    state: str = "pending"
    exit_code: int | None = None
    attempts: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        s = self.step
        out = {"id": s.id, "name": s.name, "stage": s.stage, "type": s.type,
               "state": self.state, "exit_code": self.exit_code, "attempts": self.attempts,
               "outputs": self.outputs, "duration_s": round(self.duration_s, 3),
               "message": self.message}
        if s.matrix_of:
            out.update(matrix_of=s.matrix_of, matrix_key=s.matrix_key, matrix=s.matrix)
        return out


@dataclass
class RunInfo:
    pipeline: str
    run_id: str
    build_number: int
    variables: dict[str, Any]
    secrets: dict[str, str]
    # The commit the run checked out (`git.*` in templates; flows.git_source), else empty.
    git: dict[str, str] = field(default_factory=dict)
