"""Each step type's public Prefect task, called in a plain `@flow` with no pipeline, against the
real engines (processes, dockerd and its registries, the dev cluster, the suite's Prefect
server): live output in the run's logs, the result, timeouts, clear failures, cancellation."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import prefect
import pytest
from fixtures_pipeline import logs
from kubernetes import client as k8s
from prefect import flow

import ansflow.tasks as tasks
from ansflow.steptypes import REGISTRY

pytestmark = pytest.mark.server


@pytest.fixture(autouse=True)
def _server(prefect_server):
    """Every test here talks to the suite's Prefect server."""


def run_flow(fn):
    """Run ``fn`` as a user's flow; returns its final state."""
    return flow(name="user-flow")(fn)(return_state=True)


def failure(task_state) -> dict:
    """A failed task run, as plain data a flow can return (a returned failed State would fail
    the flow itself): its message and the exception the task raised."""
    error = task_state.result(raise_on_failure=False)
    return {"failed": task_state.is_failed(), "message": task_state.message,
            "error": type(error).__name__, "exit_code": getattr(error, "exit_code", None)}


def flow_logs(state, *expected: str) -> list[str]:
    return logs(state.state_details.flow_run_id, *expected)


def test_every_implemented_type_has_a_documented_public_task_with_its_config_fields():
    import inspect

    for name, entry in REGISTRY.items():
        if not entry.implemented:
            assert not hasattr(tasks, name), f"{name} is exported but not implemented"
            continue
        task = getattr(tasks, name)
        assert isinstance(task, prefect.Task) and task.name == name
        assert entry.load_task() is task
        params = inspect.signature(task.fn).parameters
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values()), name
        for field, info in entry.config.model_fields.items():
            assert field in params, f"{name}: config field {field!r} is not a parameter"
            default = params[field].default
            if info.is_required():
                assert default is inspect.Parameter.empty, (name, field)
            elif isinstance(info.get_default(call_default_factory=True), (list, dict)):
                assert default is None, (name, field)  # None means the empty default
            else:
                assert default == info.default, (name, field, default, info.default)
        doc = task.fn.__doc__ or ""
        for section in ("Args:", "Returns:", "Raises:", "Example:"):
            assert section in doc, f"{name}'s docstring has no {section}"
        assert task.description == inspect.cleandoc(doc)  # the help Prefect shows


@pytest.mark.postgres
def test_command_streams_live_returns_outputs_and_fails_clearly(tmp_path):
    def user_flow():
        out = tasks.command(command='echo "hello from $WHO"; echo "v=1.2" >> "$ANSFLOW_OUTPUT"',
                            env={"WHO": "a user flow"}, workspace=str(tmp_path))
        bad = tasks.command(command=["sh", "-c", "echo partial; exit 3"], return_state=True)
        return out, failure(bad)

    state = run_flow(user_flow)
    out, bad = state.result()
    assert out == {"exit_code": 0, "outputs": {"v": "1.2"}}
    assert bad["failed"] and "exited with code 3" in bad["message"]
    assert (bad["error"], bad["exit_code"]) == ("StepFailed", 3)
    lines = flow_logs(state, "hello from a user flow", "partial")
    assert "hello from a user flow" in lines and "partial" in lines


def test_command_timeout_kills_the_process_group(tmp_path):
    def user_flow():
        return failure(tasks.command(command="sleep 60 & echo $! > pid; wait", timeout=1.5,
                                     workspace=str(tmp_path), return_state=True))

    started = time.monotonic()
    timed_out = run_flow(user_flow).result()
    assert time.monotonic() - started < 40
    assert timed_out["error"] == "StepTimedOut" and "timed out after 1.5s" in timed_out["message"]
    pid = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the step's background child outlived its timeout"


def test_script_runs_an_interpreter(tmp_path):
    state = run_flow(lambda: tasks.script(
        interpreter="python3", workspace=str(tmp_path),
        script="import os\nprint('py says hi')\n"
               "open(os.environ['ANSFLOW_OUTPUT'], 'a').write('lang=python\\n')\n"))
    assert state.result() == {"exit_code": 0, "outputs": {"lang": "python"}}
    assert "py says hi" in flow_logs(state, "py says hi")


def test_cancelling_the_flow_run_stops_the_task_and_kills_its_process(tmp_path,
                                                                       prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.states import Cancelling

    script = tmp_path / "user_flow.py"
    script.write_text(textwrap.dedent(f"""
        from prefect import flow
        from ansflow.tasks import command

        @flow(name="user-flow-cancel")
        def user_flow():
            command(command="echo $$ > {tmp_path}/pid; sleep 300", timeout=600)

        user_flow()
    """))
    proc = subprocess.Popen([sys.executable, str(script)], env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "pid").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.2)
        pid = int((tmp_path / "pid").read_text())
        with get_client(sync_client=True) as client:
            [run] = client.read_flow_runs(flow_filter=FlowFilter(
                name=FlowFilterName(any_=["user-flow-cancel"])))
            client.set_flow_run_state(run.id, Cancelling(), force=True)
        proc.wait(60)
        assert "cancelled" in proc.stdout.read().lower()
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), "the command outlived the cancelled flow run"
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.docker
def test_docker_build_run_push_pull_in_a_plain_flow(tmp_path, docker_env, base_image,
                                                    docker_api):
    from prefect_docker import DockerRegistryCredentials

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo built-here\n")
    creds = DockerRegistryCredentials(username=docker_env.user, password=docker_env.password,
                                      registry_url=docker_env.auth_registry)

    def user_flow():
        built = tasks.docker_build(image_name="ansflow-test/public", tag="1", context="app",
                                   workspace=str(tmp_path), host=docker_env.host)
        ran = tasks.docker_run(image=built["outputs"]["image"], command="echo ran-in-box",
                               timeout=60)
        pushed = tasks.docker_push(image=built["outputs"]["image"], credentials=creds)
        docker_api.remove_image(pushed["outputs"]["image"])
        pulled = tasks.docker_pull(image=pushed["outputs"]["image"], credentials=creds)
        refused = tasks.docker_push(image=built["outputs"]["image"],
                                    registry=docker_env.auth_registry, return_state=True)
        return built, ran, pushed, pulled, failure(refused)

    state = run_flow(user_flow)
    built, ran, pushed, pulled, refused = state.result()
    assert built["outputs"]["image"] == "ansflow-test/public:1"
    assert built["outputs"]["image_id"].startswith("sha256:")
    assert ran["exit_code"] == 0 and ran["outputs"]["container_id"]
    assert pushed["outputs"]["image"] == f"{docker_env.auth_registry}/ansflow-test/public:1"
    assert pushed["outputs"]["digest"].startswith("sha256:")
    assert pulled["outputs"]["digest"] == pushed["outputs"]["digest"]
    assert refused["failed"] and "no basic auth credentials" in refused["message"]
    lines = flow_logs(state, "ran-in-box")
    assert "ran-in-box" in lines and any("built-here" in line for line in lines)
    assert docker_env.password not in "\n".join(lines)


@pytest.mark.docker
def test_docker_run_timeout_removes_the_container(docker_env, base_image, docker_api):
    def user_flow():
        return failure(tasks.docker_run(image=base_image, command="sleep 60", timeout=1.5,
                                        return_state=True))

    timed_out = run_flow(user_flow).result()
    assert timed_out["error"] == "StepTimedOut" and "killed and removed" in timed_out["message"]
    # The step's own container is gone (the engine is shared with the other test worker, so
    # the engine's whole list may hold other tests' containers at this moment).
    short_id = re.search(r"container ([0-9a-f]{12}) ", timed_out["message"])
    assert short_id, timed_out["message"]
    assert not [c for c in docker_api.containers(all=True)
                if c["Id"].startswith(short_id[1])]


@pytest.mark.k8s
def test_k8s_deploy_wait_exec_with_a_cluster_block_object(dev_cluster):
    ns = dev_cluster.namespace("public")
    block = dev_cluster.block()  # an unsaved block object, as a user may pass one

    def user_flow():
        deployed = tasks.k8s_deploy(cluster=block, namespace=ns, deployment_spec={
            "name": "web", "image": "example.invalid/web:1", "replicas": 2})
        waited = tasks.k8s_wait(cluster=dev_cluster.block_name, namespace=ns,
                                resource_type="deploy", resource_name="web", timeout=120)
        execd = tasks.k8s_exec(cluster=block, namespace=ns, pod_selector="app=web",
                               command="echo from-the-pod")
        missing = tasks.k8s_wait(cluster=dev_cluster.block_name, namespace=ns,
                                 resource_type="deployment", resource_name="nope",
                                 timeout=5, return_state=True)
        return deployed, waited, execd, failure(missing)

    state = run_flow(user_flow)
    deployed, waited, execd, missing = state.result()
    assert deployed["outputs"] == {"objects": "deployment/web", "revision": "1"}
    assert waited["outputs"]["resource"] == "deployment/web"
    assert execd["exit_code"] == 0 and execd["outputs"]["stdout_tail"] == "from-the-pod"
    assert missing["error"] == "StepFailed"
    assert f"deployment/nope in namespace {ns} not found" in missing["message"]
    with dev_cluster.client() as api:
        assert k8s.AppsV1Api(api).read_namespaced_deployment("web", ns).spec.replicas == 2
    assert "from-the-pod" in flow_logs(state, "from-the-pod")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False

