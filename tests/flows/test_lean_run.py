"""A pipeline without Docker or Kubernetes steps loads neither client (memory, and seconds of
start-up before its first step): a real run in a fresh interpreter, on the suite's server."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """\
import json, sys
from ansflow.flows.pipeline import pipeline_flow
state = pipeline_flow(sys.argv[1], return_state=True)
summary = state.result(raise_on_failure=False)
heavy = sorted(m for m in ("docker", "kubernetes", "prefect_docker", "prefect_kubernetes")
               if m in sys.modules)
print(json.dumps({"state": summary["state"], "heavy": heavy}))
"""


def test_a_command_only_run_loads_no_docker_or_kubernetes_client(prefect_server, tmp_path):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("pipeline:\n  name: lean\n  steps:\n"
                        "    - {id: a, type: command, config: {command: 'echo hi'}}\n"
                        "    - {id: b, type: script, config: {script: 'true'}}\n")
    out = subprocess.run([sys.executable, "-c", PROBE, str(pipeline)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"state": "completed", "heavy": []}
