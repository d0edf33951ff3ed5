"""`runs_on: remote` command and script steps against the private sshd (a real OpenSSH
server): exit codes, live lines, outputs, env, upload / download, refused host keys and
credentials, a dropped connection retried, cancel and timeout ending the remote processes."""

from __future__ import annotations

import os
import pwd
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from fixtures_pipeline import by_id, logs
from fixtures_ssh import other_key, remote_processes
from pydantic import SecretStr

from ansflow.engines.ssh import POOL
from ansflow.errors import StepCancelled, StepFailed
from ansflow.runtime.base import StepContext
from ansflow.runtime.remote import remote_working_dir, run_dir, step_script
from ansflow.spec.steps import CommandConfig
from ansflow.tasks.command import execute_command


def _ctx(tmp_path: Path, **kw) -> StepContext:
    values = dict(pipeline="p", run_id=f"run-{uuid.uuid4().hex[:8]}", build_number=1,
                  step_id="s", step_name="s", stage="", step_type="command",
                  workspace=str(tmp_path), runs_on="remote")
    values.update(kw)
    return StepContext(**values)


def test_step_script_quotes_every_value(tmp_path):
    """The generated script, run by a real sh: values with quotes, $(), newlines are data."""
    evil = "it's \"$(touch PWNED)\" `touch PWNED2`\nline2 $HOME \\"
    ctx = _ctx(tmp_path, env={"EVIL": evil})
    home = tmp_path / "home"
    home.mkdir()
    script = step_script(ctx, ["sh", "-c", 'printf %s "$EVIL" > "$ANSFLOW_WORKSPACE/got"'],
                         "sc", "ws", ".")
    (tmp_path / "s.sh").write_text(script)
    proc = subprocess.run(["sh", str(tmp_path / "s.sh")], env={"HOME": str(home),
                          "PATH": os.environ["PATH"]}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (home / "ws" / "got").read_text() == evil
    assert not list(home.rglob("PWNED*")) and not list(tmp_path.glob("PWNED*"))
    with pytest.raises(StepFailed, match="not a valid environment variable name"):
        step_script(_ctx(tmp_path, env={"A;B": "x"}), ["true"], "sc", "ws", ".")


def test_working_dir_stays_in_the_remote_workspace():
    assert remote_working_dir("a/../b") == "b"
    for bad in ("/etc", "../x", "a/../../x"):
        with pytest.raises(StepFailed, match="outside the workspace"):
            remote_working_dir(bad)


def test_command_and_script_on_the_host(run_pipeline, sshd, ssh_host, tmp_path):
    (tmp_path / "tool.py").write_text("import sys\nprint('tool', *sys.argv[1:])\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "in.txt").write_text("uploaded\n")
    state, summary = run_pipeline(f"""
        pipeline:
          name: remote-basics
          type: remote
          defaults: {{remote: {{host: {ssh_host}}}}}
          steps:
            - id: hello
              type: command
              env: {{GREETING: "it's \\"quoted\\" $(not run)"}}
              config:
                command: |
                  echo "out: $GREETING"
                  echo "to stderr" >&2
                  echo "where=$(pwd)" >> "$ANSFLOW_OUTPUT"
                  echo "multi<<EOF" >> "$ANSFLOW_OUTPUT"
                  printf 'a\\nb\\nEOF\\n' >> "$ANSFLOW_OUTPUT"
            - id: code
              type: command
              allow_failure: true
              config: {{command: "exit 7"}}
            - id: py
              type: script
              config: {{file: tool.py, interpreter: python3, args: [x, "y z"]}}
            - id: inline
              type: script
              config:
                interpreter: bash
                script: |
                  set -u
                  echo "inline $1"
                args: [arg1]
            - id: files
              type: command
              config:
                upload_workspace: true
                working_dir: src
                command: "cat in.txt && mkdir -p ../out && echo made > ../out/result.txt"
                download: [out]
    """)
    steps = by_id(summary)
    assert steps["hello"]["state"] == "completed", steps["hello"]
    assert steps["hello"]["outputs"]["multi"] == "a\nb"
    assert steps["hello"]["outputs"]["where"].endswith("/workspace")
    assert (steps["code"]["state"], steps["code"]["exit_code"]) == ("failed", 7)
    assert "exited with code 7 on host" in steps["code"]["message"]
    assert steps["py"]["state"] == "completed" and steps["inline"]["state"] == "completed"
    assert steps["files"]["state"] == "completed", steps["files"]
    assert (tmp_path / "out" / "result.txt").read_text() == "made\n"
    lines = logs(state.state_details.flow_run_id, "out: it's \"quoted\" $(not run)",
                 "to stderr", "tool x y z", "inline arg1", "uploaded")
    for line in ("out: it's \"quoted\" $(not run)", "to stderr", "tool x y z", "inline arg1",
                 "uploaded"):
        assert line in lines
    # The run's directory on the host (uploaded workspace, step scratch) went with the run.
    home = Path(pwd.getpwnam(sshd.user).pw_dir)
    run_id = str(state.state_details.flow_run_id)
    assert steps["hello"]["outputs"]["where"].endswith(f"/{run_dir(run_id)}/workspace")
    assert not (home / run_dir(run_id)).exists()


def test_connections_are_reused_within_a_run(sshd, tmp_path):
    ctx = _ctx(tmp_path, blocks={"host": sshd.block()})
    before = POOL.opened
    for _ in range(3):
        assert execute_command(ctx, CommandConfig(command="true")).exit_code == 0
    assert POOL.opened - before == 1


def test_steps_share_a_resident_shell_and_a_stopped_one_is_not_reused(sshd, tmp_path):
    """Steps one after another run on one resident shell (one SSH session); each still
    gets its own exit code, env and outputs; a step cancelled mid-run closes its shell, and
    the next step opens a fresh one that works."""
    from ansflow.engines import ssh_exec

    ctx = _ctx(tmp_path, blocks={"host": sshd.block()})
    before = ssh_exec.opened_shells
    for code in (0, 3, 0):
        step = _ctx(tmp_path, run_id=ctx.run_id, blocks=ctx.blocks, env={"N": str(code)})
        command = f'echo "got=$N" >> "$ANSFLOW_OUTPUT"; exit {code}'
        if code:
            with pytest.raises(StepFailed, match="exited with code 3") as failed:
                execute_command(step, CommandConfig(command=command))
            assert failed.value.exit_code == 3
        else:
            result = execute_command(step, CommandConfig(command=command))
            assert (result.exit_code, result.outputs) == (0, {"got": "0"})
    assert ssh_exec.opened_shells - before == 1
    threading.Timer(1.0, ctx.control.cancel).start()
    with pytest.raises(StepCancelled):
        execute_command(ctx, CommandConfig(command="sleep 30"))
    again = _ctx(tmp_path, run_id=ctx.run_id, blocks=ctx.blocks)
    result = execute_command(again, CommandConfig(command='echo "x=1" > "$ANSFLOW_OUTPUT"'))
    assert result.outputs == {"x": "1"}
    assert ssh_exec.opened_shells - before == 2


def test_changed_host_key_and_wrong_key_are_refused_without_retry(run_pipeline, sshd,
                                                                   prefect_server, tmp_path):
    wrong_host = other_key(tmp_path)
    bad_hk = f"bad-hk-{uuid.uuid4().hex[:6]}"
    sshd.block(known_host_keys=[Path(str(wrong_host) + ".pub").read_text()]).save(bad_hk)
    bad_key = f"bad-key-{uuid.uuid4().hex[:6]}"
    sshd.block(private_key=SecretStr(other_key(tmp_path).read_text())).save(bad_key)
    _, summary = run_pipeline(f"""
        pipeline:
          name: remote-refused
          stages:
            - name: s
              parallel: true
              steps:
                - {{id: hk, type: command, runs_on: remote, retries: 2, allow_failure: true,
                    config: {{host: {bad_hk}, command: "true"}}}}
                - {{id: key, type: command, runs_on: remote, retries: 2, allow_failure: true,
                    config: {{host: {bad_key}, command: "true"}}}}
    """)
    steps = by_id(summary)
    assert steps["hk"]["attempts"] == 1 and "host key refused" in steps["hk"]["message"]
    assert steps["key"]["attempts"] == 1
    assert "authentication failed" in steps["key"]["message"]


def test_dropped_connection_is_transient_and_the_retry_succeeds(run_pipeline, sshd, ssh_host):
    marker = f"/tmp/ansflow-drop-{uuid.uuid4().hex[:8]}"
    killed: list[int] = []

    def cut() -> None:
        deadline = time.monotonic() + 60
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        killed.append(sshd.kill_sessions(marker))

    killer = threading.Thread(target=cut, daemon=True)
    killer.start()
    try:
        state, summary = run_pipeline(f"""
            pipeline:
              name: remote-drop
              steps:
                - id: flaky
                  type: command
                  runs_on: remote
                  retries: 1
                  config:
                    host: {ssh_host}
                    command: >-
                      if [ -f {marker} ]; then echo second;
                      else touch {marker}; sleep 60; fi
        """)
    finally:
        killer.join(5)
    assert killed and killed[0] >= 1, "no SSH session ran the marked command"
    step = by_id(summary)["flaky"]
    assert (step["state"], step["attempts"]) == ("completed", 2), step
    assert not remote_processes(f"touch {marker}; sleep 60")
    lines = logs(state.state_details.flow_run_id, "second")
    assert any("connection was lost" in line or "connection" in line.lower()
               for line in lines)
    os.unlink(marker)


def test_cancel_leaves_no_process_on_the_host(sshd, tmp_path):
    marker = f"ansflow-cancel-{uuid.uuid4().hex[:8]}"
    ctx = _ctx(tmp_path, blocks={"host": sshd.block()})
    command = f"sh -c 'sleep 300 # {marker}' & sleep 300 # {marker}"
    threading.Timer(1.5, ctx.control.cancel).start()
    started = time.monotonic()
    with pytest.raises(StepCancelled, match="remote process group"):
        execute_command(ctx, CommandConfig(command=command))
    assert time.monotonic() - started < 10
    assert not remote_processes(marker)


def test_a_long_command_keeps_its_pooled_connection_past_the_idle_limit(sshd, tmp_path,
                                                                        monkeypatch):
    """The pool closes connections idle past IDLE_SECONDS; one whose command is still
    running is in use, not idle, however long the command runs."""
    from ansflow.engines import ssh
    from ansflow.runtime.ssh_session import host_target

    monkeypatch.setattr(ssh, "IDLE_SECONDS", 0.2)
    block = sshd.block()
    ctx = _ctx(tmp_path, blocks={"host": block})
    other = host_target("host", block=block)
    stop = threading.Event()

    def sweep() -> None:  # another run's steps: each get() closes what is idle
        while not stop.wait(0.1):
            run = f"other-{uuid.uuid4().hex[:6]}"
            ssh.call(POOL.get(run, other), 30)
            POOL.release(run, other)
            POOL.drop(run, other)

    sweeper = threading.Thread(target=sweep, daemon=True)
    sweeper.start()
    try:
        result = execute_command(ctx, CommandConfig(
            command="sleep 2; echo done"))
    finally:
        stop.set()
        sweeper.join(30)
    assert result.exit_code == 0


def test_timeout_leaves_no_process_on_the_host(run_pipeline, ssh_host):
    marker = f"ansflow-timeout-{uuid.uuid4().hex[:8]}"
    _, summary = run_pipeline(f"""
        pipeline:
          name: remote-timeout
          steps:
            - id: slow
              type: command
              runs_on: remote
              timeout: 2
              config:
                host: {ssh_host}
                command: |
                  sh -c 'trap "" TERM; sleep 300; echo {marker}' &
                  sleep 300; echo {marker}
    """)
    step = by_id(summary)["slow"]
    assert step["state"] == "timedout" and "timed out after 2s" in step["message"]
    assert not remote_processes(marker)  # the TERM-proof child too (KILL after the grace)


def test_remote_without_host_is_refused_at_validation(tmp_path):
    from ansflow.errors import SpecError
    from ansflow.spec.validate import load_plan

    path = tmp_path / "p.yaml"
    path.write_text("steps:\n  - {id: a, type: command, runs_on: remote, "
                    "config: {command: 'true'}}\n")
    with pytest.raises(SpecError, match="runs on remote but names no host"):
        load_plan(path)


def test_unknown_host_block(tmp_path, prefect_server):
    with pytest.raises(StepFailed, match="no saved SSH host block named"):
        execute_command(_ctx(tmp_path), CommandConfig(command="true", host="no-such-host"))


@pytest.mark.parametrize("size", [1, 3, 10000])
@pytest.mark.parametrize("user", [b"a\nb\n", b"a\nb", b"", b"\n\n", b"x\n\n",
                                  b"ANSFLOW-END\n", b"ANSFLOW-END-", b"\n",
                                  b"ANSFLOW-END-abc 1\n", b"ANSFLOW-END-abc x 2\n"])
def test_reply_is_split_off_whatever_the_chunks(user, size):
    """A resident shell's `\\n<nonce> <code> <length>\\n<outputs>` reply on stdout and
    `\\n<nonce>\\n` on stderr: the command's lines come out as they were (one empty line
    of ours dropped), the exit code and outputs after it, in any chunking; what follows the
    reply is dropped."""
    from ansflow.engines.ssh_resident import Trailer as _Trailer

    nonce = "ANSFLOW-END-abc"

    def lines(b: bytes) -> list[bytes]:
        return b[:-1].split(b"\n") if b.endswith(b"\n") else (b.split(b"\n") if b else [])

    def split(parser: _Trailer, data: bytes) -> bytes:
        out = b"".join(parser.feed(data[i:i + size]) for i in range(0, len(data), size))
        return out + parser.rest()

    stdout = _Trailer(nonce)
    data = user + b"\n" + nonce.encode() + b" 3 4\nk=v\nstray"
    assert lines(split(stdout, data)) == lines(user)
    assert (stdout.done, stdout.code, bytes(stdout.trailer)) == (True, 3, b"k=v\n")

    stderr = _Trailer(nonce, payload=False)
    assert lines(split(stderr, user + b"\n" + nonce.encode() + b"\nstray")) == lines(user)
    assert stderr.done

    unfinished = _Trailer(nonce)
    assert lines(split(unfinished, user)) == lines(user) and not unfinished.done
    assert _Trailer(nonce).feed(b"start\n") == b"start\n"  # a complete line is not held


def test_a_request_cannot_carry_a_line_break_in_a_path():
    from ansflow.engines.ssh_resident import request_bytes

    with pytest.raises(ValueError, match="line break"):
        request_bytes("a\nb/step.sh", "", "", "n", b"true\n")
    assert request_bytes("d/step.sh", "d/out", "d", "N", b"true\n") == \
        b"run\nd/step.sh\nd/out\nd\nN\n5\ntrue\nN\n"
