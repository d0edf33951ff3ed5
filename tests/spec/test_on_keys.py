"""Mapping keys are names (YAML 1.2, as GitHub reads workflow files): `on:`, `yes:`, `no:`,
`off:` are words wherever they stand; values keep YAML 1.1's booleans."""

from __future__ import annotations

import pytest

from ansflow.errors import SpecError
from ansflow.spec.validate import plan_from_bytes
from ansflow.spec.yaml_loader import Position, YamlError, load_located, load_plain_all

WORDS = ["on", "off", "yes", "no", "y", "n", "On", "OFF", "Yes", "NO", "true", "False"]


@pytest.mark.parametrize("word", WORDS)
def test_boolean_words_are_keys_as_written(word):
    located = load_located(f"{word}: 1\nnested:\n  {word}: [{word}]\n")
    assert list(located.data) == [word, "nested"]
    assert list(located.data["nested"]) == [word]
    assert located.keys[(word,)] == Position(1, 1)
    assert located.keys[("nested", word)] == Position(3, 3)


def test_numbers_as_keys_are_the_text_written_not_a_number_printed_again():
    data = load_located("1: a\n0x1F: b\n1_000: c\n1e3: d\n.5: e\n2024-01-02: f\n").data
    assert list(data) == ["1", "0x1F", "1_000", "1e3", ".5", "2024-01-02"]


def test_values_keep_their_yaml_1_1_meaning():
    data = load_located("a: yes\nb: off\nc: 'on'\nd: [no, n, y]\n").data
    assert data == {"a": True, "b": False, "c": "on", "d": [False, "n", "y"]}


def test_a_word_and_its_quoted_form_are_the_same_key():
    with pytest.raises(YamlError, match="duplicate key 'on'") as info:
        load_located("on: 1\n'on': 2\n")
    assert info.value.position == Position(2, 1)


@pytest.mark.parametrize("text", ["~: 1\n", "null: 1\n", "? \n: 1\n"])
def test_a_null_key_is_refused_clearly(text):
    with pytest.raises(YamlError, match="cannot be null"):
        load_located(text)


def test_tags_on_keys_are_still_refused():
    with pytest.raises(YamlError, match="not allowed"):
        load_located("!!python/name:os.system on: 1\n")


def test_manifest_keys_are_words_too():
    [doc] = load_plain_all("kind: ConfigMap\ndata:\n  on: 'x'\n  no: 'y'\n")
    assert doc["data"] == {"on": "x", "no": "y"}


def _plan(text: str):
    return plan_from_bytes(text.encode(), "p.yaml", workspace="/tmp", default_name="p")


def test_pipeline_variables_env_and_matrix_axes_named_with_boolean_words():
    plan = _plan("""\
pipeline:
  name: words
  variables:
    yes: {default: "1"}
    no: 2
  env: {on: "a", off: yes}
  steps:
    - name: s
      type: command
      allow_failure: yes
      matrix: {on: [a, b]}
      config: {command: "echo {{ vars.yes }} {{ vars.no }} {{ matrix.on }}"}
""")
    assert set(plan.variables) == {"yes", "no"}
    assert plan.env == {"on": "a", "off": "true"}


def test_a_misspelled_boolean_word_key_is_named_as_written():
    with pytest.raises(SpecError) as info:
        _plan("pipeline:\n  name: x\n  yes: 1\n  steps: [{name: s, type: command, "
              "config: {command: 'true'}}]\n")
    assert "unknown key 'yes'" in str(info.value.problems[0])
    assert "True" not in str(info.value.problems[0])


ON_PIPELINE = """\
pipeline:
  name: pushed
  source: {git: "https://git.example/team/app.git"}
  on:
    push:
      branches: [main, "release/*"]
      tags: ["v*"]
      paths-ignore: ["docs/**"]
  steps:
    - {name: s, type: command, config: {command: "true"}}
"""


def test_on_push_is_a_pipeline_key_and_lands_on_the_plan():
    plan = _plan(ON_PIPELINE)
    assert plan.on_push == {
        "repository": "https://git.example/team/app.git",
        "filters": {"branches": ["main", "release/*"], "tags": ["v*"],
                    "paths_ignore": ["docs/**"]}}
    assert _plan(ON_PIPELINE.replace("  on:\n    push:\n      branches: [main, \"release/*\"]\n"
                                     "      tags: [\"v*\"]\n      paths-ignore: [\"docs/**\"]\n",
                                     "  on: push\n")).on_push["filters"] == {}


def test_on_push_problems_point_at_their_place():
    with pytest.raises(SpecError) as info:
        _plan(ON_PIPELINE.replace('"release/*"', '"?x"'))
    [problem] = info.value.problems
    assert problem.position.line == 6 and "follows no character" in problem.message
    with pytest.raises(SpecError) as info:
        _plan(ON_PIPELINE.replace('  source: {git: "https://git.example/team/app.git"}\n', ""))
    assert "needs `source: {git: URL}`" in str(info.value.problems[0])
    with pytest.raises(SpecError) as info:
        _plan(ON_PIPELINE.replace("push:", "pull_request:"))
    assert "pull_request" in str(info.value.problems[0])
