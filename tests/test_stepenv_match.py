"""stepenv: the one-regex glob matching agrees with fnmatchcase, pattern by pattern; the
ANSFLOW_* variables of a step are built in one place."""

from __future__ import annotations

import fnmatch

import pytest

from ansflow.stepenv import BASE_NAMES, inherited_env, matches

NAMES = ["PATH", "PATHX", "XPATH", "LC_ALL", "LC_", "LC", "lc_all", "HOME", "AWS_SECRET",
         "HTTP_PROXY", "HTTPS_PROXY", "A_B_C", "TERM", "TERMINFO"]
PATTERNS = [(), ("PATH",), ("LC_*",), ("HTTP*_PROXY", "A_*_C"), ("*_PROXY",), BASE_NAMES]


@pytest.mark.parametrize("patterns", PATTERNS)
def test_matches_is_fnmatchcase_over_the_patterns(patterns):
    for name in NAMES:
        assert matches(name, patterns) == any(fnmatch.fnmatchcase(name, p) for p in patterns)


def test_inherited_env_keeps_only_the_base_and_pass_through():
    environ = {name: "v" for name in NAMES}
    assert sorted(inherited_env(["*_PROXY"], environ)) == [
        "HOME", "HTTPS_PROXY", "HTTP_PROXY", "LC_", "LC_ALL", "PATH", "TERM"]


def test_ansflow_env_is_the_documented_names_and_nothing_else():
    from ansflow.stepenv import ANSFLOW_NAMES, ansflow_env

    env = ansflow_env(pipeline="p", build_number=7, run_id="r", step_id="s",
                      workspace="/w", output="/w/o")
    assert set(env) == set(ANSFLOW_NAMES)
    assert env["ANSFLOW_BUILD_NUMBER"] == "7" and env["CI"] == "true"
    assert all(isinstance(v, str) for v in env.values())


def test_ansflow_env_leaves_out_what_the_process_finds_itself_and_keeps_hostile_values():
    from ansflow.stepenv import ansflow_env

    hostile = "$(touch /tmp/m) {{ secrets.x }} ../.. ;\n"
    env = ansflow_env(pipeline=hostile, build_number=1, run_id="r", step_id="s")
    assert "ANSFLOW_WORKSPACE" not in env and "ANSFLOW_OUTPUT" not in env
    assert env["ANSFLOW_PIPELINE"] == hostile  # a value, quoted by whoever writes it out
