"""Templates: static references, sandboxed rendering, conditions."""

import pytest

from ansflow.templating import (
    TemplateError,
    evaluate_condition,
    references,
    render_string,
    render_value,
)


def test_references_find_dotted_names_and_item_access():
    refs = {r.dotted for r in references(
        "{{ vars.image }}:{{ steps['build'].outputs.tag }} {% for x in vars.l %}{{ x.y }}{% endfor %}")}
    assert refs == {"vars.image", "steps.build.outputs.tag", "vars.l"}


def test_sandbox_refuses_python_internals_at_run_time():
    with pytest.raises(TemplateError, match="unsafe"):
        render_string("{{ ''.__class__.__mro__ }}", {})


def test_undefined_names_are_errors():
    with pytest.raises(TemplateError, match="undefined"):
        render_string("{{ vars.nope }}", {"vars": {}})


def test_render_walks_structures():
    assert render_value({"a": ["{{ vars.x }}-1", 2]}, {"vars": {"x": "v"}}) == {"a": ["v-1", 2]}


@pytest.mark.parametrize("expr, expected", [
    ("vars.x == 'a'", True), ("{{ vars.x == 'b' }}", False), (False, False), (None, True),
    ("vars.flag", False),
])
def test_conditions(expr, expected):
    assert evaluate_condition(expr, {"vars": {"x": "a", "flag": "false"}}) is expected
