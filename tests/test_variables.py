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


def test_declared_constraints_are_checked_by_validate_with_positions(tmp_path):
    import subprocess
    import sys

    (tmp_path / "v.yaml").write_text(
        "pipeline:\n  name: v\n  variables:\n"
        "    a: {default: 'x y', pattern: '^[a-z]+$'}\n"
        "    b: {default: a, pattern: '('}\n"
        "    c: {default: 5, minimum: 1, maximum: 3}\n"
        "    d: {default: 3, maxLength: 2}\n"
        "    e: {default: dev, enum: [dev, 7]}\n"
        "    ok: {default: dev, enum: [dev, prod], maxLength: 4}\n"
        "  steps:\n    - {id: s, type: command, config: {command: 'true'}}\n",
        encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "ansflow.cli", "validate", "v.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out
    assert "v.yaml:4:8: the default 'x y' does not match the pattern '^[a-z]+$'" in out
    assert "v.yaml:5:8: pattern '(' is not a regular expression" in out
    assert "v.yaml:6:8: the default 5 is greater than the maximum 3" in out
    assert "v.yaml:7:8: maxLength applies to string variables, not an integer" in out
    assert "v.yaml:8:8: enum value 7 is not a string" in out
    assert "5 problem(s)" in out


def test_a_var_value_that_is_not_utf8_is_refused_by_name():
    # What `--var K=<bytes>` becomes in sys.argv for a byte that is not UTF-8.
    raw = b"K=x\xff\xfe; touch /tmp/m".decode("utf-8", "surrogateescape")
    with pytest.raises(UsageError, match=r"^variable K: the value is not valid UTF-8$"):
        parse_var_options([raw])
    with pytest.raises(UsageError, match=r"the variable name .* is not valid UTF-8"):
        parse_var_options([b"K\xff=x".decode("utf-8", "surrogateescape")])
    assert parse_var_options(["K=caf\u00e9"]) == {"K": "caf\u00e9"}
