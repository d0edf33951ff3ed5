"""Every hostile value (tests/hostile_values.py) in every templated field of every step type
and in every free-text field of every management operation, run on the real engines: one
pipeline per value (one step per type and field, all in one parallel stage, each allowed to
fail) and one flow per value that runs each operation as its served flow does.

Asserted for each value: no code ran (no mark file in /tmp, the workspace or the sshd
user's home), nothing outside the test's namespace was touched (victim ConfigMaps in another
namespace and in kube-system survive, nothing was injected; the API server's audit log when
the dev cluster writes one), each step either completed with the value as it was or failed
with one clear line, and no traceback reached the run's logs, states, summary or stderr.
The render layer over the same table is tests/test_hostile_values_render.py."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_pipeline import logs
from hostile_values import (
    HOSTILE,
    KEY,
    TEMPLATE,
    check_known,
    new_mark,
    operation_string_params,
    path_text,
    step_leaves,
)
from hostile_world import (
    E2E_FIELDS,
    World,
    audit_mark,
    audited_escapes,
    marks_left,
    pipeline_steps,
    prepare_cluster,
    victims_intact,
    write_workspace,
)
from kubernetes import client as k8s

MAX_MESSAGE = 2000
# Values a run cannot carry as a Prefect parameter (not UTF-8): they come in through
# `ansflow run --var` as bytes, as a shell would pass them.
THROUGH_CLI = {"non-utf8"}

# (value, case) -> the fix it waits on. Cases are step ids (type__field), `op.param`, or
# code-ran / victims / audit / log / stderr / summary / run; both may be fnmatch patterns.
# None of these has a fix in flight yet; each reason says where it belongs.
KNOWN: dict[tuple[str, str], str] = {}
KNOWN_OPERATIONS: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def world(dev_cluster, docker_env, base_image, ssh_host) -> World:
    ns, victim_ns = prepare_cluster(dev_cluster)
    return World(cluster=dev_cluster.block_name, namespace=ns, victim_ns=victim_ns,
                 image=base_image, registry=docker_env.registry, ssh_host=ssh_host)


def _pipeline(world: World, ws: Path, hostile) -> dict:
    steps = pipeline_steps(world, step_leaves(), hostile)
    steps += [
        {"id": "lit_bare", "type": "command", "allow_failure": True,
         "config": {"command": "printf '%s' {{ vars.v }} > hv-lit-bare.out"}},
        {"id": "lit_double", "type": "command", "allow_failure": True,
         "config": {"command": "printf '%s' \"{{ vars.v }}\" > hv-lit-double.out"}},
        {"id": "lit_exec", "type": "k8s_exec", "allow_failure": True,
         "config": {"pod": "hv-pod", "timeout": 20,
                    "command": f"printf '%s' {TEMPLATE} > {ws}/hv-lit-exec.out"}},
        {"id": "lit_manifest", "type": "k8s_deploy", "allow_failure": True,
         "config": {"manifest": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hv-lit}\n"
                                f"data:\n  value: {TEMPLATE}\n"}},
    ]
    return {"pipeline": {
        "name": "hostile-values", "variables": {"v": ""},
        "defaults": {"k8s": {"cluster": world.cluster, "namespace": world.namespace},
                     "docker": {"image": world.image}},
        "stages": [{"name": "all", "parallel": True, "steps": steps}]}}


def _run(hostile, world: World, ws: Path, value: str, mark: str):
    """The run's summary (and its flow run id), through the engine's own entry point."""
    write_workspace(ws, world.image)
    path = ws / "hostile.yaml"
    path.write_text(json.dumps(_pipeline(world, ws, hostile)), encoding="utf-8")
    if hostile.name in THROUGH_CLI:
        arg = b"v=" + value.encode("utf-8", "surrogateescape")
        proc = subprocess.run([sys.executable, "-m", "ansflow.cli", "run", str(path), "--json",
                               b"--var", arg], cwd=ws, capture_output=True, timeout=600,
                              check=False, env=os.environ)
        err = proc.stderr.decode("utf-8", "replace")
        out = proc.stdout.decode("utf-8", "replace").strip().splitlines()
        if not out:  # refused before the run: its message is the last line of stderr
            lines = [line for line in err.splitlines() if line.strip()]
            return {"steps": [], "message": lines[-1] if lines else "", "stderr": err}, None
        return {**json.loads(out[-1]), "stderr": err}, None
    from ansflow.flows.pipeline import pipeline_flow

    state = pipeline_flow(str(path), {"v": value}, return_state=True)
    return state.result(raise_on_failure=False), state.state_details.flow_run_id


def _clear(message: str | None) -> str | None:
    """What is wrong with a refusal's message (None: one clear line)."""
    text = message or ""
    if not text.strip():
        return "failed without a message"
    if any(s in text for s in ("Traceback", "unexpected error", "internal error")):
        return f"not ansflow's own refusal: {text[:300]!r}"
    if len(text) > MAX_MESSAGE:
        return f"a {len(text)}-character message {text[:160]!r}..."
    return None


@pytest.mark.k8s
@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_a_hostile_value_in_every_step_field_is_data(hostile, world, dev_cluster, sshd,
                                                      tmp_path, capfd):
    mark = new_mark()
    value = hostile.value(mark, world.victim_ns)
    ws = tmp_path / "ws"
    audit = audit_mark(dev_cluster)
    summary, run_id = _run(hostile, world, ws, value, mark)
    problems: dict[str, str] = {}
    steps = summary.get("steps") or []
    if not steps:  # the value was refused before any step: one clear line for the run
        _note(problems, "run", _clear(summary.get("message")))
    for step in steps:
        if step["state"] not in ("completed", "failed", "timedout"):
            _note(problems, step["id"], f"ended {step['state']}")
        elif step["state"] != "completed":
            _note(problems, step["id"], _clear(step.get("message")))
    done = {s["id"] for s in steps if s["state"] == "completed"}
    for case, problem in _arrived(done, ws, value, dev_cluster, world):
        _note(problems, case, problem)
    _common(problems, mark, dev_cluster, world, audit, run_id, capfd, ws)
    _note(problems, "summary", _traceback_in(json.dumps(summary)))
    check_known(KNOWN, hostile.name, problems,
                ran={s["id"] for s in steps} | {"run", "code-ran", "audit", "victims"})


def _note(problems: dict[str, str], case: str, problem: str | None) -> None:
    if problem:
        problems[case] = problem


def _common(problems, mark, dev_cluster, world, audit, run_id, capfd, *roots) -> None:
    """What holds for the whole run: no mark, nothing outside the namespace reached (the
    audit log read before the test's own checks add to it), no traceback anywhere."""
    _note(problems, "code-ran", ", ".join(marks_left(mark, *roots)))
    _note(problems, "audit", "; ".join(audited_escapes(dev_cluster, world, audit)))
    _note(problems, "victims", "; ".join(victims_intact(dev_cluster, world)))
    if run_id is not None:
        _note(problems, "log", next((line[:300] for line in logs(run_id)
                                     if "Traceback" in line), None))
    _note(problems, "stderr", _traceback_in(capfd.readouterr().err))


def _traceback_in(text: str) -> str | None:
    return text[text.index("Traceback"):][:1500] if "Traceback" in text else None


def _arrived(done: set[str], ws: Path, value: str, dev_cluster,
             world: World) -> list[tuple[str, str]]:
    """The completed literal steps saw exactly the value: (case, what they saw instead)."""
    wrong = []
    raw = value.encode("utf-8", "surrogateescape")
    for step, name in (("lit_bare", "bare"), ("lit_double", "double"), ("lit_exec", "exec")):
        out = ws / f"hv-lit-{name}.out"
        if step in done and (not out.exists() or out.read_bytes() != raw):
            got = out.read_bytes()[:120] if out.exists() else None
            wrong.append((step, f"the command saw {got!r}"))
    for out in ws.glob("hv-ansible-*.out"):
        if "extra_vars" in out.name and out.read_bytes() != raw:
            wrong.append((out.name[len("hv-ansible-"):-len(".out")],
                          f"ansible used {out.read_bytes()[:120]!r}"))
    if "lit_manifest" in done:
        with dev_cluster.client() as api:
            cm = k8s.CoreV1Api(api).read_namespaced_config_map("hv-lit", world.namespace)
        if cm.data != {"value": value}:
            wrong.append(("lit_manifest", f"the ConfigMap holds {str(cm.data)[:200]}"))
    return wrong


# ---- management operations -----------------------------------------------------------------

OPERATION_BASE = {
    "scale": {"resource_name": "hv-absent", "replicas": 1, "wait": False, "timeout": 5},
    "restart": {"resource_name": "hv-absent", "wait": False, "timeout": 5},
    "rollback": {"resource_name": "hv-absent", "wait": False, "timeout": 5},
    "delete": {"resource_type": "configmap", "resource_name": "hv-absent",
               "ignore_missing": True, "wait": False, "timeout": 5},
    "logs": {"pod": "hv-pod", "tail_lines": 1},
    "apply": {"manifest": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hv-apply}\n",
              "dry_run": True},
    "describe": {"resource_type": "configmap", "resource_name": "hv-present"},
    "list": {"resource_type": "configmap"},
    "get": {"resource_type": "configmap", "resource_name": "hv-present"},
    "revert": {"resource_type": "configmap", "resource_name": "hv-absent"},
    "delete_namespace": {"resource_name": "hv-absent-ns"},
    "namespace": {"name": "{ns}"},
    "configmap": {"name": "hv-form-cm", "data": {"k": "v"}},
    "secret": {"name": "hv-form-secret", "keys": {"k": "vvvv"}},
    "deployment": {"name": "hv-form-dep", "image": "hv/app:1", "wait": False},
    "service": {"name": "hv-form-svc", "selector": {"app": "hv"}},
}


def _operation_runs(world: World, value: str) -> list[tuple[str, dict]]:
    runs = []
    for op, param, how in operation_string_params():
        params = {k: (v.replace("{ns}", world.namespace) if isinstance(v, str) else v)
                  for k, v in OPERATION_BASE.get(op, {}).items()}
        params[param] = {KEY: value} if how == "dict" else value
        runs.append((f"{op}.{param}", {"op": op, **params}))
    return runs


@contextlib.contextmanager
def _console_to_this_tests_stderr():
    """Prefect's console handler keeps the stream it was made with: under pytest that is an
    earlier test's capture, closed since, and writing to it prints a traceback into this
    test's captured stderr, which the checks read as ansflow's. Point it at this test's for
    the test's runs, and back after, so no later test writes to this one's capture."""
    import logging
    import sys

    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(),
               *(logging.getLogger(n) for n in logging.root.manager.loggerDict)]
    handlers = {id(h): h for logger in loggers for h in getattr(logger, "handlers", ())
                if isinstance(h, PrefectConsoleHandler)}.values()
    saved = [(h, h.stream, h.console.file) for h in handlers]
    for handler, _, _ in saved:
        handler.stream = sys.stderr  # not setStream: it flushes the closed one
        handler.console.file = sys.stderr
    try:
        yield
    finally:
        for handler, stream, file in saved:
            handler.stream, handler.console.file = stream, file

# A form value is never templated: one value of the shell and Jinja families stands for all.
OPERATION_VALUES = [h for h in HOSTILE if h.name not in THROUGH_CLI and (
    h.families & {"path", "yaml", "bytes", "size"} or h.name in ("semicolon", "jinja-lookup"))]


def test_the_end_to_end_fields_are_fields_of_the_registry():
    names = {(t, path_text(p)) for t, p in step_leaves()}
    assert {(t, f) for t, fields in E2E_FIELDS.items() for f in fields} <= names


@pytest.mark.k8s
@pytest.mark.parametrize("hostile", OPERATION_VALUES, ids=[h.name for h in OPERATION_VALUES])
def test_a_hostile_value_in_every_operation_field_is_refused_or_data(hostile, world,
                                                                      dev_cluster, capfd):
    from prefect import flow

    from ansflow.flows.manage import run_operation
    from ansflow.manage import load_operations

    mark = new_mark()
    value = hostile.value(mark, world.victim_ns)
    operations = load_operations()
    results: dict[str, object] = {}

    @flow(name="hostile-operations", persist_result=False)
    def every_operation() -> None:
        for label, params in _operation_runs(world, value):
            op = operations[params.pop("op")]
            confirm = op.needs_confirmation(params)
            extra = {"confirm": confirm} if confirm else {}
            try:
                results[label] = run_operation(op, {"cluster": world.cluster,
                                                    "namespace": world.namespace,
                                                    **params, **extra})
            except Exception as exc:  # noqa: BLE001 - what escapes the served flow's body
                results[label] = f"escaped: {type(exc).__name__}: {exc}"[:300]

    audit = audit_mark(dev_cluster)
    with _console_to_this_tests_stderr():
        state = every_operation(return_state=True)
    problems: dict[str, str] = {}
    for label, result in results.items():
        if isinstance(result, str):
            _note(problems, label, result)
        elif hasattr(result, "is_failed"):
            _note(problems, label, _clear(result.message))
    _common(problems, mark, dev_cluster, world, audit, state.state_details.flow_run_id, capfd)
    check_known(KNOWN_OPERATIONS, hostile.name, problems)


def test_the_harness_sees_code_that_runs_on_purpose(prefect_server, base_image, tmp_path):
    """`| shell_code` is the author's explicit opt-in: the mark it creates must be found, so
    the other tests' "no mark" means something."""
    mark = new_mark()
    ws = tmp_path / "ws"
    write_workspace(ws, base_image)
    (ws / "p.yaml").write_text(json.dumps({"pipeline": {
        "name": "hostile-sanity", "variables": {"v": ""}, "steps": [
            {"id": "opt_in", "type": "command",
             "config": {"command": "true {{ vars.v | shell_code }}"}}]}}))
    from ansflow.flows.pipeline import pipeline_flow

    state = pipeline_flow(str(ws / "p.yaml"), {"v": f"; touch {mark}"}, return_state=True)
    assert state.is_completed()
    assert marks_left(mark, ws) == [mark]
    Path(mark).unlink()


@pytest.mark.k8s
def test_the_harness_sees_a_request_outside_the_namespace(world, dev_cluster):
    """A read of the victim through the Python client (as ansflow's steps make them) shows in
    the audit check, so its "nothing audited" means something."""
    import time

    mark = audit_mark(dev_cluster)
    assert mark is not None, "the dev cluster writes no audit log"
    with dev_cluster.client() as api:
        k8s.CoreV1Api(api).read_namespaced_config_map("victim", world.victim_ns)
    deadline = time.monotonic() + 10
    while not (found := audited_escapes(dev_cluster, world, mark)) and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert any(f"/namespaces/{world.victim_ns}/configmaps/victim" in e for e in found), found
