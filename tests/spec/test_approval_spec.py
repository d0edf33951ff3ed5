"""`approval` steps in the spec: their fields validated at their positions, references to
outputs the approval does not publish refused, the form built from the declaration."""

import textwrap

import pytest

from ansflow.errors import SpecError
from ansflow.spec.validate import load_plan


def write(tmp_path, text: str) -> str:
    path = tmp_path / "p.yaml"
    path.write_text("pipeline:\n  name: p\n" + textwrap.indent(textwrap.dedent(text), "  "))
    return str(path)


def problems(tmp_path, text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_plan(write(tmp_path, text))
    return [str(p).split("p.yaml:", 1)[1] for p in info.value.problems]


def test_a_valid_approval_and_a_step_reading_its_fields(tmp_path):
    plan = load_plan(write(tmp_path, """\
        steps:
          - id: gate
            type: approval
            config:
              message: Ship?
              timeout: 30m
              fields:
                note: {description: Release note, maxLength: 200}
                env: {enum: [staging, prod], default: staging}
          - id: ship
            type: command
            needs: gate
            config:
              command: echo {{ steps.gate.outputs.note }} {{ steps.gate.outputs.approved }}
        """))
    gate = plan.step("gate")
    assert gate.type == "approval" and gate.config["timeout"] == "30m"


def test_bad_fields_are_reported_at_their_positions(tmp_path):
    got = problems(tmp_path, """\
        steps:
          - id: a
            type: approval
            config:
              fields:
                "release note": {}
          - id: b
            type: approval
            config:
              fields: {comment: {}}
          - id: c
            type: approval
            config:
              fields: {env: {enum: [staging, prod], default: moon}}
          - id: d
            type: approval
            config: {timeout: soon, colour: red}
        """)
    text = "\n".join(got)
    assert "field name 'release note' must be letters, digits and _" in text
    assert "field name 'comment' is reserved" in text
    assert "the default 'moon' is not one of 'staging', 'prod'" in text
    assert "'soon' is not a duration" in text
    assert "colour" in text
    assert all(p.split(":")[0].isdigit() for p in got)  # FILE:LINE:COL


def test_a_reference_to_an_output_the_approval_does_not_publish(tmp_path):
    got = problems(tmp_path, """\
        steps:
          - id: gate
            type: approval
            config: {fields: {note: {}}}
          - id: ship
            type: command
            needs: gate
            config: {command: "echo {{ steps.gate.outputs.notes }}"}
        """)
    [problem] = got
    assert "an approval step has no output 'notes'" in problem
    assert "approved, comment, note" in problem


def test_the_form_has_approve_comment_and_the_declared_fields():
    from ansflow.spec.steps import ApprovalConfig
    from ansflow.tasks.approval import answer_outputs, approval_form

    config = ApprovalConfig(fields={"note": {"description": "Release note"},
                                    "n": {"type": "integer", "minimum": 1},
                                    "env": {"enum": ["staging", "prod"], "default": "staging"}})
    form = approval_form(config, "Ship?")
    schema = form.model_json_schema()
    assert list(schema["properties"]) == ["approve", "comment", "note", "n", "env"]
    assert schema["properties"]["note"] == {"description": "Release note", "maxLength": 2000,
                                            "title": "Note", "type": "string"}
    assert schema["properties"]["n"]["type"] == "integer"
    assert schema["properties"]["env"]["enum"] == ["staging", "prod"]
    assert schema["additionalProperties"] is False and not schema.get("required")
    answer = form(approve=True, comment="ok\n  then", note="a\nb", n=3)
    assert answer_outputs(config, answer) == {"approved": "true", "comment": "ok then",
                                              "note": "a b", "n": "3", "env": "staging"}
    # The server checks the schema; the step checks the declaration again.
    with pytest.raises(Exception, match="is less than the minimum 1"):
        answer_outputs(config, form(approve=True, n=0))
