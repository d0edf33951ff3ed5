"""`{{ ... }}` templates: checked statically at validation time, rendered in jinja2's sandbox.

Static checks find every name a template uses (``vars.imgae``, ``steps.build.outputs.image``)
so that mistakes are reported before anything runs; rendering uses SandboxedEnvironment with
StrictUndefined, so Python internals are out of reach and an unknown name is an error.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from jinja2 import (
    StrictUndefined,
    TemplateSyntaxError,
)
from jinja2.exceptions import SecurityError, UndefinedError

from ansflow.shellquote import (
    ShellCode,
    ShellLexer,
    ShellQuoteError,
)
from ansflow.template_bounds import (
    BoundedSandbox,
    BoundExceeded,
    bounded_filter,
    bounded_replace,
)
from ansflow.template_refs import SIMPLE_BLOCK, Reference, references  # noqa: F401
from ansflow.template_shell import ShellQuoting, secret_filter, shell_filter

ROOT_NAMES = ("pipeline", "vars", "env", "stage", "step", "steps", "secrets", "matrix", "run",
              "git")
PIPELINE_KEYS = ("name", "build_number", "run_id", "type")
RUN_KEYS = ("workspace",)  # the run's own directory (ansflow.workspaces)
# The commit a pipeline with a git `source:` checked out (flows.git_source; empty without one).
GIT_KEYS = ("sha", "short_sha", "ref", "branch", "tag", "message", "author", "repository")

# How long one render may take (besides the step's own deadline); sizes: ansflow.template_bounds.
TIMEOUT_ENV = "ANSFLOW_TEMPLATE_TIMEOUT"
DEFAULT_TIMEOUT = 30.0


class TemplateError(Exception):
    """A template that cannot be parsed, names something unknown, or fails to render."""


class TemplateTimeout(TemplateError):
    """A render ran past its deadline (the step's timeout, or the render bound)."""


class TemplateCancelled(TemplateError):
    """The run was cancelled while a template rendered."""


def default_timeout() -> float:
    try:
        value = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if math.isfinite(value) and value > 0 else DEFAULT_TIMEOUT


@dataclass
class RenderSession:
    """What a render learns and needs beyond its context: where derived secrets go (``add``,
    e.g. the run's Masker), and the environment variables that carry secrets referenced
    from shell text (None: this text reaches no shell, secrets are inserted as data)."""

    masker: Any = None
    secret_env: dict[str, str] = field(default_factory=dict)
    deadline: float | None = None
    cancelled: threading.Event | None = None
    secrets_via_env: bool = True

    def secret(self, value: str) -> None:
        if value and self.masker is not None:
            self.masker.add(value)

    def secret_variable(self, value: str) -> str:
        for name, known in self.secret_env.items():
            if known == value:
                return name
        name = f"ANSFLOW_SECRET_{len(self.secret_env) + 1}"
        self.secret_env[name] = value
        return name


def make_environment(shell: str | None = None) -> BoundedSandbox:
    """A fresh sandbox (one per use; nothing global is cached). ``shell``: the text is
    shell text ("sh") or a command split like a shell would ("shlex"), where every `{{ }}`
    value is quoted for the context it lands in."""
    env = BoundedSandbox(undefined=StrictUndefined, autoescape=False,
                         keep_trailing_newline=True, extensions=[ShellQuoting])
    env.ansflow_shell = shell
    for name in ("center", "indent"):
        env.filters[name] = bounded_filter(env.filters[name], name, 1)
    env.ansflow_replace = env.filters["replace"]
    env.filters["replace"] = bounded_replace
    env.globals.pop("lipsum", None)  # lipsum(n=10**9) is an unbounded loop in one call
    env.filters["shell_code"] = lambda value: ShellCode(str(value))
    env.filters["_ansflow_shell"] = shell_filter
    env.filters["_ansflow_secret"] = secret_filter
    return env


def has_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def render_value(value: Any, context: dict[str, Any], session: RenderSession | None = None,
                 shell: str | None = None) -> Any:
    """Render every template string inside ``value`` (dicts and lists walked); ``shell``:
    the strings are shell text (see ``make_environment``)."""
    if isinstance(value, str):
        return (render_string(value, context, session=session, shell=shell)
                if has_template(value) else value)
    if isinstance(value, dict):
        return {k: render_value(v, context, session, shell) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context, session, shell) for v in value]
    return value


def render_config(config: dict[str, Any], context: dict[str, Any], session: RenderSession,
                  shell_fields: dict[tuple, str],
                  yaml_fields: Iterable[tuple] = ()) -> dict[str, Any]:
    """A step's config rendered; the fields in ``shell_fields`` (``("command",)``,
    ``("command", 2)`` for an argv list's `sh -c` text) as shell text of that dialect, the
    fields in ``yaml_fields`` (``("manifest",)``) as YAML text whose `{{ }}` values are
    each one scalar (ansflow.yamltemplate)."""
    out: dict[str, Any] = {}
    yaml_keys = {path[0] for path in yaml_fields if len(path) == 1}
    for key, value in config.items():
        if key in yaml_keys and isinstance(value, str):
            from ansflow.yamltemplate import render_yaml  # noqa: PLC0415 - it imports this

            out[key] = render_yaml(value, context, session=session) \
                if has_template(value) else value
        elif isinstance(value, list) and any(p[0] == key and len(p) == 2 for p in shell_fields):
            out[key] = [render_value(v, context, session, shell_fields.get((key, i)))
                        for i, v in enumerate(value)]
        else:
            out[key] = render_value(value, context, session, shell_fields.get((key,)))
    return out


# How each failure of an evaluation reads ({where} is the template's kind and source);
# the first class that matches wins, anything else "failed".
_FAILURES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (UndefinedError, "undefined name in {where}: {message}"),
    (SecurityError, "{where} refused by the sandbox: {exc}"),
    (TemplateSyntaxError, "{where}: {message}"),
    ((BoundExceeded, ShellQuoteError), "{where} refused: {exc}"),
    (MemoryError, "{where} refused: out of memory"),
    (Exception, "{where} failed: {exc}"),
)


def _evaluate(what: str, source: str, evaluate: Callable[[], Any]) -> Any:
    """Run a template evaluation, turning every failure into one TemplateError."""
    try:
        return evaluate()
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - any evaluation error is the template's
        text = next(t for kind, t in _FAILURES if isinstance(exc, kind))
        raise TemplateError(text.format(where=f"{what} {source!r}", exc=exc,
                                        message=getattr(exc, "message", exc))) from exc


def _guarded(what: str, source: str, session: RenderSession | None,
             run: Callable[[], Any]) -> Any:
    """Run ``run`` (a render) under the session's deadline and cancellation: a line trace
    on the template's own frames stops it at the next line once either is reached."""
    deadline = time.monotonic() + default_timeout()
    if session is not None and session.deadline is not None:
        deadline = min(deadline, session.deadline)
    cancelled = session.cancelled if session is not None else None

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            if cancelled is not None and cancelled.is_set():
                raise TemplateCancelled(f"the run was cancelled while rendering {what} "
                                        f"{source[:80]!r}")
            if time.monotonic() > deadline:
                raise TemplateTimeout(f"rendering {what} {source[:80]!r} ran past its "
                                      "deadline")
        return local

    def calls(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == "<template>" else None

    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        return _evaluate(what, source, run)
    finally:
        sys.settrace(previous)


def render_string(source: str, context: dict[str, Any], *, session: RenderSession | None = None,
                  shell: str | None = None) -> str:
    return render_in(make_environment(shell), source, context, session)


def render_in(env: BoundedSandbox, source: str, context: dict[str, Any],
              session: RenderSession | None) -> str:
    """``source`` rendered in ``env`` (one of make_environment's), bounded in size and time."""
    env.ansflow_session = session

    def run() -> str:
        parts: list[str] = []
        size = 0
        for piece in env.from_string(source).generate(context):
            size += len(piece)
            if size > env.max_chars:
                env._refuse("the rendered value")
            parts.append(piece)
        return "".join(parts)

    return _guarded("template", source, session, run)


def check_shell_template(source: str, shell: str) -> None:
    """Parse ``source`` as shell text (the quoting context of each `{{ }}` is found).

    Raises:
        TemplateError: a value where it cannot be quoted, or `{% %}` across quotes.
    """
    if _check_simple_shell(source, shell):
        return
    env = make_environment(shell)
    try:
        env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from exc


def _check_simple_shell(source: str, shell: str) -> bool:
    """check_shell_template for a template made only of `{{ dotted.name }}` blocks (the common
    case) without a Jinja parse (which doubled validation's time): the same lexer over the same
    literal pieces as ShellQuoting.filter_stream. False when the template is anything more
    (tags, comments, whitespace control, carriage returns Jinja would normalize).

    Raises:
        TemplateError: a value where it cannot be quoted.
    """
    if "{%" in source or "{#" in source or "\r" in source:
        return False
    blocks = list(SIMPLE_BLOCK.finditer(source))
    if source.count("{{") != len(blocks):
        return False
    lexer = ShellLexer(dialect=shell)
    at = 0
    for block in blocks:
        lexer.feed(source[at:block.start()])
        try:
            lexer.context()
        except ShellQuoteError as exc:
            raise TemplateError(f"template syntax error: {exc}") from None
        lexer.after_value()
        at = block.end()
    lexer.feed(source[at:])
    return True


def evaluate_condition(expression: str | bool | None, context: dict[str, Any]) -> bool:
    """The truth of a `when:` condition (bare expression or one `{{ }}` block)."""
    if expression is None:
        return True
    if isinstance(expression, bool):
        return expression
    text = condition_source(expression)
    env = make_environment()
    result = _evaluate("condition", expression, lambda: env.compile_expression(
        text, undefined_to_none=False)(**context))
    if isinstance(result, str):
        return result.strip().lower() not in ("", "false", "0", "no", "off", "none", "null")
    return bool(result)


def condition_source(expression: str) -> str:
    """A `when:` condition without its optional surrounding `{{ }}`."""
    text = expression.strip()
    if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
        return text[2:-2].strip()
    return text
