"""The `source:` key as `ansflow validate` sees it, and the pure parts of a run's git source:
run-form fields, run parameters, the run name label, the environment, the summary lines."""

from __future__ import annotations

import textwrap

import pytest

from ansflow.errors import SpecError
from ansflow.spec.validate import plan_from_bytes


def _plan(body: str):
    text = body.encode()
    return plan_from_bytes(text, "p.yaml", workspace="/tmp", default_name="p")


def _problems(body: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        _plan(body)
    return [str(p) for p in info.value.problems]


STEP = "  steps:\n    - {id: a, type: command, config: {command: \"echo {{ git.sha }}\"}}\n"


def test_a_full_source_is_on_the_plan():
    plan = _plan(textwrap.dedent("""\
        pipeline:
          name: p
          source:
            git: git@git.example.com:team/app.git
            ref: release/1.x
            depth: 0
            submodules: recursive
            lfs: false
            credentials: app-ssh
            timeout: 5m
        """) + STEP)
    assert plan.git_source == {"git": "git@git.example.com:team/app.git", "ref": "release/1.x",
                               "depth": 0, "submodules": "recursive", "lfs": False,
                               "credentials": "app-ssh", "timeout": 300.0}


def test_defaults_and_no_source():
    assert _plan("pipeline:\n  name: p\n  source: {git: /srv/app.git}\n" + STEP).git_source == {
        "git": "/srv/app.git", "ref": None, "depth": 1, "submodules": False, "lfs": False,
        "credentials": None, "timeout": 600.0}
    assert _plan("pipeline:\n  name: p\n" + STEP).git_source is None


def test_every_problem_at_its_position():
    problems = _problems(textwrap.dedent("""\
        pipeline:
          name: p
          source:
            git: "https://bot:hunter2@example.com/x.git"
            ref: "feature..x"
            depth: -1
            submodules: sometimes
            credentials: "Not A Block"
            credentails: x
        """) + STEP)
    text = "\n".join(problems)
    assert "p.yaml:4:10: 'git': the repository URL holds a password" in text
    assert "hunter2" not in text
    assert "p.yaml:5:10: 'ref': the ref 'feature..x' is not a valid git ref name" in text
    assert "p.yaml:6:12: 'depth'" in text
    assert "p.yaml:7:17: 'submodules': expected true, false or 'recursive'" in text
    assert "p.yaml:8:18: 'credentials': 'Not A Block' is not a block name" in text
    assert "p.yaml:9:5: unknown key 'credentails'; did you mean 'credentials'?" in text
    assert len(problems) == 6


@pytest.mark.parametrize("url", ["--upload-pack=touch /tmp/x", "ext::sh -c id", "ftp://x/y",
                                 "https://exa mple.com/x", "relative/path", "{{ vars.url }}",
                                 "$(id)", "x" * 3000])
def test_hostile_urls(url):
    problems = _problems(f"pipeline:\n  name: p\n  source: {{git: {url!r}}}\n" + STEP)
    assert len(problems) == 1 and "'git':" in problems[0]
    assert len(problems[0]) < 400


def test_a_source_takes_the_run_form_names():
    problems = _problems(textwrap.dedent("""\
        pipeline:
          name: p
          source: {git: /srv/app.git}
          variables:
            greeting: hi
            sha: x
        """) + STEP)
    assert problems == ["p.yaml:5:5: variable(s) 'sha': with a `source:`, the run form's "
                        "'ref' and 'sha' fields choose the commit; rename the variable"]


def test_git_names_are_checked():
    problems = _problems("pipeline:\n  name: p\n  source: {git: /srv/app.git}\n"
                         "  steps:\n    - {id: a, type: command, config: {command: "
                         "\"echo {{ git.brnach }}\"}}\n")
    assert "unknown name 'git.brnach'; did you mean 'branch'?" in problems[0]


# -- the run side (pure) ---------------------------------------------------------------------

def test_run_form_fields():
    from ansflow.serving import flow_parameters, parameter_schema

    plan = _plan("pipeline:\n  name: p\n  source: {git: /srv/a.git, ref: main}\n"
                 "  variables: {greeting: hi}\n" + STEP)
    props = parameter_schema(plan)["properties"]
    assert list(props) == ["greeting", "ref", "sha"]
    assert props["ref"]["default"] == "main" and props["ref"]["position"] == 1
    assert "default" not in props["sha"]
    assert flow_parameters(plan) == ["greeting", "ref", "sha"]
    plain = _plan("pipeline:\n  name: p\n  variables: {ref: x}\n" + STEP)
    assert list(parameter_schema(plain)["properties"]) == ["ref"]
    assert flow_parameters(plain) == ["ref"]


def test_split_run_parameters():
    from ansflow.flows.git_source import split_run_parameters

    plan = _plan("pipeline:\n  name: p\n  source: {git: /srv/a.git}\n  variables: {g: 1}\n"
                 + STEP)
    assert split_run_parameters(plan, {"g": 2, "ref": "dev", "sha": None}) == \
        ("dev", None, {"g": 2})
    assert split_run_parameters(plan, None) == (None, None, {})
    plain = _plan("pipeline:\n  name: p\n  variables: {ref: x}\n" + STEP)
    assert split_run_parameters(plain, {"ref": "y"}) == (None, None, {"ref": "y"})


def test_run_label_env_and_summary_lines():
    from dataclasses import replace

    from ansflow.flows.git_source import run_label, with_git
    from ansflow.flows.publish import commit_lines

    plan = _plan("pipeline:\n  name: p\n  source: {git: /srv/a.git}\n"
                 "  env: {ANSFLOW_GIT_TAG: mine}\n" + STEP)
    sha = "0123456789" * 4
    resolved = replace(plan, git_source={**plan.git_source, "resolved": {
        "commit": sha, "ref": "refs/heads/feature/x", "exact": True}})
    assert run_label(resolved) == "feature/x@0123456"
    bare = replace(plan, git_source={**plan.git_source, "resolved": {"commit": sha, "ref": None}})
    assert run_label(bare) == "0123456" and run_label(_plan("pipeline:\n  name: p\n" + STEP)) == ""
    env = with_git(plan, {"sha": sha, "ref": "refs/heads/main", "branch": "main", "tag": "",
                          "repository": "/srv/a.git", "message": "m", "author": "a"}).env
    assert env["ANSFLOW_GIT_SHA"] == sha and env["ANSFLOW_GIT_BRANCH"] == "main"
    assert env["ANSFLOW_GIT_TAG"] == "mine"  # the pipeline's own env wins
    assert "ANSFLOW_GIT_MESSAGE" not in env
    lines = commit_lines({"git": {"sha": sha, "branch": "main", "author": "Eve <e@x>",
                                  "repository": "/srv/a.git",
                                  "message": "![x](http://evil/t.png) <script>\x1b[2J\nmore"}},
                         {})
    assert "- message: \\!\\[x\\]\\(http://evil/t\\.png\\) \\<script\\>" in lines
    assert all("\x1b" not in line and "more" not in line for line in lines)
    assert commit_lines({}, {}) == []
