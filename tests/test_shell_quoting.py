"""Template values in shell text are data: every `{{ }}` value is quoted for the shell
context it lands in, and real shells (dash and bash) print exactly the value; secrets become
environment references; templates are bounded in size and time."""

import os
import shutil
import subprocess
import threading
import time

import pytest

from ansflow.runtime.base import Masker
from ansflow.shellquote import shell_fields
from ansflow.templating import (
    RenderSession,
    TemplateCancelled,
    TemplateError,
    TemplateTimeout,
    check_shell_template,
    render_string,
)

HOSTILE = [
    "x; touch PWNED",
    "'",
    '"',
    "$(touch PWNED)",
    "`touch PWNED`",
    "\\",
    "a\\",
    "line1\nline2\n; touch PWNED",
    "EOF",
    "$HOME ${HOME} $((1+1))",
    "a'b\"c$d`e\\f\n#g\t h",
    "*",
    "-n",
    "",
    "  two  spaces  ",
    "日本語 ✓",
    "!",
    "~",
]
SHELLS = [s for s in ("dash", "bash") if shutil.which(s)]

# (template, what it prints for value V): each is a real shell quoting context.
CONTEXTS = [
    ("printf '%s' {{ vars.v }}", "{v}"),
    ("printf '%s' pre{{ vars.v }}post", "pre{v}post"),
    ("printf '%s' '{{ vars.v }}'", "{v}"),
    ("printf '%s' 'a {{ vars.v }} b'", "a {v} b"),
    ("printf '%s' \"{{ vars.v }}\"", "{v}"),
    ("printf '%s' \"a $(printf b) {{ vars.v }}\"", "a b {v}"),
    ("printf '%s' \"$(printf '%s' {{ vars.v }})\"", "{v}"),
    ("printf '%s' \"$(printf '%s' \"{{ vars.v }}\")\"", "{v}"),
    ("printf '%s' $(echo x) {{ vars.v }}", "x{v}"),
    ("cat <<EOF\n{{ vars.v }}\nEOF", "{v}\n"),
    ("cat <<EOF\nsay {{ vars.v }} now\nEOF", "say {v} now\n"),
    ("cat <<'EOF'\n{{ vars.v }}\nEOF", "{v}\n"),
    ("cat <<\"END\"\n{{ vars.v }}\nEND", "{v}\n"),
    ("cat <<-EOF\n\t{{ vars.v }}\n\tEOF", "{v}\n"),
    ("# a comment {{ vars.v }}\nprintf ok", "ok"),
    ("printf '%s' {{ vars.v }} # and {{ vars.v }}\nprintf '%s' .", "{v}."),
    ("x={{ vars.v }}; printf '%s' \"$x\"", "{v}"),
    ("f() { printf '%s' {{ vars.v }}; }; f", "{v}"),
    ("( printf '%s' {{ vars.v }} )", "{v}"),
    ("{% if vars.v or true %}printf '%s' {{ vars.v }}{% endif %}", "{v}"),
    ("{% for i in [1, 2] %}printf '%s' '{{ vars.v }}';{% endfor %}", "{v}{v}"),
]


def run_shell(shell: str, text: str, cwd, env: dict | None = None) -> str:
    result = subprocess.run([shell, "-e", "-c", text], cwd=cwd, capture_output=True,
                            env={**os.environ, **(env or {})}, timeout=10, check=False)
    assert result.returncode == 0, (text, result.stderr)
    return result.stdout.decode()


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("template", "expected"), CONTEXTS)
def test_every_hostile_value_is_printed_exactly_in_every_context(shell, template, expected,
                                                                tmp_path):
    for value in HOSTILE:
        if "EOF" in template or "END" in template:
            if value in ("EOF", "END"):
                continue  # refused, see below
        try:
            text = render_string(template, {"vars": {"v": value}}, shell="sh")
        except TemplateError as exc:
            pytest.fail(f"{template!r} refused {value!r}: {exc}")
        out = run_shell(shell, text, tmp_path)
        want = expected.replace("{v}", value)
        if template.startswith("# a comment"):
            want = "ok"
        if "<<-" in template:
            want = expected.replace("{v}", value.replace("\n\t", "\n"))
        assert out == want, (template, value, text)
        assert not (tmp_path / "PWNED").exists(), (template, value, text)


@pytest.mark.parametrize("shell", SHELLS)
def test_a_step_output_is_data_too(shell, tmp_path):
    text = render_string("echo {{ steps.a.outputs.x }}",
                         {"steps": {"a": {"outputs": {"x": "v; touch PWNED"}}}}, shell="sh")
    assert run_shell(shell, text, tmp_path) == "v; touch PWNED\n"
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_shell_code_filter_injects_shell_text_on_purpose(shell, tmp_path):
    text = render_string("printf '%s|' a {{ vars.flags | shell_code }}",
                         {"vars": {"flags": "b c"}}, shell="sh")
    assert run_shell(shell, text, tmp_path) == "a|b|c|"
    # Only as the last filter: anything after it makes the value data again.
    text = render_string("printf '%s|' {{ vars.flags | shell_code | upper }}",
                         {"vars": {"flags": "b c"}}, shell="sh")
    assert run_shell(shell, text, tmp_path) == "B C|"


@pytest.mark.parametrize(("template", "value", "message"), [
    ("echo {{ vars.v }}", "a\x00b", "NUL byte"),
    ("cat <<EOF\n{{ vars.v }}\nEOF", "x\nEOF\ntouch PWNED", "would end its heredoc"),
    ("cat <<'EOF'\n{{ vars.v }}\nEOF", "EOF", "would end its heredoc"),
    ("cat <<-EOF\n{{ vars.v }}\nEOF", "\t\tEOF", "would end its heredoc"),
    ("cat <<EOF\nE{{ vars.v }}\nEOF", "OF", "would end its heredoc"),
    ("cat <<EOF\n{{ vars.v }}\nEOF", "x\nEO", "would end its heredoc"),
    ("cat <<EOF\n{{ vars.v[:0] }}{{ vars.v }}\nEOF", "EOF", "would end its heredoc"),
])
def test_values_that_cannot_be_data_there_are_refused_clearly(template, value, message):
    with pytest.raises(TemplateError, match=message):
        render_string(template, {"vars": {"v": value}}, shell="sh")


@pytest.mark.parametrize(("template", "message"), [
    ("echo `{{ vars.v }}`", "inside backticks"),
    ("echo ${x:-{{ vars.v }}}", r"inside \$\{...\}"),
    ("echo $(( {{ vars.v }} + 1 ))", "inside \\$\\(\\(...\\)\\)"),
    ("echo \"$(( {{ vars.v }} + 1 ))\"", "inside \\$\\(\\(...\\)\\)"),
    ("cat <<{{ vars.v }}\nx\n", "heredoc delimiter"),
    ("echo \\{{ vars.v }}", "after a backslash"),
    ("echo $'{{ vars.v }}'", "inside \\$'...'"),
    ("echo {% if vars.v %}'{% endif %}x'", "same quoting level"),
    ("{% set t = secrets.T %}echo {{ t }}", "use a secret only inside"),
])
def test_contexts_that_cannot_be_quoted_are_refused_at_validation(template, message):
    with pytest.raises(TemplateError, match=message):
        check_shell_template(template, "sh")


@pytest.mark.parametrize("shell", SHELLS)
def test_heredoc_values_that_only_look_like_the_delimiter_pass(shell, tmp_path):
    for template, value, expected in (("cat <<EOF\nsay {{ vars.v }}\nEOF", "EOF", "say EOF\n"),
                                      ("cat <<EOF\n{{ vars.v }}\nEOF", "F", "F\n"),
                                      ("cat <<EOF\n{{ vars.v }}\nEOF", "EOFS", "EOFS\n"),
                                      ("cat <<EOF\n{{ vars.v }}\nEOF", "a\n", "a\n\n")):
        text = render_string(template, {"vars": {"v": value, "a": "x"}}, shell="sh")
        assert run_shell(shell, text, tmp_path) == expected


def test_argv_lists_and_non_shell_fields_are_untouched():
    assert shell_fields("command", {"command": ["echo", "{{ vars.v }}"]}) == {}
    assert shell_fields("command", {"command": ["sh", "-c", "echo {{ vars.v }}"]}) == {
        ("command", 2): "sh"}
    assert shell_fields("docker_run", {"image": "x", "command": ["bash", "-ec", "t"]}) == {
        ("command", 2): "sh"}
    assert shell_fields("command", {"command": "x", "shell": "bash"}) == {("command",): "sh"}
    assert shell_fields("command", {"command": "x", "shell": "pwsh"}) == {}
    assert shell_fields("script", {"script": "x", "interpreter": "python3"}) == {}
    assert shell_fields("script", {"script": "x"}) == {("script",): "sh"}
    assert shell_fields("k8s_exec", {"command": "x"}) == {("command",): "sh"}
    assert shell_fields("docker_run", {"image": "x", "command": "x"}) == {("command",): "shlex"}
    assert shell_fields("docker_build", {"image_name": "x"}) == {}
    # Outside shell text the value is inserted as written.
    assert render_string("{{ vars.v }}", {"vars": {"v": "a'b; c"}}) == "a'b; c"


@pytest.mark.parametrize("shell", SHELLS)
def test_secrets_in_shell_text_are_environment_references(shell, tmp_path):
    masker = Masker(["tok'en $(touch PWNED)"])
    session = RenderSession(masker=masker)
    context = {"secrets": {"T": "tok'en $(touch PWNED)"}}
    template = ("printf '%s|' {{ secrets.T }} '{{ secrets.T }}' \"{{ secrets.T | upper }}\"\n"
                "cat <<EOF\n{{ secrets.T[:5] }}\nEOF")
    text = render_string(template, context, session=session, shell="sh")
    assert "tok" not in text.lower()  # the command line carries no secret
    out = run_shell(shell, text, tmp_path, env=session.secret_env)
    secret = "tok'en $(touch PWNED)"
    assert out == f"{secret}|{secret}|{secret.upper()}|tok'e\n"
    assert not (tmp_path / "PWNED").exists()
    # Derived values are secrets for the rest of the run.
    assert masker(f"{secret.upper()} and tok'e.") == "*** and ***."


def test_a_secret_in_a_quoted_heredoc_is_refused():
    with pytest.raises(TemplateError, match="quoted delimiter"):
        render_string("cat <<'EOF'\n{{ secrets.T }}\nEOF", {"secrets": {"T": "x"}},
                      session=RenderSession(masker=Masker(["x"])), shell="sh")


@pytest.mark.parametrize("template", [
    "{{ secrets.T | upper }}", "{{ secrets.T[:5] }}", "{{ secrets.T | list | join('-') }}",
    "{{ secrets.T | replace('s', 'z') }}", "{{ secrets.T ~ '!' }}", "{{ secrets.T | b64 }}"[:0]
    or "{{ secrets.T | reverse | join }}",
])
def test_values_derived_from_a_secret_are_masked_too(template):
    masker = Masker(["s3cret-token"])
    value = render_string(template, {"secrets": {"T": "s3cret-token"}},
                          session=RenderSession(masker=masker))
    assert value and masker(f"got {value}") == "got ***"


@pytest.mark.parametrize(("template", "message"), [
    ("{{ 9**999999999 }}", "too large"),
    ("{{ 'x' * 2**31 }}", "size limit"),
    ("{{ [1, 2] * 2**31 }}", "size limit"),
    ("{{ (['a' * 1000000] * 1000) | join }}", "size limit"),
    ("{% set x = 'a' * 1000000 %}{% set y = x ~ x %}{{ y | length }}", "size limit"),
    ("{{ 'a' * 1000000 + 'b' * 1000000 }}", "size limit"),
    ("{{ '%999999999d' % 1 }}", "format width"),
    ("{{ '{:>999999999}'.format(1) }}", "format width"),
    ("{{ 'x'.ljust(2**40) }}", "size limit"),
    ("{{ 'x' | center(2**31) }}", "size limit"),
    ("{{ ('a' * 100000) | replace('a', 'a' * 1000) }}", "size limit"),
    ("{% for i in range(100000) %}{% for j in range(100) %}xxxxxxxxxx{% endfor %}{% endfor %}",
     "size limit"),
    ("{{ range(10**9) | list | length }}", "Range too big"),
])
def test_templates_are_bounded_and_fail_fast(template, message):
    started = time.monotonic()
    with pytest.raises(TemplateError, match=message):
        render_string(template, {})
    assert time.monotonic() - started < 5


def test_a_render_past_its_deadline_stops_as_timed_out():
    endless = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(TemplateTimeout, match="past its deadline"):
        render_string(endless, {}, session=RenderSession(deadline=time.monotonic() + 1))
    assert time.monotonic() - started < 3


def test_a_render_stops_when_the_run_is_cancelled():
    endless = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    cancelled = threading.Event()
    threading.Timer(0.5, cancelled.set).start()
    started = time.monotonic()
    with pytest.raises(TemplateCancelled):
        render_string(endless, {}, session=RenderSession(cancelled=cancelled))
    assert time.monotonic() - started < 3


def test_the_size_limit_is_configurable(monkeypatch):
    monkeypatch.setenv("ANSFLOW_TEMPLATE_MAX_CHARS", "10")
    with pytest.raises(TemplateError, match="limit of 10 characters"):
        render_string("{{ 'x' * 11 }}", {})
    assert render_string("{{ 'x' * 10 }}", {}) == "x" * 10
