"""The shell check's fast path (templates of only `{{ dotted.name }}` blocks, no Jinja parse)
gives the same verdict and message as the full parse through ShellQuoting."""

from __future__ import annotations

import pytest

from ansflow.templating import (
    TemplateError,
    _check_simple_shell,
    check_shell_template,
    make_environment,
)

TEMPLATES = [
    "echo {{ vars.v }}",
    "echo '{{ vars.v }}' \"{{ steps.a.outputs.x }}\" {{ vars['k'] }}",
    "echo `{{ vars.v }}`",
    "echo ${x:-{{ vars.v }}}",
    "echo $(( {{ vars.v }} + 1 ))",
    "cat <<{{ vars.v }}\nx\n",
    "echo \\{{ vars.v }}",
    "echo $'{{ vars.v }}'",
    "cat <<EOF\nsay {{ vars.v }}\nEOF\necho {{ vars.w }}",
    "cat <<'EOF'\n{{ vars.v }}\nEOF",
    "a=1 # {{ vars.v }}\necho {{ vars.v }}}",
    "echo }} {{ vars.v }}",
]


def _full(source: str, shell: str) -> str | None:
    try:
        make_environment(shell).parse(source)
    except Exception as exc:  # noqa: BLE001 - the verdict is compared, whatever it is
        return getattr(exc, "message", str(exc))
    return None


@pytest.mark.parametrize("shell", ["sh", "shlex"])
@pytest.mark.parametrize("source", TEMPLATES)
def test_fast_path_agrees_with_the_full_parse(source, shell):
    expected = _full(source, shell)
    try:
        assert _check_simple_shell(source, shell) is True
        got = None
    except TemplateError as exc:
        got = str(exc).removeprefix("template syntax error: ")
    assert got == expected


@pytest.mark.parametrize("source", [
    "{% if vars.v %}echo {{ vars.v }}{% endif %}",  # tags
    "echo {{ vars.v | upper }}",  # more than a dotted name
    "echo {{- vars.v }}",  # whitespace control
    "echo {# c #}{{ vars.v }}",
    "echo a\r\n{{ vars.v }}",  # Jinja normalizes newlines
])
def test_anything_more_takes_the_full_parse(source):
    assert _check_simple_shell(source, "sh") is False
    check_shell_template(source, "sh")  # valid: the full parse passes it
