"""`command` and `script` steps: real processes, locally or in a container (runs_on: docker)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ansflow.engines.process import run_process
from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.outputs import OutputFormatError, parse_outputs
from ansflow.spec.steps import CommandConfig, ScriptConfig
from ansflow.tasks.base import StepContext, StepResult

_SHELL_FLAGS = {"sh": ["-e", "-c"], "bash": ["--noprofile", "--norc", "-eo", "pipefail", "-c"]}
_INTERPRETER_FLAGS = {"sh": ["-e"], "bash": ["--noprofile", "--norc", "-eo", "pipefail"]}


def command_argv(command: str | list[str], shell: str) -> list[str]:
    """The argv of a command step: a string goes through the shell, a list runs as is."""
    if isinstance(command, list):
        if not command:
            raise StepFailed("command is an empty list")
        return list(command)
    flags = _SHELL_FLAGS.get(Path(shell).name, ["-c"])
    return [shell, *flags, command]


def script_argv(interpreter: str, path: str, args: list[str]) -> list[str]:
    parts = interpreter.split()
    flags = _INTERPRETER_FLAGS.get(Path(parts[0]).name, []) if len(parts) == 1 else []
    return [*parts, *flags, path, *args]


def execute_command(ctx: StepContext, config: CommandConfig) -> StepResult:
    """Run a command line (through ``config.shell``) or an argv list."""
    argv = command_argv(config.command, config.shell)
    return _run(ctx, argv, config.working_dir, config.image)


def execute_script(ctx: StepContext, config: ScriptConfig) -> StepResult:
    """Run an inline script or a script file with ``config.interpreter``."""
    if config.file is not None:
        path = Path(ctx.workspace, config.file)
        if not path.is_file():
            raise StepFailed(f"script file not found: {path}")
        return _run(ctx, script_argv(config.interpreter, str(path), config.args),
                    config.working_dir, config.image)
    scratch = _scratch_dir(ctx, config.image)
    try:
        path = Path(scratch, "script")
        path.write_text(config.script or "", encoding="utf-8")
        return _run(ctx, script_argv(config.interpreter, str(path), config.args),
                    config.working_dir, config.image, scratch=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _scratch_dir(ctx: StepContext, image: str | None) -> str:
    # Inside a container only the workspace is mounted, so scratch files live there.
    if ctx.runs_on == "docker":
        base = Path(ctx.workspace, ".ansflow", "tmp")
        base.mkdir(parents=True, exist_ok=True)
        return tempfile.mkdtemp(prefix=f"{ctx.step_id}-", dir=base)
    return tempfile.mkdtemp(prefix=f"ansflow-{ctx.step_id}-")


def _run(ctx: StepContext, argv: list[str], working_dir: str | None, image: str | None,
         scratch: str | None = None) -> StepResult:
    cwd = str(Path(ctx.workspace, working_dir)) if working_dir else ctx.workspace
    if ctx.runs_on not in ("local", "docker"):
        raise StepFailed(f"runs_on: {ctx.runs_on} is not available in this version of ansflow "
                         "(use local or docker)")
    own_scratch = scratch is None
    scratch = scratch or _scratch_dir(ctx, image)
    output_file = Path(scratch, "outputs")
    output_file.touch()
    env = {
        **ctx.env,
        "ANSFLOW_OUTPUT": str(output_file),
        "ANSFLOW_PIPELINE": ctx.pipeline,
        "ANSFLOW_BUILD_NUMBER": str(ctx.build_number),
        "ANSFLOW_RUN_ID": ctx.run_id,
        "ANSFLOW_STEP_ID": ctx.step_id,
        "ANSFLOW_WORKSPACE": ctx.workspace,
        "CI": "true",
    }
    try:
        if ctx.runs_on == "docker":
            exit_code = _run_in_docker(ctx, argv, cwd, env, image)
        else:
            exit_code = _run_local(ctx, argv, cwd, env)
        outputs = _read_outputs(output_file)
    finally:
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if exit_code != 0:
        raise StepFailed(f"exited with code {exit_code}", exit_code=exit_code)
    return StepResult(exit_code=0, outputs=outputs)


def _run_local(ctx: StepContext, argv: list[str], cwd: str, env: dict[str, str]) -> int:
    if not Path(cwd).is_dir():
        raise StepFailed(f"working directory does not exist: {cwd}")
    full_env = {**os.environ, **env}
    try:
        outcome = run_process(
            argv, cwd=cwd, env=full_env,
            emit=lambda line, stream: ctx.emit(line, stream=stream),
            timeout=ctx.remaining(), cancelled=ctx.control.cancelled, on_start=ctx.on_cancel,
        )
    except FileNotFoundError as exc:
        raise StepFailed(f"command not found: {argv[0]}", exit_code=127) from exc
    except PermissionError as exc:
        raise StepFailed(f"permission denied running {argv[0]}", exit_code=126) from exc
    if outcome.timed_out:
        raise StepTimedOut(f"timed out after {ctx.timeout:g}s; the process group was killed",
                           exit_code=outcome.exit_code)
    if outcome.cancelled:
        raise StepCancelled("cancelled; the process group was killed", exit_code=outcome.exit_code)
    return outcome.exit_code if outcome.exit_code is not None else -1


def _run_in_docker(ctx: StepContext, argv: list[str], cwd: str, env: dict[str, str],
                   image: str | None) -> int:
    image = image or (ctx.defaults.get("docker") or {}).get("image")
    if not image:
        raise StepFailed("this step runs on docker but names no image: set the step's "
                         "config.image or the pipeline's defaults.docker.image")
    try:
        from ansflow.tasks.docker_run import run_in_container  # noqa: PLC0415
    except ImportError as exc:
        raise StepFailed("runs_on: docker is not available in this version of ansflow") from exc
    return run_in_container(ctx, image=image, argv=argv, working_dir=cwd, env=env)


def _read_outputs(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    try:
        return parse_outputs(text)
    except OutputFormatError as exc:
        raise StepFailed(f"bad $ANSFLOW_OUTPUT content: {exc}") from exc
