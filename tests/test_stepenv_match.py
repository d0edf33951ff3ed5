"""stepenv's one-regex glob matching agrees with fnmatchcase, pattern by pattern."""

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
