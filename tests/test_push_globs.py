"""GitHub's filter patterns and `on.push` rules, checked against the examples GitHub's
documentation gives (workflow syntax: "Filter pattern cheat sheet", "Using filters")."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from ansflow.spec.globs import PatternError, compile_pattern, filter_matches, matches
from ansflow.spec.triggers import On, PushFilter, selects

# (pattern, names it matches, names it does not) from the cheat sheet's ref table.
REF_EXAMPLES = [
    ("feature/*", ["feature/my-branch", "feature/your-branch"], ["feature/a/b", "feature"]),
    ("feature/**", ["feature/beta-a/my-branch", "feature/your-branch",
                    "feature/mona/the/octocat"], ["feature", "features/x"]),
    ("main", ["main"], ["main2", "x/main"]),
    ("releases/mona-the-octocat", ["releases/mona-the-octocat"], ["releases/mona"]),
    ("*", ["main", "releases"], ["releases/v1"]),
    ("**", ["all/the/branches", "every/tag", "main"], []),
    ("*feature", ["mona-feature", "feature", "ver-10-feature"], ["feature/x", "a/feature"]),
    ("v2*", ["v2", "v2.0", "v2.9"], ["v3", "v2/x"]),
    ("v[12].[0-9]+.[0-9]+", ["v1.10.1", "v2.0.0"], ["v3.0.0", "v1.a.0", "v1..0"]),
]

# The cheat sheet's path table.
PATH_EXAMPLES = [
    ("*", ["README.md", "server.rb"], ["docs/README.md"]),
    ("*.jsx?", ["page.js", "page.jsx"], ["page.jsxx", "src/page.js"]),
    ("**", ["all/the/files.md", "a"], []),
    ("*.js", ["app.js", "index.js"], ["js/index.js"]),
    ("**.js", ["index.js", "js/index.js", "src/js/app.js"], ["index.ts"]),
    ("docs/*", ["docs/README.md", "docs/file.txt"], ["docs/mona/octocat.txt"]),
    ("docs/**", ["docs/README.md", "docs/mona/octocat.txt"], ["README.md", "docs"]),
    ("docs/**/*.md", ["docs/README.md", "docs/mona/hello-world.md",
                      "docs/a/markdown/file.md"], ["docs/a.txt", "other/x.md"]),
    ("**/docs/**", ["docs/hello.md", "dir/docs/my-file.txt", "space/docs/plan/space.doc"],
     ["documents/x", "dir/mydocs/x"]),
    ("**/README.md", ["README.md", "js/README.md"], ["README.mdx", "js/NOT-README.md"]),
    ("**/*src/**", ["a/src/app.js", "my-src/code/js/app.js"], ["src.js"]),
    ("**/*-post.md", ["my-post.md", "path/their-post.md"], ["post.md"]),
    ("**/migrate-*.sql", ["migrate-10909.sql", "db/migrate-v1.0.sql",
                          "db/sept/migrate-v1.sql"], ["migrate.sql"]),
]


@pytest.mark.parametrize(("pattern", "good", "bad"), REF_EXAMPLES + PATH_EXAMPLES)
def test_cheat_sheet_examples(pattern, good, bad):
    for name in good:
        assert matches(pattern, name), (pattern, name)
    for name in bad:
        assert not matches(pattern, name), (pattern, name)


def test_negation_follows_order_as_in_the_cheat_sheet():
    # "'*.md', '!README.md'": hello.md matches; README.md and docs/hello.md do not.
    two = ["*.md", "!README.md"]
    assert filter_matches(two, "hello.md")
    assert not filter_matches(two, "README.md")
    assert not filter_matches(two, "docs/hello.md")
    # "'*.md', '!README.md', README*": a later positive pattern includes again.
    three = ["*.md", "!README.md", "README*"]
    for name in ("hello.md", "README.md", "README.doc"):
        assert filter_matches(three, name), name
    assert not filter_matches(three, "docs/hello.md")


def test_branch_negation_example_from_using_filters():
    # GitHub's example: releases/** but not releases/**-alpha.
    patterns = ["releases/**", "!releases/**-alpha"]
    assert filter_matches(patterns, "releases/10")
    assert filter_matches(patterns, "releases/beta/mona")
    assert not filter_matches(patterns, "releases/10-alpha")
    assert not filter_matches(patterns, "releases/beta/3-alpha")
    assert not filter_matches(patterns, "main")


def test_bang_is_special_only_at_the_start_and_brackets_and_escapes_are_literal_classes():
    assert matches("a!b", "a!b")
    assert matches("[CB]at", "Cat") and matches("[CB]at", "Bat") and not matches("[CB]at", "Rat")
    assert matches("[1-2]00", "100") and matches("[1-2]00", "200")
    assert not matches("[1-2]00", "300")
    assert matches(r"a\*b", "a*b") and not matches(r"a\*b", "axb")
    assert matches(r"what\?", "what?")
    assert matches("a.b", "a.b") and not matches("a.b", "axb")  # no regex leaks through
    assert matches("(x)|y", "(x)|y") and not matches("(x)|y", "y")
    assert matches("colou?r", "color") and matches("colou?r", "colour")
    assert matches("go+gle", "google") and not matches("go+gle", "ggle")


@pytest.mark.parametrize(("pattern", "why"), [
    ("", "empty"), ("?x", "follows no character"), ("*?", "follows no character"),
    ("a/+", "follows no character"), ("[abc", "not closed"), ("[]", "no character"),
    ("[a-9]", "range"), ("[z-a]", "range"), ("x\\", "cannot end"), ("a\x00b", "NUL"),
    ("[a/b]", "'/'"), ("a" * 600, "at most"),
])
def test_patterns_github_does_not_define_are_refused_with_the_reason(pattern, why):
    with pytest.raises(PatternError, match=why):
        compile_pattern(pattern)


def test_hostile_patterns_and_names_stay_linear():
    # Nested stars over a long name: the translation has no catastrophic backtracking case
    # that matters at the bounded pattern length.
    start = time.perf_counter()
    assert not matches("*a*a*a*a*a*a*a*a*b", "a" * 2000)
    assert not matches("**/**/**/**/x", "/".join(["a"] * 500))
    assert matches("{{ x }}", "{{ x }}") and matches("$(id)", "$(id)")
    assert matches("é*", "été") and matches("..", "..") and not matches("..", "ab")
    assert time.perf_counter() - start < 5


def _filters(**keys) -> dict:
    return PushFilter.model_validate(keys).filters()


def test_selects_branch_tag_and_path_rules_as_github():
    both = _filters(branches=["main", "release/*"], tags=["v*"], paths=["src/**"])
    assert selects(both, "refs/heads/main", ["src/a.py"])
    assert selects(both, "refs/heads/release/1", ["src/x/y.c", "README"])
    assert not selects(both, "refs/heads/release/1/x", ["src/a.py"])  # * stops at /
    assert not selects(both, "refs/heads/main", ["README"])  # no path selected
    assert not selects(both, "refs/heads/main", [])  # no changed file: no run
    assert selects(both, "refs/tags/v1.0", [])  # paths are not evaluated for tags
    assert not selects(both, "refs/tags/x1", ["src/a"])
    assert not selects(both, "refs/heads/main", ["src/a"], deleted=True)
    assert not selects(both, "refs/notes/commits", ["src/a"])
    assert selects(both, "refs/heads/main", None)  # change list unknown: runs


def test_only_branch_filters_means_no_tag_runs_and_the_other_way_round():
    assert not selects(_filters(branches=["**"]), "refs/tags/v1", [])
    assert not selects(_filters(tags=["**"]), "refs/heads/main", ["a"])
    assert selects(_filters(tags_ignore=["nightly-*"]), "refs/tags/v1", [])
    assert not selects(_filters(tags_ignore=["nightly-*"]), "refs/tags/nightly-3", [])
    every = _filters()
    assert selects(every, "refs/heads/x/y", ["a"]) and selects(every, "refs/tags/t", [])


def test_ignore_lists():
    f = _filters(branches_ignore=["wip/**"], paths_ignore=["docs/**", "*.md"])
    assert not selects(f, "refs/heads/wip/a/b", ["src/a"])
    assert not selects(f, "refs/heads/main", ["docs/a", "README.md"])  # all ignored
    assert selects(f, "refs/heads/main", ["docs/a", "src/b"])  # one not ignored


def test_on_shorthands_and_dashed_spellings():
    assert On.model_validate("push").push.filters() == {}
    assert On.model_validate(["push"]).push.filters() == {}
    assert On.model_validate({"push": None}).push.filters() == {}
    dashed = On.model_validate({"push": {"branches-ignore": "tmp", "paths-ignore": ["x"]}})
    assert dashed.push.filters() == {"branches_ignore": ["tmp"], "paths_ignore": ["x"]}


@pytest.mark.parametrize(("value", "why"), [
    ({"push": {"branches": ["a"], "branches_ignore": ["b"]}}, "not both"),
    ({"push": {"paths": ["a"], "paths-ignore": ["b"]}}, "not both"),
    ({"pull_request": {}}, "pull_request"),
    ({"push": {"branches": ["?bad"]}}, "follows no character"),
    ({"push": {"branches": ["x"] * 101}}, "at most 100"),
    ({"push": {"repository": "https://x/\nrm -rf"}}, "one line"),
    ({"push": {"repository": "relative/path"}}, "not a repository URL"),
    ({"push": {"repository": "https://host/../x"}}, "'..'"),
    ({"push": {"tags": [1]}}, "string"),
    ([{"push": 1}], "event names"),
])
def test_bad_on_values_are_refused_clearly(value, why):
    with pytest.raises(ValidationError, match=why):
        On.model_validate(value)
