"""The per-step path's shortcuts keep behaviour: a local step's $ANSFLOW_OUTPUT file, task
runs named by their step, Prefect's tag concurrency limits honoured, the no-limits shortcut
taken only for tag sets Prefect itself has cached as unlimited."""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from pathlib import Path

import pytest
from fixtures_pipeline import by_id, task_runs

from ansflow.errors import StepFailed
from ansflow.spec.steps import CommandConfig, ScriptConfig
from ansflow.tasks.command import execute_command, execute_script

_SHOW_OUTPUT = ('size=$(wc -c < "$ANSFLOW_OUTPUT"); mode=$(stat -c %a "$ANSFLOW_OUTPUT"); '
                'echo "where=$ANSFLOW_OUTPUT" >> "$ANSFLOW_OUTPUT"; '
                'echo "size=$size" >> "$ANSFLOW_OUTPUT"; echo "mode=$mode" >> "$ANSFLOW_OUTPUT"')


def test_a_local_steps_outputs_file_is_new_private_and_gone_after(make_ctx, tmp_path):
    ctx = make_ctx("command", runs_on="local")
    first = execute_command(ctx, CommandConfig(command=_SHOW_OUTPUT)).outputs
    second = execute_command(ctx, CommandConfig(command=_SHOW_OUTPUT)).outputs
    assert first["size"] == "0" and first["mode"] == "600"  # empty and the worker's alone
    assert first["where"] != second["where"]  # a new file for every step
    for where in (first["where"], second["where"]):
        assert not where.startswith(str(tmp_path)) and not Path(where).exists()
    folder = Path(first["where"]).parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_step_removing_its_outputs_folder_or_file_harms_no_later_step(make_ctx):
    ctx = make_ctx("command", runs_on="local")
    where = execute_command(ctx, CommandConfig(command=_SHOW_OUTPUT)).outputs["where"]
    execute_command(ctx, CommandConfig(command=f'rm -rf "{Path(where).parent}"'))
    after = execute_command(ctx, CommandConfig(command=_SHOW_OUTPUT)).outputs
    assert after["size"] == "0" and Path(after["where"]).parent != Path(where).parent
    # A directory where the file was, or a link to a host file: refused, nothing read,
    # nothing left behind.
    for swap in ('mkdir "$ANSFLOW_OUTPUT"; touch "$ANSFLOW_OUTPUT/x"',
                 'ln -s /etc/passwd "$ANSFLOW_OUTPUT"'):
        with pytest.raises(StepFailed, match="ANSFLOW_OUTPUT") as err:
            execute_command(ctx, CommandConfig(command=f'rm "$ANSFLOW_OUTPUT"; {swap}'))
        assert "root:" not in str(err.value)
    assert os.listdir(Path(after["where"]).parent) == []
    assert Path("/etc/passwd").exists()


@pytest.mark.parametrize("step_id", ["../../etc/x", "a/b c", "{{ x }}", "$(touch pwned)",
                                     "é" * 300, "x\udcff"])
def test_hostile_step_ids_name_no_path_outside_the_outputs_folder(make_ctx, step_id, tmp_path):
    ctx = make_ctx("command", runs_on="local", step_id=step_id)
    where = execute_command(ctx, CommandConfig(command=_SHOW_OUTPUT)).outputs["where"]
    assert Path(where).parent.name.startswith("ansflow-outputs-")
    assert "/" not in Path(where).name and len(Path(where).name) <= 60
    assert not list(tmp_path.rglob("pwned"))


def test_an_inline_script_keeps_its_own_scratch_directory(make_ctx):
    ctx = make_ctx("script", runs_on="local")
    out = execute_script(ctx, ScriptConfig(script='echo "s=$0" >> "$ANSFLOW_OUTPUT"; '
                                                  'echo "o=$ANSFLOW_OUTPUT" >> "$ANSFLOW_OUTPUT"'))
    assert Path(out.outputs["s"]).parent == Path(out.outputs["o"]).parent
    assert not Path(out.outputs["s"]).parent.exists()


def test_task_runs_are_named_by_their_step_braces_and_all(run_pipeline):
    state, summary = run_pipeline("""
        steps:
          - {id: a, name: "Build {x} {{0}} %s", type: command, config: {command: "true"}}
          - {id: b, type: command, config: {command: "true"}}
          - {id: c, name: "Skipped one", when: "false", type: command, config: {command: "x"}}
    """)
    assert state.is_completed(), summary["message"]
    runs = {r.name: r for r in task_runs(state.state_details.flow_run_id)}
    assert {"Build {x} {{0}} %s", "b", "Skipped one"} <= set(runs)
    assert runs["Skipped one"].state.name == "Skipped"
    assert set(runs["b"].tags) == {"stage:main", "type:command"}
    assert by_id(summary)["a"]["state"] == "completed"


def test_a_tag_concurrency_limit_on_a_stage_is_honoured(run_pipeline, tmp_path):
    from prefect.client.orchestration import get_client

    stage = f"limited-{uuid.uuid4().hex[:8]}"
    (tmp_path / "t").mkdir()
    steps = "\n".join(
        f"      - {{id: s{i}, type: command, config: {{command: 'date +%s.%N > t/s{i}.start; "
        f"sleep 0.5; date +%s.%N > t/s{i}.end'}}}}" for i in range(3))
    text = (f"pipeline:\n  name: tag-limited\n  stages:\n  - name: {stage}\n"
            f"    parallel: true\n    steps:\n{steps}\n")
    with get_client(sync_client=True) as client:
        limit_id = client.create_concurrency_limit(tag=f"stage:{stage}", concurrency_limit=1)
    try:
        state, summary = run_pipeline(text)
    finally:
        with get_client(sync_client=True) as client:
            client.delete_concurrency_limit_by_tag(f"stage:{stage}")
    assert limit_id
    assert state.is_completed(), summary["message"]
    spans = sorted((float((tmp_path / "t" / f"s{i}.start").read_text()),
                    float((tmp_path / "t" / f"s{i}.end").read_text())) for i in range(3))
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, spans  # one at a time: the limit of 1 held


def test_the_no_limits_shortcut_answers_only_what_prefect_cached():
    from prefect import task_engine
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.concurrency import services

    from ansflow.flows.tag_limits import mark_unlimited, skip_known_unlimited

    skip_known_unlimited()
    skip_known_unlimited()  # once per process, however often it is asked
    holder = ConcurrencyLeaseHolder(type="task_run", id=uuid.uuid4())
    known = [f"stage:s-{uuid.uuid4().hex[:6]}", "type:command"]
    mark_unlimited(known, set())
    cached = task_engine._concurrency(names=[f"tag:{t}" for t in known], occupy=1,
                                      holder=holder, lease_duration=60)
    assert isinstance(cached, contextlib.nullcontext)
    with cached:
        pass
    # Not cached, not a task run's tags, or a limit named: Prefect's own path (not entered).
    unknown = [f"tag:stage:s-{uuid.uuid4().hex[:6]}"]
    assert not isinstance(task_engine._concurrency(names=unknown, occupy=1, holder=holder),
                          contextlib.nullcontext)
    flow_holder = ConcurrencyLeaseHolder(type="flow_run", id=uuid.uuid4())
    assert not isinstance(task_engine._concurrency(names=[f"tag:{t}" for t in known],
                                                   occupy=1, holder=flow_holder),
                          contextlib.nullcontext)
    limited = [f"stage:s-{uuid.uuid4().hex[:6]}", "type:k8s_deploy"]
    mark_unlimited(limited, {"type:k8s_deploy"})
    assert frozenset(f"tag:{t}" for t in limited) not in services._no_limits_cache
