"""YAML text with `{{ }}` templates (k8s_deploy's inline `manifest:`): every value is one scalar.

Rendering the text and parsing the result would let a value write YAML: a newline and an
indented key add a field (`securityContext: {privileged: true}`), `---` adds a document, a
flow mapping replaces a scalar by a mapping. So the structure is decided before any value
is inserted:

1. the template is rendered with `{% %}` blocks as usual (they are the author's code: loops
   and conditions may generate list items and whole blocks), but every `{{ }}` writes a
   placeholder (a random token per render) and its value is kept aside;
2. the text, holding only the author's characters and placeholders, is parsed as YAML;
3. each placeholder in a parsed scalar (value or key) is replaced by its value.

Typing: a plain (unquoted, untagged) scalar that is exactly one `{{ }}` takes the value's own
type when it is a number, a boolean or null (`replicas: {{ vars.replicas }}` with an integer
variable gives an integer); a string value stays a string whatever it looks like
(`"3"`, `"true"`, `"{a: b}"`); `| int` / `| float` make one a number. A `{{ }}` among other
text, or in a quoted or block scalar, gives text. A list or mapping value is refused (write
the structure in the manifest, with `{% for %}` where it repeats). An explicit tag
(`!!int {{ x }}`) reads the value's text as that tag.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import yaml
from jinja2 import ChainableUndefined, Undefined, pass_environment
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from yaml.nodes import MappingNode, ScalarNode

from ansflow.templating import RenderSession, TemplateError, make_environment, render_in

YAML_FIELDS = {"k8s_deploy": ("manifest",)}
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TYPED = (bool, int, float, type(None))


def yaml_fields(step_type: str, config: dict) -> list[tuple]:
    """The fields of a step's (raw) config that are YAML text: ``[("manifest",)]``."""
    return [(key,) for key in YAML_FIELDS.get(step_type, ())
            if isinstance(config.get(key), str)]


class _Slots:
    """The values of one render's `{{ }}` blocks, and the placeholder each wrote."""

    def __init__(self, source: str) -> None:
        nonce = secrets.token_hex(8)
        while nonce in source.lower():  # never a token the author's own text holds
            nonce = secrets.token_hex(8)
        self.nonce = nonce
        self.values: list[Any] = []
        self.chars = 0
        self.checking = False
        self.pattern = re.compile(rf"ansflow{nonce}s(\d+)e")

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"ansflow{self.nonce}s{len(self.values) - 1}e"

    def text(self, value: Any) -> str:
        return value if type(value) is str else str(value)

    def substitute(self, text: str) -> str:
        """``text`` with every placeholder replaced by its value's text (values are never
        scanned again: a `{{ }}` or a placeholder-like string in a value stays as it is)."""
        return self.pattern.sub(lambda m: self.text(self.values[int(m.group(1))]), text)


@pass_environment
def _slot_filter(env: Any, value: Any) -> str:
    slots: _Slots = env.ansflow_slots
    if isinstance(value, Undefined) and not slots.checking:
        value._fail_with_undefined_error()
    if slots.checking:
        return slots.add("")  # validation: no values yet, only where they go
    if isinstance(value, str) and type(value) is not str:
        value = str(value)  # Markup and other str subclasses: plain text
    slots.chars += len(value) if isinstance(value, str) else 0
    if slots.chars > env.max_chars:
        env._refuse("the rendered values")
    return slots.add(value)


class YamlSlots(Extension):
    """Rewrites every `{{ expr }}` into `{{ (expr) | _ansflow_slot }}` (after ShellQuoting,
    which marks a secret's value for masking first)."""

    def filter_stream(self, stream: TokenStream):
        while not stream.eos:
            token = next(stream)
            if token.type != "variable_begin":
                yield token
                continue
            inner = []
            while stream.current.type != "variable_end" and not stream.eos:
                inner.append(next(stream))
            end = next(stream)
            line = token.lineno
            yield token
            yield Token(line, "lparen", "(")
            yield from inner
            yield from (Token(line, "rparen", ")"), Token(line, "pipe", "|"),
                        Token(line, "name", "_ansflow_slot"))
            yield end


class _SlotLoader(yaml.SafeLoader):
    """PyYAML's safe loader, putting each placeholder's value into the scalar holding it."""

    slots: _Slots

    def compose_scalar_node(self, anchor: Any) -> ScalarNode:
        event = self.peek_event()
        node = super().compose_scalar_node(anchor)
        node.ansflow_plain = event.tag in (None, "!") and event.style is None  # type: ignore
        return node

    def construct_scalar(self, node: Any) -> Any:
        value = super().construct_scalar(node)
        return self.slots.substitute(value) if isinstance(value, str) else value

    def construct_slot_str(self, node: ScalarNode) -> Any:
        match = self.slots.pattern.fullmatch(node.value)
        if match and getattr(node, "ansflow_plain", False):
            value = self.slots.values[int(match.group(1))]
            if isinstance(value, (str, *_TYPED)):
                return value
            if isinstance(value, dict | list | tuple | set):
                raise TemplateError(
                    f"a `{{{{ }}}}` value at line {node.start_mark.line + 1} is a "
                    f"{'mapping' if isinstance(value, dict) else 'list'}: a value inserted into "
                    "YAML text is one scalar; write the structure in the text itself (with "
                    "{% for %} where it repeats)")
            return self.slots.text(value)
        return self.construct_scalar(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, bool] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            templated = bool(self.slots.pattern.search(key_node.value))
            try:
                clash = key in seen and (templated or seen[key])
            except TypeError:
                continue  # unhashable: PyYAML's own error below names it
            if clash:
                raise TemplateError(
                    f"the mapping at line {node.start_mark.line + 1} gets a key twice, from a "
                    "`{{ }}` value: a value may change its own key, never replace another "
                    "entry")
            seen[key] = seen.get(key, False) or templated
        return super().construct_mapping(node, deep=deep)


_SlotLoader.add_constructor(_STR_TAG, _SlotLoader.construct_slot_str)


def _check_whole(value: Any, slots: _Slots) -> None:
    """No placeholder may survive (a filter block that changed one, or a macro's output
    holding another `{{ }}` inserted by a `{{ }}`)."""
    stack = [value]
    nonce = slots.nonce
    seen: set[int] = set()  # aliases share a node: walk it once (no billion laughs)
    while stack:
        item = stack.pop()
        if isinstance(item, dict | list):
            if id(item) in seen:
                continue
            seen.add(id(item))
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and nonce in item.lower():
            raise TemplateError(
                "a `{{ }}` value's place was changed by the template (a {% filter %} block, "
                "or a macro's output inserted with `{{ }}`): in YAML text each `{{ }}` is one "
                "scalar, structure comes from the text and {% %} blocks")


def _slot_environment(source: str) -> tuple[Any, _Slots]:
    env = make_environment()
    env.add_extension(YamlSlots)
    env.filters["_ansflow_slot"] = _slot_filter
    slots = _Slots(source)
    env.ansflow_slots = slots
    return env, slots


def _yaml_problem(what: str, exc: yaml.YAMLError) -> TemplateError:
    # Only the position and the problem: the exception's text quotes the lines.
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or "a syntax error"
    return TemplateError(f"{what} is not valid YAML{at} (before its `{{{{ }}}}` values are "
                         f"inserted): {problem}")


def check_yaml_template(source: str, what: str = "manifest") -> None:
    """At validation, before any value exists: the YAML syntax of a template without `{% %}`
    blocks (its structure is the text's alone, whatever the values); one with blocks, or
    whose expressions need real values to render, is checked when it renders.

    Raises:
        TemplateError: the text is not YAML.
    """
    if "{%" in source:
        return
    env, slots = _slot_environment(source)
    env.undefined = ChainableUndefined
    slots.checking = True
    try:
        text = render_in(env, source, {}, None)
    except TemplateError:
        return  # an expression needing a value (arithmetic...): checked at run time
    try:
        for _ in yaml.compose_all(text, Loader=yaml.SafeLoader):
            pass
    except yaml.YAMLError as exc:
        raise _yaml_problem(what, exc) from None


def render_documents(source: str, context: dict[str, Any], *,
                     session: RenderSession | None = None, what: str = "manifest") -> list:
    """The YAML documents of the template ``source``, each `{{ }}` value one scalar.

    Raises:
        TemplateError: the template fails to render, the text is not YAML (position and
            problem only: the text may hold secrets), a list or mapping value, a value
            making a key the mapping already has.
    """
    env, slots = _slot_environment(source)
    text = render_in(env, source, context, session)
    loader = _SlotLoader(text)
    loader.slots = slots
    try:
        docs = []
        while loader.check_data():
            docs.append(loader.get_data())
    except yaml.YAMLError as exc:
        raise _yaml_problem(what, exc) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # An explicit tag whose value's text is not of that type (`!!int {{ x }}`, x="a").
        raise TemplateError(f"{what}: a value does not fit its YAML tag: "
                            f"{type(exc).__name__}") from None
    finally:
        loader.dispose()
    _check_whole(docs, slots)
    return docs


def render_yaml(source: str, context: dict[str, Any], *, session: RenderSession | None = None,
                what: str = "manifest") -> str:
    """``source`` rendered as YAML text whose `{{ }}` values are each one scalar; the
    documents are written out again as YAML (each value quoted as the emitter needs).

    Raises:
        TemplateError: see render_documents.
    """
    docs = render_documents(source, context, session=session, what=what)
    # ASCII only: PyYAML's emitter writes a raw U+0085 into a single-quoted scalar with
    # allow_unicode, which its own parser then reads as a line break.
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=False, width=1 << 30)
