"""Safe YAML loading that remembers where every key and value came from.

Mapping keys are always the text written (YAML 1.2's reading of `on:`, `yes:`, `no:`,
`off:`); values keep YAML 1.1's meaning (`yes`/`no`/`on`/`off` are booleans; quote them for
the word). Only plain YAML data is accepted: any explicit tag (`!!python/object`, `!Ref`,
...) is refused without being constructed, duplicate keys are errors, and alias expansion is
bounded so an alias bomb is refused in milliseconds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_NODES = 1_000_000  # the 5 MiB file cap bounds the parse; this bounds alias expansion
MAX_ALIAS_USES = 1_000
_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:timestamp",
}

Path = tuple[str | int, ...]


class Position(NamedTuple):
    """A 1-based line and column (a tuple: a big file has hundreds of thousands)."""

    line: int
    col: int


@dataclass
class Problem:
    """One thing wrong with a pipeline file, at a position."""

    file: str
    position: Position | None
    message: str

    def __str__(self) -> str:
        if self.position is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.position.line}:{self.position.col}: {self.message}"


@dataclass
class Located:
    """The loaded data plus the position of every value and key, by path."""

    data: Any
    values: dict[Path, Position] = field(default_factory=dict)
    keys: dict[Path, Position] = field(default_factory=dict)

    def value_pos(self, path: Path) -> Position | None:
        """Position of the value at ``path``, else of its nearest ancestor."""
        for i in range(len(path), -1, -1):
            pos = self.values.get(path[:i])
            if pos is not None:
                return pos
        return None

    def key_pos(self, path: Path) -> Position | None:
        return self.keys.get(path) or self.value_pos(path)


class YamlError(Exception):
    def __init__(self, position: Position | None, message: str) -> None:
        self.position = position
        super().__init__(message)


def _pos(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, loader: Any, what: str = "pipeline files") -> None:
        self.loader = loader
        self.what = what
        self.count = 0
        self.seen: set[int] = set()
        self.alias_uses = 0
        self.out = Located(data=None)

    def build(self, node: Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise YamlError(_pos(node), f"document too large: more than {MAX_NODES} values "
                                        "(after expanding aliases); refused")
        if id(node) in self.seen:
            self.alias_uses += 1
            if self.alias_uses > MAX_ALIAS_USES:
                raise YamlError(_pos(node), f"too many alias expansions (> {MAX_ALIAS_USES}); "
                                            "refused (alias bomb?)")
        if not isinstance(node, ScalarNode):
            self.seen.add(id(node))
        if node.tag not in _PLAIN_TAGS:
            raise YamlError(_pos(node), f"YAML tag {node.tag!r} is not allowed: {self.what} "
                                        "hold plain data only")
        self.out.values[path] = _pos(node)
        if isinstance(node, MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise YamlError(_pos(key_node), "YAML merge keys ('<<') are not supported")
                key = self.build(key_node, path + ("<key>",))
                if key is None and isinstance(key_node, ScalarNode):
                    raise YamlError(_pos(key_node), "a mapping key cannot be null (`~`, "
                                                    "`null` or nothing); quote it for the word")
                if not isinstance(key, (str, int, float, bool)):
                    raise YamlError(_pos(key_node), "a mapping key must be a plain scalar")
                # Keys are names, as YAML 1.2 (and GitHub's workflow parser) reads them:
                # `on:`, `yes:`, `no:`, `off:` are the words, `0x1F:` and `1_000:` the text
                # written, never a boolean or a number turned back into text.
                key = key_node.value
                if key in result:
                    raise YamlError(_pos(key_node), f"duplicate key {key!r}")
                self.out.keys[path + (key,)] = _pos(key_node)
                result[key] = self.build(value_node, path + (key,))
            self.out.values.pop(path + ("<key>",), None)
            return result
        if isinstance(node, SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        if node.tag == _STR_TAG:
            return node.value  # the common case, without PyYAML's constructor dispatch
        value = self.loader.construct_object(node, deep=True)
        if node.tag == "tag:yaml.org,2002:timestamp":
            return node.value  # a date in a pipeline is text, not a datetime
        return value


def decode_text(raw: bytes) -> str:
    """UTF-8 text of a file, or a YamlError pointing at the first bad byte."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise YamlError(Position(line, col),
                        f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})") from exc
    return text.removeprefix("\ufeff")


_STR_TAG = "tag:yaml.org,2002:str"


@functools.cache
def _loader_class() -> type:
    """libyaml's parser when PyYAML has it (6x faster on big files; same nodes and marks),
    with tag resolution memoized: the composer resolves every scalar through Python regexes,
    and pipeline files repeat the same keys and values thousands of times."""
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class _Loader(base):  # type: ignore[misc,valid-type]
        _resolved: dict[tuple[Any, str, Any], str] = {}

        def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
            if kind is not ScalarNode or not isinstance(value, str) or len(value) > 64:
                return super().resolve(kind, value, implicit)
            key = (kind, value, implicit)
            tag = self._resolved.get(key)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
                if len(self._resolved) < 100_000:
                    self._resolved[key] = tag
            return tag

    return _Loader


def load_located(text: str) -> Located:
    """Parse one YAML document into plain data with positions. Raises YamlError."""
    # libyaml's parser when PyYAML has it (6x faster on big files), same nodes and marks.
    loader = _loader_class()(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(mark.line + 1, mark.column + 1) if mark else None
        raise YamlError(pos, f"YAML syntax error: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise YamlError(None, f"YAML error: {exc}") from exc
    finally:
        loader.dispose()
    if node is None:
        raise YamlError(Position(1, 1), "the file is empty: expected `pipeline:` or `steps:`")
    builder = _Builder(loader)
    try:
        builder.out.data = builder.build(node, ())
    except RecursionError as exc:
        raise YamlError(_pos(node), "document nested too deeply; refused") from exc
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        pos = Position(mark.line + 1, mark.column + 1) if mark else None
        raise YamlError(pos, f"bad value: {exc.problem}") from exc
    return builder.out


def load_plain_all(text: str, what: str = "manifests") -> list[Any]:
    """Every document of a YAML stream (``---`` separated) as plain data, empty ones left
    out, with the same refusals as :func:`load_located` (tags, duplicate keys, merge keys,
    alias bombs, deep nesting); ``what`` names the text in the tag refusal.

    Raises:
        YamlError: the first problem, with its position.
    """
    loader = _loader_class()(text)
    documents: list[Any] = []
    builder = _Builder(loader, what)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            documents.append(builder.build(node, (len(documents),)))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(mark.line + 1, mark.column + 1) if mark else None
        raise YamlError(pos, f"YAML syntax error: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise YamlError(None, "YAML error") from exc
    except RecursionError as exc:
        raise YamlError(None, "document nested too deeply; refused") from exc
    finally:
        loader.dispose()
    return [doc for doc in documents if doc is not None]
