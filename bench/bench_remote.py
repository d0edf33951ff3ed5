"""Remote (SSH) and Ansible benchmark, side by side in one run, against the private sshd
(scripts/sshd.sh; started when it does not run).

- N remote `true` command steps in one pipeline (per step: the steps' span / N) vs `ssh`
  with a warm ControlMaster connection running `true` N times; local `true` steps for
  reference.
- One ansible step vs `ansible-playbook` on the same playbook, inventory settings and
  ansible.cfg (the step's span vs the command's wall time).

Starts a real Prefect server on a free loopback port; each ansflow case runs in a fresh
Python process; medians of --rounds rounds, the compared tools alternating; the ratio is
the median of the rounds' own ratios (each round's pair ran back to back, so a load that
drifts over the run moves both sides of it). Not a test: figures swing on shared machines,
compare only within one run.

    python bench/bench_remote.py             # 50 steps, 5 rounds
    python bench/bench_remote.py --steps 20 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
""" + "".join(f"""    - name: file {i}
      copy: {{content: "line {i}\\n", dest: "{{{{ target }}}}/f{i}.txt"}}
""" for i in range(8)) + """    - name: a command
      command: "true"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sshd_env() -> dict[str, str]:
    keys = ("ANSFLOW_SSHD_PORT", "ANSFLOW_SSHD_USER", "ANSFLOW_SSHD_KEY",
            "ANSFLOW_SSHD_HOST_KEY_PUB")
    if all(os.environ.get(k) for k in keys):
        return {k: os.environ[k] for k in keys}
    dump = f"import json, os; print(json.dumps({{k: os.environ[k] for k in {keys!r}}}))"
    out = subprocess.run(["bash", "-c", f'eval "$(bash {ROOT}/scripts/sshd.sh start)"; '
                          f'"{sys.executable}" -c "{dump}"'], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- cases (each runs in its own process) -------------------------------------------------
def case_pipeline(kind: str, n: int, work: Path) -> dict:
    from ansflow.flows.pipeline import pipeline_flow
    from ansflow.flows.scheduler import Scheduler

    host = os.environ["BENCH_HOST_BLOCK"]
    if kind == "ansible":
        (work / "site.yml").write_text(PLAYBOOK)
        target = work / "ansflow-out"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        body = json.dumps({"pipeline": {"name": "bench-ansible", "steps": [{
            "id": "a", "type": "ansible", "config": {
                "playbook": "site.yml", "hosts": [host], "extra_vars": {"target": str(target)},
                "ansible_cfg": {"defaults": {"interpreter_python": "/usr/bin/python3"}}}}]}})
    else:
        where = f", runs_on: remote, config: {{host: {host}, command: 'true'}}" \
            if kind == "remote" else ", config: {command: 'true'}"
        steps = "\n".join(f"    - {{id: s{i}, type: command{where}}}" for i in range(n))
        body = f"pipeline:\n  name: bench-{kind}\n  steps:\n{steps}\n"
    path = work / f"{kind}.yaml"
    path.write_text(body)
    spans: list[float] = []
    original = Scheduler.run

    def timed_run(self, deadline):  # noqa: ANN001,ANN202 - the steps' span only
        began = time.perf_counter()
        try:
            return original(self, deadline)
        finally:
            spans.append(time.perf_counter() - began)

    Scheduler.run = timed_run
    state = pipeline_flow(str(path), return_state=True)
    summary = state.result(raise_on_failure=False)
    assert summary["state"] == "completed", summary["message"]
    return {"span": spans[0]}


def control_master(ssh: dict[str, str], n: int, work: Path) -> float:
    """Seconds per `true` over a warm ControlMaster connection."""
    known = work / "known_hosts"
    known.write_text(f"[127.0.0.1]:{ssh['ANSFLOW_SSHD_PORT']} "
                     f"{Path(ssh['ANSFLOW_SSHD_HOST_KEY_PUB']).read_text()}")
    sock = work / "cm.sock"
    base = ["ssh", "-F", "/dev/null", "-o", f"UserKnownHostsFile={known}", "-o",
            "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-i", ssh["ANSFLOW_SSHD_KEY"],
            "-p", ssh["ANSFLOW_SSHD_PORT"], "-o", f"ControlPath={sock}",
            f"{ssh['ANSFLOW_SSHD_USER']}@127.0.0.1"]
    subprocess.run([*base[:-1], "-o", "ControlMaster=yes", "-o", "ControlPersist=120",
                    "-fN", base[-1]], check=True)
    try:
        subprocess.run([*base, "true"], check=True)  # warm
        start = time.perf_counter()
        for _ in range(n):
            subprocess.run([*base, "true"], check=True)
        return (time.perf_counter() - start) / n
    finally:
        subprocess.run([*base[:-1], "-O", "exit", base[-1]], capture_output=True)


def ansible_cli(ssh: dict[str, str], work: Path) -> float:
    """Wall seconds of ansible-playbook on the bench playbook, ansflow's settings."""
    (work / "site.yml").write_text(PLAYBOOK)
    target = work / "cli-out"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    known = work / "known_hosts"
    known.write_text(f"[127.0.0.1]:{ssh['ANSFLOW_SSHD_PORT']} "
                     f"{Path(ssh['ANSFLOW_SSHD_HOST_KEY_PUB']).read_text()}")
    (work / "hosts.yml").write_text(json.dumps({"all": {"hosts": {"h": {
        "ansible_host": "127.0.0.1", "ansible_port": int(ssh["ANSFLOW_SSHD_PORT"]),
        "ansible_user": ssh["ANSFLOW_SSHD_USER"],
        "ansible_ssh_private_key_file": ssh["ANSFLOW_SSHD_KEY"],
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes"
                                   " -o BatchMode=yes -F /dev/null"}}}}))
    (work / "ansible.cfg").write_text(
        "[defaults]\ninterpreter_python = /usr/bin/python3\nretry_files_enabled = False\n"
        f"[ssh_connection]\npipelining = True\ncontrol_path_dir = {work}/cp\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(work / "ansible.cfg"), "LC_ALL": "C.UTF-8"}
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i",
                    str(work / "hosts.yml"), "-e", json.dumps({"target": str(target)}),
                    str(work / "site.yml")], env=env, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    subprocess.run(["pkill", "-f", f"{work}/cp/"], capture_output=True)
    return elapsed


# -- driver -------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case_pipeline(args.case[0], int(args.case[1]), Path(args.case[2]))))
        return
    ssh = sshd_env()
    work = Path(tempfile.mkdtemp(prefix="ansflow-bench-remote-"))
    home = Path(tempfile.mkdtemp(prefix="ansflow-bench-home-"))
    port = _free_port()
    env = {**os.environ, **ssh, "PREFECT_HOME": str(home / "prefect"),
           "ANSFLOW_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_API_PORT": str(port), "PREFECT_SERVER_API_HOST": "127.0.0.1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "BENCH_HOST_BLOCK": "bench-sshd"}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(env["PREFECT_API_URL"] + "/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        save = ("from pydantic import SecretStr; from ansflow.blocks.ssh import SshHost; "
                "import os; SshHost(hostname='127.0.0.1', port=int(os.environ["
                "'ANSFLOW_SSHD_PORT']), username=os.environ['ANSFLOW_SSHD_USER'], "
                "private_key=SecretStr(open(os.environ['ANSFLOW_SSHD_KEY']).read()), "
                "known_host_keys=[open(os.environ['ANSFLOW_SSHD_HOST_KEY_PUB']).read()]"
                ").save('bench-sshd', overwrite=True)")
        subprocess.run([sys.executable, "-c", save], env=env, check=True)

        def run(kind: str, n: int) -> float:
            out = subprocess.run([sys.executable, __file__, "--case", kind, str(n), str(work)],
                                 env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"case {kind} failed:\n{out.stderr[-3000:]}")
            return json.loads(out.stdout.strip().splitlines()[-1])["span"]

        n = args.steps
        remote, local, cm, step, cli = [], [], [], [], []
        for _ in range(args.rounds):
            remote.append(run("remote", n) / n)
            cm.append(control_master(ssh, n, work))
            local.append(run("local", n) / n)
            step.append(run("ansible", 1))
            cli.append(ansible_cli(ssh, work))
        med = statistics.median

        def ratio(ours: list[float], theirs: list[float]) -> float:
            return med(a / b for a, b in zip(ours, theirs, strict=True))

        print(f"rounds: {args.rounds}, steps: {n}")
        print("| measure | ansflow | reference | ratio | target |")
        print("|---|---|---|---|---|")
        print(f"| remote `true` step vs `ssh` with a warm ControlMaster (per step) | "
              f"{med(remote) * 1000:.0f} ms | {med(cm) * 1000:.0f} ms | "
              f"{ratio(remote, cm):.2f}x | <= 1.5x |")
        print(f"| local `true` step, same pipeline shape (per step, for reference) | "
              f"{med(local) * 1000:.0f} ms | | | |")
        print(f"| ansible step vs `ansible-playbook` (9 tasks, 1 host) | {med(step):.2f} s | "
              f"{med(cli):.2f} s | {ratio(step, cli):.2f}x | <= 1.1x |")
        print("rounds (remote ms / cm ms, ansible s / cli s): " + ", ".join(
            f"{r * 1000:.0f}/{c * 1000:.0f} {a:.1f}/{b:.1f}"
            for r, c, a, b in zip(remote, cm, step, cli, strict=True)))
    finally:
        server.terminate()
        server.wait(20)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
