"""The names a template uses (``vars.imgae``, ``steps.build.outputs.image``), found
statically so that mistakes are reported before anything runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jinja2 import TemplateSyntaxError, nodes

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment


@dataclass(frozen=True)
class Reference:
    """A dotted name used by a template: ``("steps", "build", "outputs", "image")``."""

    parts: tuple[str, ...]
    lineno: int

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


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


SIMPLE_BLOCK = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*"
                           r"|\[\s*'[^'\\]*'\s*\]|\[\s*\"[^\"\\]*\"\s*\])*)\s*\}\}")
_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]*|'([^']*)'|\"([^\"]*)\"")


def _simple_references(source: str) -> list[Reference] | None:
    """References of a template made only of `{{ dotted.name }}` blocks (the common case),
    without a full parse; None when the template is anything more."""
    if "{%" in source or "{#" in source:
        return None
    blocks = list(SIMPLE_BLOCK.finditer(source))
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
    from ansflow.templating import TemplateError, make_environment

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
