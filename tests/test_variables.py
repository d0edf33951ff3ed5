"""Variables: defaults, typed overrides, unknown names."""

import pytest

from ansflow.errors import UsageError
from ansflow.plan import Plan
from ansflow.variables import parse_var_options, resolve_variables


def plan() -> Plan:
    return Plan(name="p", type="local", source="x", workspace="/", variables={
        "n": {"default": 1}, "flag": {"default": None, "type": "boolean"}, "s": {"default": "a"}})


def test_overrides_are_coerced_to_the_variable_type():
    values = resolve_variables(plan(), {"n": "5", "flag": "yes"})
    assert values == {"n": 5, "flag": True, "s": "a"}


def test_unknown_and_ill_typed_variables_are_usage_errors():
    with pytest.raises(UsageError, match="unknown variable.*'x'.*variables: n, flag, s"):
        resolve_variables(plan(), {"x": "1"})
    with pytest.raises(UsageError, match="'n' must be an integer"):
        resolve_variables(plan(), {"n": "five"})


def test_var_options():
    assert parse_var_options(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(UsageError):
        parse_var_options(["novalue"])
