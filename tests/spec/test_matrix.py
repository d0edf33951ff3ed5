"""Matrix steps: GitHub Actions' expansion rules, validation errors at their positions, the
plan's expansion (text, json, mermaid)."""

import json
import textwrap

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from ansflow.cli.app import app
from ansflow.errors import SpecError
from ansflow.spec.matrix import Matrix, expand
from ansflow.spec.schema import pipeline_json_schema
from ansflow.spec.validate import load_plan


def combos(data: dict) -> list[dict]:
    return [c.values for c in expand(Matrix.model_validate(data))]


def test_the_product_varies_the_first_axis_slowest():
    assert combos({"python": ["3.11", "3.12"], "os": ["a", "b"]}) == [
        {"python": "3.11", "os": "a"}, {"python": "3.11", "os": "b"},
        {"python": "3.12", "os": "a"}, {"python": "3.12", "os": "b"}]


def test_include_follows_githubs_documented_example():
    # docs.github.com "Expanding or adding matrix configurations": the same input, the same
    # six combinations.
    got = combos({
        "fruit": ["apple", "pear"], "animal": ["cat", "dog"],
        "include": [{"color": "green"}, {"color": "pink", "animal": "cat"},
                    {"fruit": "apple", "shape": "circle"}, {"fruit": "banana"},
                    {"fruit": "banana", "animal": "cat"}]})
    assert got == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]


def test_exclude_removes_partial_matches_and_never_what_include_added():
    got = combos({"os": ["a", "b"], "v": [1, 2, 3],
                  "exclude": [{"os": "b"}, {"os": "a", "v": 2}],
                  "include": [{"os": "b", "v": 9}]})
    assert got == [{"os": "a", "v": 1}, {"os": "a", "v": 3}, {"os": "b", "v": 9}]


def test_only_include_gives_one_combination_per_entry():
    assert combos({"include": [{"a": 1}, {"a": 2, "b": "x"}]}) == [{"a": 1},
                                                                   {"a": 2, "b": "x"}]


def test_a_combination_key_is_its_axis_values_even_when_include_extends_it():
    keys = [c.key for c in expand(Matrix.model_validate(
        {"python": ["3.11", True], "include": [{"python": "3.11", "extra": "y"},
                                               {"python": "3.13"}]}))]
    assert keys == ["python=3.11", "python=true", "python=3.13"]


MATRIX_PIPELINE = """\
pipeline:
  name: mx
  stages:
    - name: build
      steps:
        - {name: Prep, type: command, config: {command: "true"}}
    - name: test
      steps:
        - name: Test
          id: test
          type: command
          matrix:
            python: ["3.11", "3.12"]
            os: [a, b, c]
            exclude: [{python: "3.12", os: c}]
            max_parallel: 2
          config: {command: "echo {{ matrix.python }} {{ matrix.os }}"}
        - name: After
          type: command
          config:
            command: "echo {{ steps.test.matrix['python=3.11,os=a'].outputs.stdout }}
              {{ steps.test.status }}"
"""


def write(tmp_path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_the_plan_has_one_step_per_combination_and_waits_for_all(tmp_path):
    plan = load_plan(write(tmp_path, MATRIX_PIPELINE))
    ids = [s.id for s in plan.steps]
    assert ids == ["prep", "test.1", "test.2", "test.3", "test.4", "test.5", "after"]
    test1 = plan.step("test.1")
    assert test1.name == "Test (python=3.11, os=a)"
    assert test1.matrix == {"python": "3.11", "os": "a"} and test1.matrix_of == "test"
    assert all(plan.step(f"test.{n}").needs == ["prep"] for n in range(1, 6))
    assert plan.step("after").needs == [f"test.{n}" for n in range(1, 6)]
    assert plan.matrices["test"]["combinations"]["python=3.12,os=b"] == "test.5"
    assert plan.matrices["test"]["max_parallel"] == 2
    assert plan.matrices["test"]["fail_fast"] is True
    assert plan.stages[1].steps == ids[1:]


def test_needs_on_a_matrix_step_waits_for_every_combination(tmp_path):
    plan = load_plan(write(tmp_path, """\
        steps:
          - {id: m, type: command, matrix: {n: [1, 2]}, config: {command: "true"}}
          - {id: other, type: command, config: {command: "true"}}
          - {id: last, type: command, needs: [m], config: {command: "true"}}
        """))
    assert plan.step("last").needs == ["m.1", "m.2", "other"]


def problems(tmp_path, text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_plan(write(tmp_path, text))
    return [str(p).split("p.yaml:", 1)[1] for p in info.value.problems]


def test_validate_reports_matrix_problems_at_their_positions(tmp_path):
    got = problems(tmp_path, """\
        steps:
          - name: Empty
            type: command
            matrix: {}
            config: {command: "true"}
          - id: t
            type: command
            matrix:
              python: ["3.11"]
              exclude: [{osx: a}]
            config: {command: "echo {{ matrix.pyton }}"}
          - id: big
            type: command
            matrix: {a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
                     b: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]}
            config: {command: "true"}
          - id: u
            type: command
            matrix: {python: ["3.11", "3.12"]}
            config: {command: "echo {{ matrix.python }} {{ matrix.pyton }}"}
          - id: plain
            type: command
            config:
              command: "{{ matrix.python }} {{ steps.u.outputs.stdout }}
                {{ steps.u.matrix['python=3.13'].outputs.stdout }}
                {{ steps.u.matrix['python=3.12'].outputs.stdout }}"
          - id: axis
            type: command
            matrix: {python: "3.11", max_parallel: 0, fail_fast: maybe}
            config: {command: "true"}
        """)
    assert "4:13: step 'empty': the matrix has no combinations" in got[0]
    assert got[1] == ("10:23: step 't': exclude names 'osx', which is not a matrix axis "
                      "(axes: python)")  # (its template is checked once its matrix is right)
    assert got[2] == "14:13: step 'big': the matrix has 272 combinations; at most 256 are allowed"
    assert got[3].startswith("20:23: step 'u': unknown matrix key 'matrix.pyton'; did you mean "
                             "'python'?")  # once, not once per combination
    assert got[4].startswith("24:16: step 'plain': 'matrix.python': this step has no `matrix:`")
    assert "step 'u' has a matrix; its outputs are per combination" in got[5]
    assert "step 'u' has no combination 'python=3.13'; did you mean 'python=3.12'?" in got[6]
    assert got[7].startswith("29:22: 'python': expected a list")
    assert got[8].startswith("29:44: 'max_parallel'")
    assert got[9].startswith("29:58: 'fail_fast'")
    assert len(got) == 10


def test_a_matrix_on_a_finally_step_is_refused(tmp_path):
    got = problems(tmp_path, """\
        steps:
          - {id: a, type: command, config: {command: "true"}}
        finally:
          - {id: f, type: command, matrix: {n: [1, 2]}, config: {command: "true"}}
        """)
    assert got == ["4:36: step 'f': `matrix` is not supported on `finally` steps"]


def test_a_matrix_reference_must_run_before(tmp_path):
    got = problems(tmp_path, """\
        stages:
          - name: s
            parallel: true
            steps:
              - {id: m, type: command, matrix: {n: [1, 2]}, config: {command: "true"}}
              - id: x
                type: command
                config: {command: "echo {{ steps.m.matrix['n=1'].outputs.stdout }}"}
        """)
    assert len(got) == 1 and "refers to step 'm', which does not run before step 'x'" in got[0]


def test_the_schema_accepts_a_matrix_and_rejects_a_scalar_axis(tmp_path):
    schema = pipeline_json_schema()
    jsonschema.validate(yaml.safe_load(MATRIX_PIPELINE), schema)
    bad = yaml.safe_load(MATRIX_PIPELINE)
    bad["pipeline"]["stages"][1]["steps"][0]["matrix"]["os"] = "a"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_plan_shows_the_expansion_as_text_json_and_mermaid(tmp_path):
    path = str(write(tmp_path, MATRIX_PIPELINE))
    runner = CliRunner()
    text = runner.invoke(app, ["plan", path], env={"COLUMNS": "250"})
    assert text.exit_code == 0, text.output
    assert "Test (python=3.12, os=b)" in text.output
    assert "matrix test['python=3.12,os=b'] (5 combinations; max_parallel 2, fail_fast)" \
        in text.output
    assert "python=3.12, os=c" not in text.output  # excluded
    out = runner.invoke(app, ["plan", path, "--format", "json"])
    data = json.loads(out.output)
    assert data["matrices"]["test"]["keys"] == ["python", "os"]
    assert [s["matrix_key"] for s in data["steps"] if s["matrix_of"] == "test"] == [
        "python=3.11,os=a", "python=3.11,os=b", "python=3.11,os=c", "python=3.12,os=a",
        "python=3.12,os=b"]
    mermaid = runner.invoke(app, ["plan", path, "--format", "mermaid"]).output
    assert 'subgraph mn_test["Test: matrix of 5"]' in mermaid
    assert "n_test_5 --> n_after" in mermaid
