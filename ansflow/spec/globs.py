"""GitHub's filter patterns for branches, tags and paths (pure; no I/O).

The semantics are those of GitHub Actions' "filter pattern cheat sheet":

- ``*`` matches zero or more characters but not ``/``; ``**`` matches zero or more of any
  character (``docs/**/*.md`` matches ``docs/README.md``: ``**/`` may match no folder);
- ``?`` matches zero or one of the preceding character, ``+`` one or more of it
  (``*.jsx?`` matches ``page.js`` and ``page.jsx``);
- ``[...]`` matches one character listed or in a range; ranges only within ``a-z``,
  ``A-Z`` or ``0-9``;
- ``\\`` makes the next character literal;
- ``!`` at the start of a pattern negates it: patterns are applied in order, a later
  matching pattern decides (a ``!`` pattern excludes what earlier ones included, a positive
  one after it includes again).

A pattern must match the whole name (a branch name without ``refs/heads/``, a tag name
without ``refs/tags/``, a path from the repository root). Where GitHub leaves a case open,
this module refuses the pattern instead of guessing: ``?`` or ``+`` with no character
before it (at the start, after ``*`` or ``/``... a wildcard is not a character), an
unclosed ``[``, an empty ``[]``, a range across kinds (``[a-9]``), a trailing ``\\``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

MAX_PATTERN_CHARS = 512


class PatternError(ValueError):
    """A filter pattern GitHub's syntax does not allow (the message says why)."""


def _range_ok(low: str, high: str) -> bool:
    for kind in (str.isdigit, str.islower, str.isupper):
        if kind(low) and kind(high) and low.isascii() and high.isascii():
            return low <= high
    return False


# A character test: ("lit", c), ("cls", chars, ranges), ("notslash",) or ("any",).
_Test = tuple
_ANY: _Test = ("any",)
_NOT_SLASH: _Test = ("notslash",)


def _accepts(test: _Test, char: str) -> bool:
    kind = test[0]
    if kind == "lit":
        return char == test[1]
    if kind == "notslash":
        return char != "/"
    if kind == "any":
        return True
    return char in test[1] or any(low <= char <= high for low, high in test[2])


def _bracket(pattern: str, start: int) -> tuple[_Test, int]:
    """The class of the ``[...]`` at ``start``, and the index after its ``]``."""
    i = start + 1
    chars: set[str] = set()
    ranges: list[tuple[str, str]] = []
    while i < len(pattern) and pattern[i] != "]":
        char = pattern[i]
        if char == "\\":
            if i + 1 >= len(pattern):
                break
            chars.add(pattern[i + 1])
            i += 2
            continue
        if i + 2 < len(pattern) and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            low, high = char, pattern[i + 2]
            if not _range_ok(low, high):
                raise PatternError(f"range [{low}-{high}] is not allowed: ranges stay within "
                                   "a-z, A-Z or 0-9")
            ranges.append((low, high))
            i += 3
            continue
        if char == "/":
            raise PatternError("'/' inside [...] never matches (a class matches one "
                               "character of a name)")
        chars.add(char)
        i += 1
    if i >= len(pattern):
        raise PatternError(f"'[' at position {start + 1} is not closed by ']'")
    if not chars and not ranges:
        raise PatternError("'[]' lists no character")
    return ("cls", frozenset(chars), tuple(ranges)), i + 1


class Matcher:
    """One compiled pattern: a small automaton run over the name in one pass (no
    backtracking, so ``*a*a*a*b`` against a long name costs length x pattern, not more).

    Tokens: ("one", test) one character; ("opt", test) zero or one; ("star", test) zero or
    more; ("dirs",) zero characters or any characters ending with ``/`` (``**/``).
    """

    def __init__(self, tokens: list[tuple]) -> None:
        self.tokens = tokens

    def _closure(self, states: set[tuple[int, bool]]) -> set[tuple[int, bool]]:
        todo = list(states)
        while todo:
            index, inner = todo.pop()
            if inner or index >= len(self.tokens):
                continue
            kind = self.tokens[index][0]
            more = []
            if kind in ("opt", "star", "dirs"):
                more.append((index + 1, False))
            if kind == "dirs":
                more.append((index, True))
            for state in more:
                if state not in states:
                    states.add(state)
                    todo.append(state)
        return states

    def fullmatch(self, name: str) -> bool:
        states = self._closure({(0, False)})
        end = len(self.tokens)
        for char in name:
            following: set[tuple[int, bool]] = set()
            for index, inner in states:
                if index >= end:
                    continue
                token = self.tokens[index]
                if inner:  # inside `**/`: any character; a `/` may end it
                    following.add((index, True))
                    if char == "/":
                        following.add((index + 1, False))
                elif token[0] in ("one", "opt") and _accepts(token[1], char):
                    following.add((index + 1, False))
                elif token[0] == "star" and _accepts(token[1], char):
                    following.add((index, False))
            if not following:
                return False
            states = self._closure(following)
        return (end, False) in states


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> Matcher:
    """The matcher of one pattern (without its leading ``!``).

    Raises:
        PatternError: the pattern is empty, too long, or not GitHub's syntax.
    """
    if not pattern:
        raise PatternError("a pattern cannot be empty")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"a pattern is at most {MAX_PATTERN_CHARS} characters")
    if "\x00" in pattern:
        raise PatternError("a pattern cannot contain a NUL character")
    tokens: list[tuple] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if pattern.startswith("**", i):
                after = i + 2
                while after < len(pattern) and pattern[after] == "*":
                    after += 1  # *** is ** (any run of any character)
                at_segment_start = i == 0 or pattern[i - 1] == "/"
                if at_segment_start and pattern.startswith("/", after):
                    tokens.append(("dirs",))  # `**/`: any folders, or none
                    after += 1
                else:
                    tokens.append(("star", _ANY))
                i = after
            else:
                tokens.append(("star", _NOT_SLASH))
                i += 1
            continue
        if char in "?+":
            last = tokens[-1] if tokens else None
            if last is None or last[0] != "one" or last[1] == ("lit", "/"):
                raise PatternError(f"{char!r} at position {i + 1} follows no character: in "
                                   f"GitHub's patterns it means "
                                   f"{'zero or one' if char == '?' else 'one or more'} of the "
                                   "preceding character (write \\" + char + " for the "
                                   "character itself)")
            if char == "?":
                tokens[-1] = ("opt", last[1])
            else:
                tokens.append(("star", last[1]))
                tokens.append(("mark",))  # nothing may quantify this again
            i += 1
            continue
        if char == "[":
            test, i = _bracket(pattern, i)
            tokens.append(("one", test))
            continue
        if char == "\\":
            if i + 1 >= len(pattern):
                raise PatternError("a pattern cannot end with '\\' (it escapes the next "
                                   "character)")
            tokens.append(("one", ("lit", pattern[i + 1])))
            i += 2
            continue
        tokens.append(("one", ("lit", char)))
        i += 1
    return Matcher([t for t in tokens if t[0] != "mark"])


def check_patterns(patterns: Iterable[str]) -> None:
    """Raise PatternError naming the first pattern that does not compile."""
    for pattern in patterns:
        body = pattern[1:] if pattern.startswith("!") else pattern
        try:
            compile_pattern(body)
        except PatternError as exc:
            raise PatternError(f"pattern {pattern!r}: {exc}") from None


def matches(pattern: str, name: str) -> bool:
    """Whether ``name`` matches one pattern (a leading ``!`` is not special here)."""
    return compile_pattern(pattern).fullmatch(name)


def filter_matches(patterns: Iterable[str], name: str) -> bool:
    """Whether ``name`` is selected by the ordered ``patterns`` (GitHub's rule: the last
    matching pattern decides; ``!`` patterns deselect)."""
    selected = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if selected and matches(pattern[1:], name):
                selected = False
        elif not selected and matches(pattern, name):
            selected = True
    return selected


def ref_kind(ref: str) -> tuple[str, str]:
    """("branch", name), ("tag", name) or ("other", ref) of a full ref name."""
    if ref.startswith("refs/heads/"):
        return "branch", ref[len("refs/heads/"):]
    if ref.startswith("refs/tags/"):
        return "tag", ref[len("refs/tags/"):]
    return "other", ref


def selects(filters: dict[str, list[str]], ref: str, paths: list[str] | None, *,
            deleted: bool = False) -> bool:
    """Whether a push of ``ref`` changing ``paths`` starts a pipeline with ``filters``
    (``ansflow.spec.triggers.PushFilter.filters``), by GitHub's rules:

    - a deleted ref starts nothing; only branches and tags count;
    - with branch filters but no tag filters a tag push starts nothing, and the other way
      round; with neither, every branch and tag counts;
    - path filters are not evaluated for tags; for a branch, ``paths`` needs one changed
      path selected, ``paths_ignore`` one path not ignored, and no changed path starts
      nothing; ``paths=None`` (the change list is not known, e.g. a truncated webhook
      payload) passes the path filter, as GitHub runs when it cannot compute the diff;
    - the ref filter and the path filter must both pass.
    """
    if deleted:
        return False
    kind, name = ref_kind(ref)
    if kind == "other":
        return False
    has_branch = "branches" in filters or "branches_ignore" in filters
    has_tag = "tags" in filters or "tags_ignore" in filters
    if has_branch or has_tag:
        plural = "branches" if kind == "branch" else "tags"
        if plural in filters:
            if not filter_matches(filters[plural], name):
                return False
        elif f"{plural}_ignore" in filters:
            if filter_matches(filters[f"{plural}_ignore"], name):
                return False
        else:
            return False  # only the other kind is filtered: GitHub does not run
    if kind == "tag" or paths is None:
        return True
    if "paths" in filters:
        return any(filter_matches(filters["paths"], p) for p in paths)
    if "paths_ignore" in filters:
        return any(not filter_matches(filters["paths_ignore"], p) for p in paths)
    return True
