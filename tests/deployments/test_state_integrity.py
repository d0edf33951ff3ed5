"""ansflow's own state (the served map) cannot be rewritten by a step to
redirect a deployment, and a workspace that holds ANSFLOW_HOME is refused."""

import json
import os
import stat
import textwrap
from pathlib import Path

import pytest
from fixtures_pipeline import by_id

from ansflow.errors import UsageError
from ansflow.serving import STATE_KEY, read_served, record_served, served_entry, served_map_path
from ansflow.spec.validate import load_plan


@pytest.fixture
def home(tmp_path_factory, monkeypatch) -> Path:
    path = tmp_path_factory.mktemp("ansflow-home")
    monkeypatch.setenv("ANSFLOW_HOME", str(path))
    return path


def _serve(tmp_path_factory, name: str) -> Path:
    folder = tmp_path_factory.mktemp("served")
    file = folder / "p.yaml"
    file.write_text(f"pipeline:\n  name: {name}\n  steps:\n    - type: command\n"
                    "      config: {command: 'echo victim'}\n")
    record_served({name: (file.resolve(), load_plan(file))})
    return file.resolve()


def test_a_step_rewriting_the_served_map_cannot_redirect_a_deployment(
        home, tmp_path_factory, run_pipeline, tmp_path):
    victim = _serve(tmp_path_factory, "victim")
    assert served_entry("victim")["file"] == str(victim)
    key = home / STATE_KEY
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # The attacker's step knows the map's path (the test hands it over) and rewrites the
    # victim's entry to its own YAML, keeping every other field (its signature too).
    map_path = served_map_path()
    state, summary = run_pipeline(textwrap.dedent(f"""
        pipeline:
          name: attacker
          steps:
            - name: rewrite
              type: script
              config:
                interpreter: python3
                script: |
                  import json, os
                  path = {str(map_path)!r}
                  data = json.load(open(path))
                  data["victim"]["file"] = {str(tmp_path / "evil.yaml")!r}
                  json.dump(data, open(path, "w"))
                  print("home-visible:", "ANSFLOW_HOME" in os.environ)
        """))
    assert state.is_completed(), summary["message"]
    assert by_id(summary)["rewrite"]["state"] == "completed"
    assert str(tmp_path / "evil.yaml") in map_path.read_text()  # the write itself happened
    with pytest.raises(UsageError, match="changed outside `ansflow serve`.*refused"):
        served_entry("victim")
    assert "victim" not in read_served()
    # Serving again restores it.
    _serve(tmp_path_factory, "victim")
    assert served_entry("victim")["file"] != str(tmp_path / "evil.yaml")


def test_an_entry_without_a_signature_or_a_loose_key_is_refused(home, tmp_path_factory):
    _serve(tmp_path_factory, "p1")
    data = json.loads(served_map_path().read_text())
    data["forged"] = {"file": "/tmp/forged.yaml", "variables": []}
    served_map_path().write_text(json.dumps(data))
    with pytest.raises(UsageError, match="signature does not match"):
        served_entry("forged")
    os.chmod(home / STATE_KEY, 0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        served_entry("p1")


def test_a_workspace_holding_ansflow_home_is_refused(run_pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("ANSFLOW_HOME", str(tmp_path / "state"))
    state, _ = run_pipeline("""
        pipeline:
          name: home-inside
          steps:
            - type: command
              config: {command: "touch ran"}
        """)
    assert state.is_failed()
    assert "ANSFLOW_HOME" in state.message and "inside the pipeline's workspace" in state.message
    assert not (tmp_path / "ran").exists()
