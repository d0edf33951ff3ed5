"""`runs_on: remote`: command and script steps on an SSH host (an SshHost block).

On the host every run has a directory ``~/.ansflow/runs/<run id>/``: its ``workspace/`` is
where steps run (the local workspace is uploaded into it with ``upload_workspace: true``;
``download:`` paths come back from it), and each step attempt has a private scratch
directory under ``steps/`` (its script, its ``$ANSFLOW_OUTPUT`` file), removed after it.
Nothing a step's values hold reaches the remote argv: the step's environment and command
travel in a script written through stdin (ansflow.engines.ssh_exec).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import tempfile
import uuid
from typing import Any

from ansflow.engines.archive import BoundedSpool, Limits, extract
from ansflow.engines.ssh import POOL, SshNetworkError, Target, call
from ansflow.engines.ssh_exec import run_remote
from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.outputs import MAX_OUTPUT_BYTES, OutputFormatError, parse_outputs
from ansflow.paths import confine, lexically_outside
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.ssh_session import host_target

RUNS_DIR = ".ansflow/runs"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
# In the argv of a script step: the path of the step's script on the host.
SCRIPT_PATH = "\0ansflow-script"


def _safe(value: str, size: int = 60) -> str:
    return _SAFE.sub("-", value)[:size].strip(".-") or "x"


def run_dir(run_id: str) -> str:
    """The run's directory on the host, relative to the login directory."""
    return f"{RUNS_DIR}/{_safe(run_id, 80)}"


def finish_run(run_id: str, warn: Any) -> None:
    """At the end of a run: remove the run's directory on every host its remote steps
    reached, and close the run's connections. A host where that fails gets a warning
    (``warn(message)``), never a failed run."""
    if not POOL.used(run_id):
        return
    command = f"rm -rf -- {shlex.quote(run_dir(run_id))}"
    try:
        failures = call(POOL.finish_run(run_id, command), 180)
    except Exception as exc:  # noqa: BLE001 - the run's outcome stands whatever happens here
        warn(f"could not remove the run's directories on its SSH hosts: {exc}")
        return
    for target, reason in failures:
        warn(f"could not remove the run's directory ~/{run_dir(run_id)} on {target.where}: "
             f"{reason}")


def remote_working_dir(working_dir: str | None) -> str:
    """``working_dir`` as a path inside the remote workspace (refused when it leaves it)."""
    if not working_dir:
        return "."
    if "\0" in working_dir or os.path.isabs(working_dir) or lexically_outside(working_dir):
        raise StepFailed(f"working_dir {working_dir!r} is outside the workspace: on a remote "
                         "host it is a path relative to the run's workspace there")
    return os.path.normpath(working_dir)


def step_script(ctx: StepContext, argv: list[str], scratch: str, workspace: str,
                working_dir: str, inline: str | None = None) -> str:
    """The POSIX shell script that sets the step up on the host and runs ``argv``.

    Every value is single-quoted; an inline script travels as a heredoc with a random
    delimiter (re-drawn in the unlikely case the script holds it).
    """
    q = shlex.quote
    env = {**ctx.env, **ctx.ansflow_env()}  # the workspace and outputs: exported below
    lines = ['cd "$HOME" || exit 125', 'set -- "$PWD"',
             f"mkdir -p {q(workspace)} {q(scratch)} || exit 125",
             f": > {q(scratch + '/outputs')} || exit 125"]
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise StepFailed(f"env {name!r} is not a valid environment variable name")
        lines.append(f"export {name}={q(str(value))}")
    lines += [f'export ANSFLOW_OUTPUT="$1"/{q(scratch + "/outputs")}',
              f'export ANSFLOW_WORKSPACE="$1"/{q(workspace)}']
    if inline is not None:
        delimiter = f"ANSFLOW_SCRIPT_{uuid.uuid4().hex}"
        while delimiter in inline:
            delimiter = f"ANSFLOW_SCRIPT_{uuid.uuid4().hex}"
        body = inline if inline.endswith("\n") else inline + "\n"
        lines.append(f"cat > {q(scratch + '/script')} <<'{delimiter}' || exit 125\n"
                     f"{body}{delimiter}")
    target = f"{workspace}/{working_dir}" if working_dir != "." else workspace
    lines.append(f"cd {q(target)} 2>/dev/null || {{ echo 'ansflow: working directory "
                 f"'{q(working_dir)}' does not exist on the host' >&2; exit 125; }}")
    script_path = f'"$1"/{q(scratch + "/script")}'
    lines.append("exec " + " ".join(script_path if a == SCRIPT_PATH else q(a) for a in argv))
    return "\n".join(lines) + "\n"


@step_executor
def execute_remote(ctx: StepContext, config: Any, argv: list[str],
                   inline: str | None = None) -> StepResult:
    """Run ``argv`` (with an inline script's text, if any) for a command or script step on
    the step's SSH host: upload, run, outputs, downloads, cleanup.

    Raises:
        StepFailed: non-zero exit (``exit_code``), a bad working_dir or download path.
        SshNetworkError (transient): unreachable host or a lost connection.
        SshHostKeyError / SshAuthError: the host key or the credentials were refused.
        StepTimedOut / StepCancelled: the remote process group was ended.
    """
    target = host_target(config.host, ctx, ctx.blocks.get("host"))
    base = run_dir(ctx.run_id)
    workspace = f"{base}/workspace"
    scratch = f"{base}/steps/{_safe(ctx.step_id, 40)}-{ctx.attempt}-{uuid.uuid4().hex[:8]}"
    working_dir = remote_working_dir(config.working_dir)
    downloads = [_download_path(ctx, p) for p in (config.download or [])]
    if config.upload_workspace:
        call(_upload(ctx.run_id, target, ctx.workspace, workspace))
    script = step_script(ctx, argv, scratch, workspace, working_dir, inline)
    outcome = run_remote(target, ctx.run_id, f"{scratch}/step.sh", script,
                         outputs_path=f"{scratch}/outputs", scratch=scratch,
                         emit=lambda line, stream: ctx.emit(line, stream=stream),
                         timeout=ctx.budget(), cancelled=ctx.control.cancelled,
                         masker=ctx.masker)
    if outcome.timed_out or outcome.cancelled:
        where = f"on {target.where}"
        if outcome.timed_out:
            raise StepTimedOut(f"timed out after {ctx.timeout:g}s; the remote process group "
                               f"{where} was ended", exit_code=outcome.exit_code)
        raise StepCancelled(f"cancelled; the remote process group {where} was ended",
                            exit_code=outcome.exit_code)
    if len(outcome.outputs) > MAX_OUTPUT_BYTES:
        raise StepFailed(f"$ANSFLOW_OUTPUT is larger than {MAX_OUTPUT_BYTES} bytes")
    try:
        outputs = parse_outputs(outcome.outputs.decode("utf-8", "replace"))
    except OutputFormatError as exc:
        raise StepFailed(f"bad $ANSFLOW_OUTPUT content: {exc}") from exc
    if outcome.exit_code != 0:
        raise StepFailed(f"exited with code {outcome.exit_code} on {target.where}",
                         exit_code=outcome.exit_code)
    if downloads:
        _download(ctx, target, workspace, downloads)
    return StepResult(exit_code=0, outputs=outputs)


def _download_path(ctx: StepContext, path: str) -> str:
    if not path or "\0" in path or os.path.isabs(path) or lexically_outside(path):
        raise StepFailed(f"download {path!r} is outside the workspace: give a path relative "
                         "to the run's workspace on the host")
    confine(path, ctx.workspace, "download")
    return os.path.normpath(path)


def _download(ctx: StepContext, target: Target, workspace: str, paths: list[str]) -> None:
    """The ``download:`` paths as one tar stream, spooled (bounded), then extracted under
    ansflow.engines.archive's rules: a host's answer is data, however it was made."""
    limits = Limits.from_env()
    source = f"the workspace on {target.where}"
    with tempfile.TemporaryFile() as spool:
        call(_fetch(ctx.run_id, target, workspace, paths,
                    BoundedSpool(spool, limits.stream_bytes, source)))
        spool.seek(0)
        done = extract(spool, ctx.workspace, paths, source, limits)
    note = done.skipped_note()
    if note:
        ctx.emit(f"[ansflow] {note}", stream="stderr")


async def _upload(run_id: str, target: Target, local: str, remote: str) -> None:
    conn = await POOL.get(run_id, target)
    try:
        await _put(conn, run_id, target, local, remote)
    finally:
        POOL.release(run_id, target)


async def _put(conn: Any, run_id: str, target: Target, local: str, remote: str) -> None:
    import asyncssh  # noqa: PLC0415

    try:
        async with conn.start_sftp_client() as sftp:
            await sftp.makedirs(remote, exist_ok=True)
            entries = [os.path.join(local, e) for e in sorted(os.listdir(local))]
            if entries:
                await sftp.put(entries, remote, recurse=True, preserve=True)
    except (OSError, asyncssh.SFTPError) as exc:
        raise StepFailed(f"{target.where}: uploading the workspace failed: "
                         f"{getattr(exc, 'reason', None) or exc}") from None
    except Exception as exc:  # noqa: BLE001 - asyncssh's SFTP / channel errors
        POOL.drop(run_id, target)
        raise SshNetworkError(f"{target.where}: uploading the workspace failed: "
                              f"{getattr(exc, 'reason', None) or type(exc).__name__}") from None


async def _fetch(run_id: str, target: Target, workspace: str, paths: list[str],
                 sink: BoundedSpool) -> None:
    """``paths`` of the remote workspace as a tar stream into ``sink`` (as a pod's downloads
    come back: the same extraction rules apply to both)."""
    import asyncssh  # noqa: PLC0415

    conn = await POOL.get(run_id, target)
    shown = ", ".join(map(repr, paths))
    command = (f"cd {shlex.quote(workspace)} && tar cf - -- "
               + " ".join(shlex.quote(p) for p in paths))
    try:
        process = await conn.create_process(command, encoding=None,
                                            stdin=asyncssh.DEVNULL)
        errors = bytearray()

        async def copy_out() -> None:
            while chunk := await process.stdout.read(256 * 1024):
                sink.write(chunk)

        async def keep_errors() -> None:  # read along, so a full stderr never stalls stdout
            while chunk := await process.stderr.read(65536):
                errors.extend(chunk[: max(0, 4096 - len(errors))])

        async with process:
            await asyncio.gather(copy_out(), keep_errors())
            result = await process.wait(check=False)
    except OSError as exc:
        raise StepFailed(f"download {shown} from {target.where} failed: {exc}") from None
    except asyncssh.Error as exc:
        POOL.drop(run_id, target)
        raise SshNetworkError(f"{target.where}: download {shown} failed: "
                              f"{getattr(exc, 'reason', None) or type(exc).__name__}") from None
    finally:
        POOL.release(run_id, target)
    if result.exit_status != 0:
        reason = " ".join(bytes(errors).decode("utf-8", "replace").split())[:500]
        raise StepFailed(f"download {shown} from the workspace on {target.where} failed: "
                         f"{reason or f'exit code {result.exit_status}'}")
