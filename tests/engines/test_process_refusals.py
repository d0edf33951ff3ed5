"""What no process can receive is refused before the spawn, with a short, clear message: a
NUL byte in the program, an argument, the working directory or the environment, and a
program the system cannot start (a name too long)."""

from __future__ import annotations

import logging

import pytest

from ansflow.engines.errors import EngineError
from ansflow.engines.process import check_spawnable, run_process
from ansflow.errors import StepFailed
from ansflow.runtime.base import StepContext, step_executor
from ansflow.spec.steps import CommandConfig, ScriptConfig
from ansflow.tasks.command import execute_command, execute_script

LONG = "a" * (100 * 1024)


def _run(argv, cwd="/", env=None):
    lines: list[str] = []
    return run_process(argv, cwd=cwd, env=env or {}, emit=lambda line, _s: lines.append(line))


@pytest.mark.parametrize(("argv", "expected"), [
    (["/bin/true\0x"], r"the program '/bin/true\\x00x' contains a NUL byte"),
    (["/bin/true", "ok", "x\0; touch y"], r"argument 2 of the command \('x\\x00; touch y'\) "
                                          "contains a NUL byte, which no program can receive"),
])
def test_a_nul_in_argv_is_refused_before_the_spawn(argv, expected):
    with pytest.raises(EngineError, match=expected):
        _run(argv)


def test_a_nul_in_cwd_or_env_is_refused_and_an_env_value_is_not_repeated():
    with pytest.raises(EngineError, match="working directory '/tmp/\\\\x00x' contains a NUL"):
        _run(["/bin/true"], cwd="/tmp/\0x")
    with pytest.raises(EngineError, match="variable 'TOKEN' has a NUL byte") as info:
        _run(["/bin/true"], env={"TOKEN": "s3cret\0x"})
    assert "s3cret" not in str(info.value)
    with pytest.raises(EngineError, match="name 'A=B' is not one a process can receive"):
        check_spawnable(["/bin/true"], "/", {"A=B": "v"})


def test_a_long_nul_argument_is_cut_in_the_message():
    with pytest.raises(EngineError) as info:
        _run(["/bin/true", "\0" + LONG])
    assert len(str(info.value)) < 300
    assert f"({len(LONG) + 1} characters)" in str(info.value)


def test_a_program_name_too_long_cannot_start_with_a_short_message():
    with pytest.raises(EngineError, match=r"cannot start 'a{80}'\.\.\. \(102400 characters\): "
                                         "File name too long") as info:
        _run([LONG])
    assert len(str(info.value)) < 300


def test_a_missing_program_still_raises_file_not_found():
    with pytest.raises(FileNotFoundError):
        _run(["/nonexistent/ansflow-no-such-program"])


def _ctx(workspace) -> StepContext:
    return StepContext(pipeline="p", run_id="r", build_number=1, step_id="s", step_name="s",
                       stage="x", step_type="command", workspace=str(workspace),
                       logger=logging.getLogger("ansflow.test.step"))


def test_steps_refuse_nul_and_too_long_values_clearly(tmp_path):
    ctx = _ctx(tmp_path)
    cases = [
        (CommandConfig(command=["/bin/echo", "x\0y"]), "argument 1 of the command"),
        (CommandConfig(command="true", shell="/bin/sh\0x"), "the program '/bin/sh"),
        (CommandConfig(command=[LONG]), "cannot start 'aaa"),
        (CommandConfig(command="true", shell=LONG), "cannot start 'aaa"),
        (CommandConfig(command="true", working_dir=LONG), "working_dir 'aaa.* too long"),
    ]
    for config, expected in cases:
        with pytest.raises(StepFailed, match=expected) as info:
            step_executor(execute_command)(ctx, config)
        assert len(str(info.value)) < 400
    for config, expected in [
        (ScriptConfig(script="true", args=["x\0y"]), r"argument \d of the command"),
        (ScriptConfig(script="true", interpreter="sh\0x"), "the program 'sh"),
        (ScriptConfig(script="true", interpreter=LONG), "cannot start 'aaa"),
        (ScriptConfig(file=LONG), "script file 'aaa.* too long"),
        (ScriptConfig(script="true", working_dir=LONG), "working_dir 'aaa.* too long"),
    ]:
        with pytest.raises(StepFailed, match=expected) as info:
            step_executor(execute_script)(ctx, config)
        assert len(str(info.value)) < 400
