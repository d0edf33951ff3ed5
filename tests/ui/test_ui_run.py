"""The Prefect UI in a real browser (Debian's chromium): the hybrid demo pipeline served as a
deployment, started from its run form with typed-in variables, run to Completed, and its
run graph drawn (stages' steps as nodes, dependencies as edges). The screenshots are the
README's pictures (docs/images/ui-run-form.png, docs/images/ui-run.png): set
ANSFLOW_UPDATE_DOCS_IMAGES=1 to write them there as well as to test-artifacts/."""

from __future__ import annotations

import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import pytest

pytestmark = [pytest.mark.server, pytest.mark.docker, pytest.mark.k8s]

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo" / "pipeline.yaml"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def artifacts_dir() -> Path:
    """Screenshots go outside git: $ANSFLOW_TEST_ARTIFACTS or the repo's test-artifacts/."""
    folder = Path(os.environ.get("ANSFLOW_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_demo_from_the_run_form_completes_and_its_run_graph_is_drawn(
        serve, deploy, tmp_path, real_node_cluster, docker_env, submit_run_form):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    from playwright.sync_api import sync_playwright
    from prefect.client.orchestration import get_client

    shutil.copy(DEMO, tmp_path / "pipeline.yaml")  # its workspace: the file's folder
    proc = serve(str(tmp_path / "pipeline.yaml"))
    dep = deploy.wait_for_deployment("ansflow-demo", proc=proc)
    deploy.wait_for_runner(proc)
    # With a registry the demo deploys to the cluster's real node and runs a step in a pod.
    namespace = real_node_cluster.namespace("ui-demo")
    typed = {"greeting": "typed in the browser", "cluster": real_node_cluster.block_name,
             "namespace": namespace, "registry": docker_env.registry}
    ui = os.environ["PREFECT_API_URL"].removesuffix("/api")
    shots = artifacts_dir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{ui}/v2/deployments/deployment/{dep.id}")
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Custom run").click()
            _wait_for_form(page, f"{ui}/v2/deployments/deployment/{dep.id}/run")
            for name, value in typed.items():  # the form labels each field "NAME (Optional)"
                page.get_by_label(f"{name} (Optional)", exact=True).fill(value, timeout=30_000)
            page.screenshot(path=str(shots / "ui-run-form.png"), full_page=True)
            [run] = submit_run_form(page, lambda: _runs_of(dep.id), "the run the form created")
            page.goto(f"{ui}/v2/runs/flow-run/{run.id}")
            run_id = str(run.id)
            run = deploy.wait_final(run_id, timeout=600)
            assert run.state.is_completed(), run.state
            assert {k: run.parameters[k] for k in typed} == typed
            graph = _graph_after_final_states(page, f"{ui}/v2/runs/flow-run/{run_id}", run_id)
            # The run's header and graph (the logs below name the test's temp folder).
            box = page.locator("canvas").first.bounding_box()
            page.screenshot(path=str(shots / "ui-run.png"), clip={
                "x": 0, "y": 0, "width": 1400, "height": box["y"] + box["height"] + 16})
        finally:
            browser.close()
    assert graph >= 500, f"the run graph drew {graph} node pixels"
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id).name.startswith("ansflow-demo #")
    summary = deploy.run_summary(run_id)
    steps = {s["id"]: s for s in summary["steps"]}
    assert steps["push"]["state"] == "completed" and steps["integration"]["state"] == "completed"
    assert steps["deploy"]["state"] == "completed" and steps["in_pod"]["state"] == "completed"
    assert "typed in the browser from hello-app" in (tmp_path / "build" / "app.sh").read_text()
    if os.environ.get("ANSFLOW_UPDATE_DOCS_IMAGES"):
        for name in ("ui-run-form.png", "ui-run.png"):
            shutil.copy(shots / name, ROOT / "docs" / "images" / name)


def _wait_for_form(page, url: str) -> None:
    """Wait for the custom-run form's fields; a form whose schema request failed on a busy
    server stays empty, so it is loaded again (twice at most) from its own address."""
    field = page.get_by_label("greeting (Optional)", exact=True)
    for attempt in range(3):
        try:
            field.wait_for(timeout=60_000)
            return
        except Exception:
            if attempt == 2:
                text = page.locator("body").inner_text()[:1500]
                raise AssertionError(f"the run form has no 'greeting' field at {page.url}; "
                                     f"the page shows: {text!r}") from None
            page.goto(url)


def _graph_after_final_states(page, url: str, run_id: str) -> int:
    """Reload the run's page until the run graph shows its nodes; their pixel count."""
    _wait_task_runs_final(run_id)
    deadline = time.monotonic() + 60
    while True:
        page.goto(url)
        page.get_by_text("ansflow-demo #").first.wait_for(timeout=20_000)
        page.get_by_text("Completed").first.wait_for(timeout=20_000)
        canvas = page.locator("canvas").first
        canvas.wait_for(timeout=20_000)
        time.sleep(2)  # the graph animates its layout in
        pixels = _state_green_pixels(canvas.screenshot())
        if pixels >= 500 or time.monotonic() > deadline:
            return pixels


def _wait_task_runs_final(run_id: str) -> None:
    """Task-run states reach the server as events, a moment after the flow run ends."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
            if runs and all(r.state and r.state.is_final() for r in runs):
                return
            time.sleep(0.5)


def _state_green_pixels(png: bytes) -> int:
    """Pixels of the green that Completed/Skipped-state nodes are drawn in, above the
    timeline's bottom bar (which is green too): a blank or empty graph has none."""
    width, height, rows = _decode_png(png)
    count = 0
    for row in rows[: max(0, height - 24)]:
        for x in range(0, width * 4, 4):
            r, g, b = row[x], row[x + 1], row[x + 2]
            count += g > r + 60 and g > b + 40
    return count


def _decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """RGBA rows of an 8-bit RGB/RGBA PNG (what Chromium writes): no imaging library needed."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            channels = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * channels, [], bytearray(
        width * channels)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (
            stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        prev = line
        rows.append(bytes(line) if channels == 4 else b"".join(
            bytes(line[i:i + 3]) + b"\xff" for i in range(0, stride, 3)))
    return width, height, rows


def _runs_of(deployment_id) -> list:
    """The flow runs of ``deployment_id`` (the form's)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[deployment_id])))
