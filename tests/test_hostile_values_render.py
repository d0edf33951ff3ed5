"""Every hostile value in every templated field of every step type, through the renderer and
the step's own config check, as a run does just before the step (no engine): the value
arrives as exactly itself (one shell word in shell text, one YAML scalar in a manifest) or
the step is refused with one clear line. The end-to-end half, on the real engines, is
tests/flows/test_hostile_values.py; the table is tests/hostile_values.py."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hostile_values import (
    HOSTILE,
    TEMPLATE,
    check_known,
    config_for,
    get_leaf,
    new_mark,
    path_text,
    placed,
    step_leaves,
)

from ansflow.errors import StepFailed
from ansflow.shellquote import shell_fields
from ansflow.templating import RenderSession, TemplateError, render_config
from ansflow.yamltemplate import yaml_fields

MARK = new_mark()
MAX_MESSAGE = 2000  # a refusal is one line that names the problem, not the value dumped


def assert_clear(message: str) -> None:
    """One clear refusal: something said, no traceback, not the whole value echoed back."""
    assert message.strip(), "an empty refusal"
    assert "Traceback" not in message and 'File "' not in message, message[:MAX_MESSAGE]
    assert len(message) <= MAX_MESSAGE, f"a {len(message)}-character message: " \
                                        f"{message[:300]!r}..."


def render(step_type: str, config: dict, value: str) -> dict:
    """The config as a step sees it: rendered, then checked by its model again."""
    from ansflow.flows.step_task import validate_config_for

    rendered = render_config(config, {"vars": {"v": value}}, RenderSession(),
                             shell_fields(step_type, config), yaml_fields(step_type, config))
    validate_config_for(step_type, rendered)
    return rendered


class Escaped(Exception):
    """Something other than ansflow's own refusal came out (a run would show a traceback)."""


def outcome(step_type: str, config: dict, value: str) -> dict | str:
    """The rendered config, or the refusal's message.

    Raises:
        Escaped: any other exception.
    """
    try:
        return render(step_type, config, value)
    except (TemplateError, StepFailed) as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - what the step would not catch
        raise Escaped(f"{type(exc).__name__}: {str(exc)[:200]}") from exc


LEAVES = step_leaves()


def test_the_table_covers_every_registered_step_type_and_field():
    from ansflow.steptypes import REGISTRY

    covered = {t for t, _ in LEAVES}
    assert covered == {n for n, e in REGISTRY.items() if e.implemented}
    missing = [f"{t}.{path_text(p)}" for t, p in LEAVES if config_for(t, p) is None]
    assert not missing, f"no base config takes a template at {missing}: add one to " \
                        "tests/hostile_values.py BASE"
    # The fields the hardening findings name are among them.
    names = {(t, path_text(p)) for t, p in LEAVES}
    assert {("k8s_delete", "resource_name"), ("ansible", "extra_vars.hvkey"),
            ("k8s_deploy", "manifest"), ("command", "command"),
            ("docker_push", "registry")} <= names


# (value, "type.field") -> the fix it waits on (fnmatch patterns; strict both ways).
KNOWN: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_every_templated_field_gets_the_value_literally_or_refuses_it(hostile):
    value = hostile.value(MARK)
    problems: dict[str, str] = {}
    for step_type, path in LEAVES:
        case = f"{step_type}.{path_text(path)}"
        config = config_for(step_type, path)
        where = placed(step_type, path)
        try:
            result = outcome(step_type, config, value)
        except Escaped as exc:
            problems[case] = f"escaped the step: {exc}"
            continue
        if isinstance(result, str):
            try:
                assert_clear(result)
            except AssertionError as exc:
                problems[case] = f"unclear refusal: {exc}"
            continue
        got = get_leaf(result, where)
        shell = shell_fields(step_type, config).get(where[:1]) if len(where) == 1 else None
        if shell is not None:
            ok = _one_word(got) == value
        elif where in yaml_fields(step_type, config):
            ok = _one_scalar(got) == value
        else:
            ok = got == value
        if not ok:
            problems[case] = f"got {str(got)[:120]!r}"
    assert not Path(MARK).exists()
    check_known(KNOWN, hostile.name, problems)


def _one_scalar(text: str) -> object:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _one_word(text: str) -> str | None:
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    return words[0] if len(words) == 1 else None


# ---- values inside structured text: shell text and manifests -------------------------------

SHELL_CONTEXTS = (
    "printf '%s' {v} > out",
    "printf '%s' '{v}' > out",
    'printf \'%s\' "{v}" > out',
    "cat > out <<EOF\n{v}\nEOF\n",
    "# {v}\ntrue",
)


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
@pytest.mark.parametrize("text", SHELL_CONTEXTS, ids=["bare", "single", "double", "heredoc",
                                                     "comment"])
def test_a_value_in_shell_text_is_data_when_the_shell_runs_it(hostile, text, tmp_path):
    import subprocess

    value = hostile.value(MARK)
    config = {"command": text.replace("{v}", TEMPLATE)}
    result = outcome("command", config, value)
    if isinstance(result, str):
        assert_clear(result)
        return
    proc = subprocess.run(["sh", "-e", "-c", result["command"]], cwd=tmp_path,
                          capture_output=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not Path(MARK).exists()
    if "printf" in text:
        assert (tmp_path / "out").read_bytes() == value.encode("utf-8", "surrogateescape")
    elif "EOF" in text:
        assert (tmp_path / "out").read_bytes() == (value + "\n").encode("utf-8",
                                                                         "surrogateescape")


MANIFESTS = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hv}\ndata:\n  value: {v}\n",
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hv}\ndata:\n  value: \"{v}\"\n",
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hv}\ndata: {value: {v}}\n",
)


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
@pytest.mark.parametrize("text", MANIFESTS, ids=["block", "quoted", "flow"])
def test_a_value_in_a_manifest_is_one_scalar(hostile, text, tmp_path):
    from ansflow.runtime.k8s_manifests import load_documents
    from ansflow.spec.steps import K8sDeployConfig

    value = hostile.value(MARK)
    config = {"manifest": text.replace("{v}", TEMPLATE)}
    try:
        rendered = render("k8s_deploy", config, value)
        docs = load_documents(K8sDeployConfig.model_validate(rendered), str(tmp_path))
    except (TemplateError, StepFailed) as exc:
        assert_clear(str(exc))
        return
    assert [d.get("kind") for d in docs] == ["ConfigMap"], docs
    assert docs[0]["metadata"] == {"name": "hv"} or docs[0]["metadata"].get("name") == "hv"
    assert docs[0]["data"] == {"value": value}
