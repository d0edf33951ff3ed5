"""`command` and `script` steps: real processes, locally or in a container (runs_on: docker);
their executors and their public Prefect tasks."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal

from ansflow.engines.process import run_process
from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.outputs import OutputFormatError, parse_outputs, read_outputs_file
from ansflow.paths import confine
from ansflow.runtime.base import StepContext, StepResult, label_value, step_executor
from ansflow.runtime.public import (
    StepOutput,
    cluster_argument,
    config_of,
    run_standalone,
    step_task,
)
from ansflow.spec.steps import CommandConfig, ScriptConfig
from ansflow.stepenv import inherited_env

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


@step_executor
def execute_command(ctx: StepContext, config: CommandConfig) -> StepResult:
    """Run a command line (through ``config.shell``) or an argv list."""
    argv = command_argv(config.command, config.shell)
    if ctx.runs_on == "remote":
        from ansflow.runtime.remote import execute_remote  # noqa: PLC0415 - SSH on use

        return execute_remote(ctx, config, argv)
    if ctx.runs_on == "kubernetes":
        from ansflow.runtime.pod_step import execute_in_pod  # noqa: PLC0415 - kubernetes client

        return execute_in_pod(ctx, config, argv)
    return _run(ctx, argv, config.working_dir, config.image, config.host)


@step_executor
def execute_script(ctx: StepContext, config: ScriptConfig) -> StepResult:
    """Run an inline script or a script file with ``config.interpreter``."""
    if ctx.runs_on in ("remote", "kubernetes"):
        return _script_elsewhere(ctx, config)
    if config.file is not None:
        path = Path(confine(config.file, ctx.workspace, "script file"))
        if not path.is_file():
            raise StepFailed(f"script file not found: {path}")
        return _run(ctx, script_argv(config.interpreter, str(path), config.args),
                    config.working_dir, config.image, config.host)
    scratch = _scratch_dir(ctx)
    try:
        path = Path(scratch, "script")
        path.write_text(config.script or "", encoding="utf-8")
        seen = f"{CONTAINER_SCRATCH}/script" if ctx.runs_on == "docker" else str(path)
        return _run(ctx, script_argv(config.interpreter, seen, config.args),
                    config.working_dir, config.image, config.host, scratch=scratch)
    finally:
        _remove_scratch(scratch)


def _script_elsewhere(ctx: StepContext, config: ScriptConfig) -> StepResult:
    """A script on an SSH host or in a pod: a script file's text travels like an inline
    script's."""
    text = config.script or ""
    if config.file is not None:
        path = Path(confine(config.file, ctx.workspace, "script file"))
        if not path.is_file():
            raise StepFailed(f"script file not found: {path}")
        text = path.read_text(encoding="utf-8", errors="replace")
    # The SSH modules only when a step runs remote: a pipeline of local steps starts ~50 ms
    # sooner without them.
    from ansflow.runtime.remote import SCRIPT_PATH, execute_remote  # noqa: PLC0415

    argv = script_argv(config.interpreter, SCRIPT_PATH, config.args)
    if ctx.runs_on == "kubernetes":
        from ansflow.runtime.pod_step import execute_in_pod  # noqa: PLC0415 - kubernetes client

        return execute_in_pod(ctx, config, argv, inline=text)
    return execute_remote(ctx, config, argv, inline=text)


# In a container the step's scratch directory (its outputs file, an inline script) is
# bind-mounted alone here: never inside the workspace or anything else the container mounts.
CONTAINER_SCRATCH = "/run/ansflow-step"


def _scratch_dir(ctx: StepContext) -> str:
    # A private (0700) directory of the worker's, outside the workspace.
    return tempfile.mkdtemp(prefix=f"ansflow-{ctx.step_id[:40]}-")


def _remove_scratch(scratch: str) -> None:
    """Remove a step's scratch directory: its usual files without rmtree's fd-safe walk
    (~1-4 ms at every step's end), anything else the step left there with it."""
    for name in ("outputs", "script"):
        try:
            os.unlink(os.path.join(scratch, name))
        except FileNotFoundError:
            pass
        except OSError:  # a directory now, or not ours: rmtree below
            break
    try:
        os.rmdir(scratch)
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)


# A local command step's $ANSFLOW_OUTPUT is a new file in one private directory of this
# process (made on first use, removed at exit) rather than in a directory of its own: making
# and removing a directory per step cost 1-4 ms at every step on a busy disk (measured in
# bench/bench_core.py's profile), a file in an existing directory ~0.05 ms.
_outputs_lock = threading.Lock()
_outputs_dir: tuple[int, str] | None = None  # (the pid that made it, its path)


def _outputs_folder() -> str:
    global _outputs_dir
    with _outputs_lock:
        made = _outputs_dir
        if made is not None and made[0] == os.getpid():
            try:
                if stat.S_ISDIR(os.lstat(made[1]).st_mode):
                    return made[1]
            except OSError:
                pass  # removed (by a step): make another one
        folder = tempfile.mkdtemp(prefix="ansflow-outputs-")  # 0700
        if made is None or made[0] != os.getpid():
            atexit.register(_remove_outputs_folder)
        _outputs_dir = (os.getpid(), folder)
        return folder


def _remove_outputs_folder() -> None:
    made = _outputs_dir
    if made is not None and made[0] == os.getpid():
        shutil.rmtree(made[1], ignore_errors=True)


def _new_outputs_file(ctx: StepContext) -> Path:
    """A new, empty (0600) $ANSFLOW_OUTPUT file for a step run as a local process."""
    name = f"{label_value(ctx.step_id)[:40]}-{secrets.token_hex(8)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        path = os.path.join(_outputs_folder(), name)
        os.close(os.open(path, flags, 0o600))
    except FileNotFoundError:  # the folder went away between the check and the open
        path = os.path.join(_outputs_folder(), name)
        os.close(os.open(path, flags, 0o600))
    return Path(path)


def _remove_outputs_file(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:  # the step made a directory of it
        shutil.rmtree(path, ignore_errors=True)


def _run(ctx: StepContext, argv: list[str], working_dir: str | None, image: str | None,
         host: str | None, scratch: str | None = None) -> StepResult:
    # remote and kubernetes were dispatched by the callers; only a process here or a
    # container is left.
    cwd = confine(working_dir, ctx.workspace, "working_dir") if working_dir else ctx.workspace
    in_docker = ctx.runs_on == "docker"
    own_scratch = scratch is None and in_docker  # a container mounts a directory of its own
    if scratch is None and not in_docker:
        output_file = _new_outputs_file(ctx)
    else:
        scratch = scratch or _scratch_dir(ctx)
        output_file = Path(scratch, "outputs")
        output_file.touch()
    env = {**ctx.env, **ctx.ansflow_env(
        workspace=ctx.workspace,
        output=f"{CONTAINER_SCRATCH}/outputs" if in_docker else str(output_file))}
    try:
        if in_docker:
            exit_code = _run_in_docker(ctx, argv, cwd, env, image, host, scratch)
        else:
            exit_code = _run_local(ctx, argv, cwd, env)
        outputs = _read_outputs(output_file)
    finally:
        if own_scratch:
            _remove_scratch(scratch)
        elif scratch is None:
            _remove_outputs_file(output_file)
    if exit_code != 0:
        raise StepFailed(f"exited with code {exit_code}", exit_code=exit_code)
    return StepResult(exit_code=0, outputs=outputs)


def _run_local(ctx: StepContext, argv: list[str], cwd: str, env: dict[str, str]) -> int:
    if not Path(cwd).is_dir():
        raise StepFailed(f"working directory does not exist: {cwd}")
    full_env = {**inherited_env(ctx.env_passthrough), **env}
    try:
        outcome = run_process(
            argv, cwd=cwd, env=full_env,
            emit=lambda line, stream: ctx.emit(line, stream=stream),
            timeout=ctx.budget(), cancelled=ctx.control.cancelled, on_start=ctx.on_cancel,
            masker=ctx.masker,
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
                   image: str | None, host: str | None, scratch: str) -> int:
    if not image:
        raise StepFailed("this step runs on docker but names no image: set the step's "
                         "config.image or the pipeline's defaults.docker.image")
    from ansflow.tasks.docker_run import run_in_container  # noqa: PLC0415 - Docker SDK on use

    return run_in_container(ctx, image=image, argv=argv, working_dir=cwd, env=env, host=host,
                            extra_binds=[f"{scratch}:{CONTAINER_SCRATCH}"])


def _read_outputs(path: Path) -> dict[str, str]:
    try:
        return parse_outputs(read_outputs_file(path))
    except OutputFormatError as exc:
        raise StepFailed(f"bad $ANSFLOW_OUTPUT content: {exc}") from exc


@step_task("command", execute_command)
def command(
    *,
    command: str | list[str],
    working_dir: str | None = None,
    shell: str = "sh",
    image: str | None = None,
    host: str | None = None,
    runs_on: Literal["local", "docker", "remote", "kubernetes"] = "local",
    upload_workspace: bool | None = None,
    download: list[str] | None = None,
    cluster: Any = None,
    namespace: str | None = None,
    service_account: str | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict] | None = None,
    resources: dict[str, dict[str, str]] | None = None,
    env: dict[str, str] | None = None,
    env_passthrough: list[str] | None = None,
    workspace: str | None = None,
    timeout: float | None = None,
) -> StepOutput:
    """Run a command: a string through the shell (``sh -e -c``), or an argv list as is.

    Args:
        command: A shell command line, or an argv list run without a shell.
        working_dir: Directory to run in, relative to ``workspace``.
        shell: Shell for string commands: ``sh``, ``bash`` (with pipefail), or a path.
        image: Container image when ``runs_on`` is ``docker`` or ``kubernetes``.
        host: The Docker engine when ``runs_on`` is ``docker``: an address or a DockerHost
            block name (default: ``DOCKER_HOST``); the SshHost block name on ``remote``.
        runs_on: ``local`` (a process here), ``docker`` (a container of ``image`` with the
            workspace mounted at the same path), ``remote`` (on the SshHost block ``host``,
            in the run's directory there; the remote process group ends with the step) or
            ``kubernetes`` (a pod of ``image`` in ``cluster``, the workspace copied into its
            ``/workspace``; the pod is deleted at the end, on timeout and on cancel).
        upload_workspace: Copy the workspace in first: to the host on remote (default no),
            into the pod's ``/workspace`` on kubernetes (default yes).
        download: On remote or kubernetes, paths (relative to the workspace) copied back
            after success.
        cluster: On kubernetes, a KubernetesCluster block, or the name of a saved one, to
            run the pod in.
        namespace: On kubernetes, the pod's namespace (default: the block's).
        service_account: On kubernetes, the pod's service account (its token is mounted
            only then).
        node_selector: On kubernetes, the pod's nodeSelector.
        tolerations: On kubernetes, the pod's tolerations (Kubernetes' own form).
        resources: On kubernetes, ``{"requests": {...}, "limits": {...}}``.
        env: Extra environment variables of the command.
        env_passthrough: Variables of this process (names or globs) the command inherits
            beyond the clean base (PATH, HOME, LANG, LC_*, TZ, TMPDIR, USER, LOGNAME, SHELL,
            TERM); nothing else of this process's environment reaches it.
        workspace: The directory the command works in (default: the current directory).
        timeout: Seconds before the whole process group (or the container) is killed.

    Returns:
        ``exit_code`` (0) and ``outputs``: the ``key=value`` lines the command appended to
        the file named by ``$ANSFLOW_OUTPUT``.

    Raises:
        StepFailed: the command exited non-zero (``exit_code`` holds the code) or could not
            start. StepTimedOut / StepCancelled: killed at the deadline / on cancel.

    Example:
        ```python
        from prefect import flow
        from ansflow.tasks import command

        @flow
        def build():
            out = command(command='make && echo "version=1.2" >> "$ANSFLOW_OUTPUT"')
            print(out["outputs"]["version"])
        ```
    """
    cluster, blocks = cluster_argument(cluster)
    return run_standalone("command", execute_command, config_of(CommandConfig, locals()),
                          timeout=timeout, workspace=workspace, env=env, runs_on=runs_on,
                          env_passthrough=env_passthrough, blocks=blocks)


@step_task("script", execute_script)
def script(
    *,
    script: str | None = None,
    file: str | None = None,
    interpreter: str = "sh",
    args: list[str] | None = None,
    working_dir: str | None = None,
    image: str | None = None,
    host: str | None = None,
    runs_on: Literal["local", "docker", "remote", "kubernetes"] = "local",
    upload_workspace: bool | None = None,
    download: list[str] | None = None,
    cluster: Any = None,
    namespace: str | None = None,
    service_account: str | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict] | None = None,
    resources: dict[str, dict[str, str]] | None = None,
    env: dict[str, str] | None = None,
    env_passthrough: list[str] | None = None,
    workspace: str | None = None,
    timeout: float | None = None,
) -> StepOutput:
    """Run an inline script, or a script file, with an interpreter.

    Args:
        script: The script's text (give this or ``file``).
        file: A script file, relative to ``workspace`` (give this or ``script``).
        interpreter: ``sh`` (with -e), ``bash`` (with pipefail), ``python3``, ``node``, ...
        args: Arguments passed to the script.
        working_dir: Directory to run in, relative to ``workspace``.
        image: Container image when ``runs_on`` is ``docker`` or ``kubernetes``.
        host: The Docker engine when ``runs_on`` is ``docker``: an address or a DockerHost
            block name (default: ``DOCKER_HOST``); the SshHost block name on ``remote``.
        runs_on: ``local``, ``docker``, ``remote`` (on the SshHost block ``host``) or
            ``kubernetes`` (a pod of ``image`` in ``cluster``).
        upload_workspace: Copy the workspace in first: to the host on remote (default no),
            into the pod's ``/workspace`` on kubernetes (default yes).
        download: On remote or kubernetes, paths (relative to the workspace) copied back
            after success.
        cluster: On kubernetes, a KubernetesCluster block, or the name of a saved one, to
            run the pod in.
        namespace: On kubernetes, the pod's namespace (default: the block's).
        service_account: On kubernetes, the pod's service account (its token is mounted
            only then).
        node_selector: On kubernetes, the pod's nodeSelector.
        tolerations: On kubernetes, the pod's tolerations (Kubernetes' own form).
        resources: On kubernetes, ``{"requests": {...}, "limits": {...}}``.
        env: Extra environment variables of the script.
        env_passthrough: Variables of this process (names or globs) the script inherits
            beyond the clean base, as for ``command``.
        workspace: The directory the script works in (default: the current directory).
        timeout: Seconds before the whole process group (or the container) is killed.

    Returns:
        ``exit_code`` (0) and ``outputs`` (the ``$ANSFLOW_OUTPUT`` lines).

    Raises:
        StepFailed: non-zero exit, a missing file, or both or neither of script and file.
            StepTimedOut / StepCancelled: killed at the deadline / on cancel.

    Example:
        ```python
        from ansflow.tasks import script

        script(interpreter="python3", script="print('hello from python')")
        ```
    """
    cluster, blocks = cluster_argument(cluster)
    return run_standalone("script", execute_script, config_of(ScriptConfig, locals()),
                          timeout=timeout, workspace=workspace, env=env, runs_on=runs_on,
                          env_passthrough=env_passthrough, blocks=blocks)
