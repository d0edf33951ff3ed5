"""Pure parts of serving and publishing: the run-form schema, discovery, the summary views."""

from __future__ import annotations

import textwrap

from ansflow.serving import discover, parameter_schema


def _write(path, text):
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_parameter_schema_has_one_typed_field_per_identifier_variable_and_refuses_others(tmp_path):
    _write(tmp_path / "p.yaml", """\
        pipeline:
          name: s
          variables:
            tag: {default: v1, description: Image tag}
            replicas: 2
            ratio: 0.5
            dry_run: {default: false, type: boolean}
            note: {type: string}
            image-tag: latest
          steps:
            - {name: a, type: command, config: {command: "true"}}
        """)
    [(_, plan)] = discover([str(tmp_path)]).plans.values()
    schema = parameter_schema(plan)
    props = schema["properties"]
    assert [props[k]["type"] for k in ("tag", "replicas", "ratio", "dry_run", "note")] == [
        "string", "integer", "number", "boolean", "string"]
    assert props["tag"]["description"] == "Image tag" and props["tag"]["default"] == "v1"
    assert "default" not in props["note"]
    assert "image-tag" not in props  # not an identifier: keeps its default when served
    assert [props[k]["position"] for k in props] == [0, 1, 2, 3, 4]
    assert schema["additionalProperties"] is False and schema["required"] == []


def test_discover_reports_every_bad_file_with_a_position_and_duplicate_names(tmp_path):
    good = "pipeline:\n  name: same\n  steps: [{name: a, type: command, config: {command: x}}]\n"
    _write(tmp_path / "a.yaml", good)
    _write(tmp_path / "b.yml", good)
    _write(tmp_path / "c.yaml", "pipeline:\n  name: c\n  stepz: []\n")
    (tmp_path / "notes.txt").write_text("not a pipeline")
    found = discover([str(tmp_path), str(tmp_path / "gone.yaml")])
    assert list(found.plans) == ["same"]
    text = "\n".join(found.problems)
    assert f"{tmp_path / 'b.yml'}: pipeline name 'same' is already served" in text
    assert f"{tmp_path / 'c.yaml'}:3:3:" in text
    assert "gone.yaml: no such file or folder" in text and "notes.txt" not in text


def test_summary_views_mask_secrets_and_list_failed_steps():
    from ansflow.flows.publish import (
        artifact_key,
        event_name,
        failed_steps,
        summary_markdown,
        summary_rows,
    )

    summary = {"pipeline": "Web App", "run_id": "r1", "build_number": 4, "state": "failed",
               "message": "1 step failed", "steps": [
                   {"id": "push", "name": "Push", "stage": "ship", "type": "docker_push",
                    "state": "completed", "exit_code": None, "attempts": 1, "duration_s": 1.5,
                    "outputs": {"image": "reg/app:1", "digest": "sha256:abc", "tok": "s3cr3t"},
                    "message": None},
                   {"id": "test", "name": "Test", "stage": "ship", "type": "command",
                    "state": "failed", "exit_code": 2, "attempts": 2, "duration_s": 0.2,
                    "outputs": {}, "message": "exited with code 2 (s3cr3t)"}]}
    rows = summary_rows(summary, {"T": "s3cr3t"})
    assert rows[1]["exit code"] == "2" and rows[1]["state"] == "failed"
    assert "s3cr3t" not in str(rows) and "***" in rows[0]["outputs"]
    md = summary_markdown(summary, {"T": "s3cr3t"})
    assert "image `reg/app:1`, digest `sha256:abc`" in md and "s3cr3t" not in md
    assert "- **Test** (`test`): exited with code 2 (***)" in md
    assert failed_steps(summary)[0]["id"] == "test"
    assert artifact_key("Web App") == "ansflow-web-app"
    assert event_name("timedout") == "ansflow.pipeline.failed"
    assert event_name("completed") == "ansflow.pipeline.completed"
