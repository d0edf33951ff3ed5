"""How plans and run summaries look in a terminal (text, tables, mermaid)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from ansflow.plan import Plan
from ansflow.steptypes import step_type

STATE_STYLE = {
    "completed": "green", "failed": "red", "timedout": "red", "cancelled": "yellow",
    "skipped": "dim", "not_run": "dim", "running": "cyan", "pending": "dim",
}


def _where(step) -> str:  # noqa: ANN001
    target = step_type(step.type).target
    if target == "kubernetes":
        return f"k8s {step.config.get('cluster')}/{step.config.get('namespace')}"
    if target == "runs_on":
        return step.runs_on
    return target


def plan_text(plan: Plan) -> Table:
    table = Table(title=Text(f"{plan.name} ({plan.type})"), title_justify="left")
    for col in ("stage", "step", "id", "type", "runs on", "needs", "options"):
        table.add_column(col)
    for step in plan.steps + plan.finally_steps:
        options = []
        if step.when is not None:
            options.append(f"when: {step.when}")
        if step.retries:
            options.append(f"retries: {step.retries}")
        if step.timeout:
            options.append(f"timeout: {step.timeout:g}s")
        if step.allow_failure:
            options.append("allow_failure")
        if step.matrix_of:
            options.append(_matrix_option(plan, step))
        table.add_row(*(Text(cell) for cell in (
            step.stage, step.name, step.id, step.type, _where(step), ", ".join(step.needs),
            "; ".join(options))))
    return table


def plan_mermaid(plan: Plan) -> str:
    lines = ["flowchart TD"]
    for stage in plan.stages:
        lines.append(f'  subgraph {_mid(stage.name)}["{_label(stage.name)}"]')
        open_matrix = None
        for sid in stage.steps:
            step = plan.step(sid)
            if step.matrix_of != open_matrix:
                if open_matrix:
                    lines.append("    end")
                open_matrix = step.matrix_of
                if open_matrix:
                    m = plan.matrices[open_matrix]
                    lines.append(f'    subgraph m{_mid(open_matrix)}["{_label(m["name"])}: '
                                 f'matrix of {len(m["combinations"])}"]')
            indent = "      " if open_matrix else "    "
            lines.append(f'{indent}{_mid(sid)}["{_label(step.name)}<br/>{step.type}"]')
        if open_matrix:
            lines.append("    end")
        lines.append("  end")
    if plan.finally_steps:
        lines.append('  subgraph finally_["finally"]')
        for step in plan.finally_steps:
            lines.append(f'    {_mid(step.id)}["{_label(step.name)}<br/>{step.type}"]')
        lines.append("  end")
    for step in plan.steps:
        for dep in step.needs:
            lines.append(f"  {_mid(dep)} --> {_mid(step.id)}")
    return "\n".join(lines)


def _matrix_option(plan: Plan, step) -> str:  # noqa: ANN001
    matrix = plan.matrices[step.matrix_of]
    limits = [f"max_parallel {matrix['max_parallel']}"] if matrix.get("max_parallel") else []
    limits.append("fail_fast" if matrix.get("fail_fast", True) else "no fail_fast")
    return (f"matrix {step.matrix_of}['{step.matrix_key}'] "
            f"({len(matrix['combinations'])} combinations; {', '.join(limits)})")


def _mid(name: str) -> str:
    return "n_" + "".join(c if c.isascii() and c.isalnum() else "_" for c in name)


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


def summary_table(summary: dict[str, Any]) -> Table:
    state = summary["state"]
    # Names and messages are data: never parsed as Rich markup (`demo[/]` is a fine name).
    title = Text.assemble(f"{summary['pipeline']} #{summary['build_number']}: ",
                          (state, STATE_STYLE.get(state, "")),
                          f" - {summary.get('message', '')}")
    table = Table(title=title, title_justify="left")
    for col in ("stage", "step", "state", "exit", "tries", "time", "message"):
        table.add_column(col)
    for s in summary["steps"]:
        style = STATE_STYLE.get(s["state"], "")
        table.add_row(Text(s["stage"]), Text(s["name"]), Text(s["state"], style=style),
                      "" if s["exit_code"] is None else str(s["exit_code"]),
                      str(s["attempts"]), f"{s['duration_s']:.1f}s",
                      Text((s.get("message") or "")[:120]))
    return table
