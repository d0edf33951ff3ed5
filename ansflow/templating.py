"""`{{ ... }}` templates: checked statically at validation time, rendered in jinja2's sandbox.

Static checks find every name a template uses (``vars.imgae``, ``steps.build.outputs.image``)
so that mistakes are reported before anything runs; rendering uses SandboxedEnvironment with
StrictUndefined, so Python internals are out of reach and an unknown name is an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

ROOT_NAMES = ("pipeline", "vars", "env", "stage", "step", "steps", "secrets")
PIPELINE_KEYS = ("name", "build_number", "run_id", "type")


class TemplateError(Exception):
    """A template that cannot be parsed, names something unknown, or fails to render."""


@dataclass(frozen=True)
class Reference:
    """A dotted name used by a template: ``("steps", "build", "outputs", "image")``."""

    parts: tuple[str, ...]
    lineno: int

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


def make_environment() -> SandboxedEnvironment:
    """A fresh sandbox (one per use; nothing global is cached)."""
    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


def has_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _chain(node: nodes.Node) -> tuple[list[str], bool] | None:
    """The dotted parts of a Name/Getattr/Getitem chain, and whether it is complete."""
    parts: list[str] = []
    complete = True
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem):
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                parts.append(node.arg.value)
            else:
                parts.clear()  # a computed key: only the part before it is known
                complete = False
            node = node.node
        elif isinstance(node, nodes.Name):
            parts.append(node.name)
            return list(reversed(parts)), complete
        else:
            return None


_SIMPLE_BLOCK = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*"
                           r"|\[\s*'[^'\\]*'\s*\]|\[\s*\"[^\"\\]*\"\s*\])*)\s*\}\}")
_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]*|'([^']*)'|\"([^\"]*)\"")


def _simple_references(source: str) -> list[Reference] | None:
    """References of a template made only of `{{ dotted.name }}` blocks (the common case),
    without a full parse; None when the template is anything more."""
    if "{%" in source or "{#" in source:
        return None
    blocks = list(_SIMPLE_BLOCK.finditer(source))
    if source.count("{{") != len(blocks):
        return None
    refs = []
    for block in blocks:
        parts = tuple(m.group(1) if m.group(1) is not None else
                      m.group(2) if m.group(2) is not None else m.group(0)
                      for m in _PART.finditer(block.group(1)))
        refs.append(Reference(parts, source.count("\n", 0, block.start()) + 1))
    return refs


def references(source: str, *, expression: bool = False,
               env: SandboxedEnvironment | None = None) -> list[Reference]:
    """Every name a template (or a bare expression, for `when`) refers to; an access to a
    private attribute or name comes back as ``("<private>", name)``.

    Raises:
        TemplateError: the template does not parse.
    """
    if not expression:
        simple = _simple_references(source)
        if simple is not None:
            return simple
    env = env or make_environment()
    try:
        tree = (env.parse("{{ " + source + " }}") if expression else env.parse(source))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from exc
    refs: list[Reference] = []
    local_names = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for node in tree.find_all((nodes.Getattr, nodes.Name)):
        private = node.attr if isinstance(node, nodes.Getattr) else node.name
        if private.startswith("_"):
            refs.append(Reference(("<private>", private), node.lineno))
    seen: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if id(node) in seen:
            continue
        chain = _chain(node)
        if chain is None:
            continue
        for sub in _inner_chain_nodes(node):
            seen.add(id(sub))
        parts, _ = chain
        if parts and parts[0] not in local_names:
            refs.append(Reference(tuple(parts), node.lineno))
    return refs


def _inner_chain_nodes(node: nodes.Node) -> Iterator[nodes.Node]:
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        node = node.node
        yield node


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """Render every template string inside ``value`` (dicts and lists walked)."""
    if isinstance(value, str):
        return render_string(value, context) if has_template(value) else value
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    return value


def _evaluate(what: str, source: str, evaluate: Callable[[], Any]) -> Any:
    """Run a template evaluation, turning every failure into one TemplateError."""
    try:
        return evaluate()
    except UndefinedError as exc:
        raise TemplateError(f"undefined name in {what} {source!r}: {exc.message}") from exc
    except SecurityError as exc:
        raise TemplateError(f"{what} {source!r} refused by the sandbox: {exc}") from exc
    except TemplateSyntaxError as exc:
        raise TemplateError(f"syntax error in {what} {source!r}: {exc.message}") from exc
    except Exception as exc:  # noqa: BLE001 - any evaluation error is the template's
        raise TemplateError(f"{what} {source!r} failed: {exc}") from exc


def render_string(source: str, context: dict[str, Any]) -> str:
    env = make_environment()
    return _evaluate("template", source, lambda: env.from_string(source).render(context))


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
