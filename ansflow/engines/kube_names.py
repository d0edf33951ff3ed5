"""Names, namespaces, container names and label selectors, checked by the API server's own
rules before any request (pure: no I/O, no client import).

A name becomes a URL path segment, and the HTTP client collapses ``..``: an unchecked
``x/../../kube-system/secrets/v`` would reach another namespace or kind. The rules are
apimachinery's (``k8s.io/apimachinery/pkg/util/validation``, ``.../api/validation/path``,
``.../labels/selector.go``), so a name the cluster would accept passes and nothing else:

- DNS-1123 subdomain: most kinds (Pods, Deployments, ConfigMaps, custom resources...).
- DNS-1123 label: namespaces and container names. DNS-1035 label: Services.
- path segment (not ``.``/``..``, no ``/`` or ``%``): what the API server requires of every
  name; the only rule for RBAC kinds (``system:controller:x`` is a valid ClusterRole).

The ``*_problem`` functions answer what is wrong (``None`` when nothing); the ``check_*``
functions raise :class:`KubeNameError` naming the field, the value and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ansflow.engines.kube_errors import KubeNameError

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
QUALIFIED_NAME_MAX = 63  # a label key's name part, and a label value
_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE = re.compile(f"{_LABEL}")
_DNS1123_SUBDOMAIN_RE = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_DNS1035_LABEL_RE = re.compile("[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME_RE = re.compile("([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_INTEGER_RE = re.compile(r"[-+]?[0-9]+")

_SUBDOMAIN_TEXT = ("a DNS-1123 subdomain: at most 253 lower case letters, digits, '-' or '.', "
                   "starting and ending with a letter or digit (e.g. 'my-app.v2')")
_LABEL_TEXT = ("a DNS-1123 label: at most 63 lower case letters, digits or '-', starting and "
               "ending with a letter or digit (e.g. 'my-app')")
_DNS1035_TEXT = ("a DNS-1035 label: at most 63 lower case letters, digits or '-', starting "
                 "with a letter and ending with a letter or digit (e.g. 'my-svc')")
_SEGMENT_TEXT = "not '.' or '..', without '/', '%' or control characters"

# Kinds whose names follow another rule than a DNS-1123 subdomain (the API server's).
_KIND_RULES = {
    "Namespace": "dns1123-label",
    "Service": "dns1035-label",
    "Role": "path-segment",
    "ClusterRole": "path-segment",
    "RoleBinding": "path-segment",
    "ClusterRoleBinding": "path-segment",
}


def path_segment_problem(value: str) -> str | None:
    """What every name must be to travel as one URL path segment (the API server's
    ``IsValidPathSegmentName``, plus no control characters)."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not value:
        return "must not be empty"
    if value in (".", ".."):
        return f"may not be {value!r}"
    for bad in ("/", "%"):
        if bad in value:
            return f"may not contain {bad!r}"
    if _CONTROL_RE.search(value):
        return "may not contain control characters (NUL, newline...)"
    return None


def _pattern_problem(value: str, pattern: re.Pattern, limit: int, text: str) -> str | None:
    problem = path_segment_problem(value)
    if problem is None and len(value) > limit:
        problem = f"is {len(value)} characters long"
    if problem is None and not pattern.fullmatch(value):
        return f"it must be {text}"
    return None if problem is None else f"{problem}; it must be {text}"


def dns1123_subdomain_problem(value: str) -> str | None:
    return _pattern_problem(value, _DNS1123_SUBDOMAIN_RE, DNS1123_SUBDOMAIN_MAX, _SUBDOMAIN_TEXT)


def dns1123_label_problem(value: str) -> str | None:
    return _pattern_problem(value, _DNS1123_LABEL_RE, DNS1123_LABEL_MAX, _LABEL_TEXT)


def dns1035_label_problem(value: str) -> str | None:
    return _pattern_problem(value, _DNS1035_LABEL_RE, DNS1123_LABEL_MAX, _DNS1035_TEXT)


def _segment_rule_problem(value: str) -> str | None:
    problem = path_segment_problem(value)
    return None if problem is None else f"{problem}; it must be {_SEGMENT_TEXT}"


RULES: dict[str, Callable[[str], str | None]] = {
    "dns1123-subdomain": dns1123_subdomain_problem,
    "dns1123-label": dns1123_label_problem,
    "dns1035-label": dns1035_label_problem,
    "path-segment": _segment_rule_problem,
}


def name_rule(kind: str | None) -> str:
    """The rule (a key of :data:`RULES`) the API server applies to names of `kind`; a
    DNS-1123 subdomain for kinds it does not list (custom resources included)."""
    return _KIND_RULES.get(kind or "", "dns1123-subdomain")


def name_problem(value: str, kind: str | None = None) -> str | None:
    """What is wrong with `value` as the name of an object of `kind` (None: nothing)."""
    return RULES[name_rule(kind)](value)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...' ({len(str(value))} characters)"


def _checked(value: str, problem: str | None, field: str, what: str) -> str:
    """``value`` when there is no ``problem``; else the refusal naming field, value and rule."""
    if problem:
        raise KubeNameError(f"{field} {_show(value)} is not a valid Kubernetes {what}: "
                            f"{problem}")
    return value


def check_name(value: str, kind: str | None = None, field: str = "resource name") -> str:
    """`value` if it is a valid name for objects of `kind`.

    Raises:
        KubeNameError: it is not (the message names `field`, the value and the rule).
    """
    what = f"name for a {kind}" if kind else "name"
    return _checked(value, name_problem(value, kind), field, what)


def check_namespace(value: str, field: str = "namespace") -> str:
    """`value` if it is a valid namespace name (a DNS-1123 label).

    Raises:
        KubeNameError: it is not.
    """
    return _checked(value, dns1123_label_problem(value), field, "namespace")


def check_container(value: str, field: str = "container") -> str:
    """`value` if it is a valid container name (a DNS-1123 label).

    Raises:
        KubeNameError: it is not.
    """
    return _checked(value, dns1123_label_problem(value), field, "container name")


def label_key_problem(key: str) -> str | None:
    """A label key: ``[prefix/]name``, the prefix a DNS-1123 subdomain, the name at most 63
    letters, digits, '-', '_' or '.', starting and ending with a letter or digit."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return f"label key {_show(key)}: the prefix before '/' is empty"
        if "/" in prefix:
            return f"label key {_show(key)} has more than one '/'"
        problem = dns1123_subdomain_problem(prefix)
        if problem:
            return f"label key {_show(key)}: its prefix {problem}"
    if not name or len(name) > QUALIFIED_NAME_MAX or not _QUALIFIED_NAME_RE.fullmatch(name):
        return (f"label key {_show(key)} must be an optional DNS-1123 subdomain and '/', "
                "then at most 63 letters, digits, '-', '_' or '.', starting and ending with a "
                "letter or digit")
    return None


def label_value_problem(value: str) -> str | None:
    """A label value: empty, or at most 63 letters, digits, '-', '_' or '.', starting and
    ending with a letter or digit."""
    if value and (len(value) > QUALIFIED_NAME_MAX or not _QUALIFIED_NAME_RE.fullmatch(value)):
        return (f"label value {_show(value)} must be empty or at most 63 letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit")
    return None


# The selector lexer's operator characters and tokens (apimachinery labels/selector.go).
_SPECIAL = "=!(),<>"
_OPERATORS = ("!=", "==", "=", "!", "(", ")", ",", ">", "<")
_KEYWORDS = ("in", "notin")


def _tokens(text: str) -> list[str]:
    tokens, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif ch in _SPECIAL:
            op = next(o for o in _OPERATORS if text.startswith(o, i))
            tokens.append(op)
            i += len(op)
        else:
            j = i
            while j < len(text) and text[j] not in _SPECIAL and text[j] not in " \t\r\n":
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


def _is_word(token: str | None) -> bool:
    return token is not None and token not in _OPERATORS and token not in _KEYWORDS


def _requirement(tokens: list[str], pos: int) -> tuple[int, str | None]:
    """Parse one requirement at `pos`: (the position after it, a problem or None)."""
    def at(i: int) -> str | None:
        return tokens[i] if i < len(tokens) else None

    negated = at(pos) == "!"
    pos += negated
    key = at(pos)
    if not _is_word(key):
        return pos, f"expected a label key, found {_show(key) if key else 'the end'}"
    problem = label_key_problem(key)
    if problem or negated:
        return pos + 1, problem
    op = at(pos + 1)
    if op in (None, ","):
        return pos + 1, None
    if op in ("=", "==", "!="):
        value = at(pos + 2)
        if value in (None, ","):
            return pos + 2, None
        if not _is_word(value):
            return pos + 2, f"expected a value after {_show(key)[1:-1]}{op}, found {_show(value)}"
        return pos + 3, label_value_problem(value)
    if op in (">", "<"):
        value = at(pos + 2)
        if not _is_word(value) or not _INTEGER_RE.fullmatch(value):
            return pos + 2, f"{key}{op} needs an integer, found {value or 'the end'!r}"
        return pos + 3, None
    if op in _KEYWORDS:
        if at(pos + 2) != "(":
            return pos + 2, f"expected '(' after {key} {op}"
        pos += 3
        while at(pos) != ")":
            value = at(pos)
            if not _is_word(value):
                return pos, f"expected a value or ')' in {key} {op} (...), found " \
                            f"{value or 'the end'!r}"
            problem = label_value_problem(value)
            if problem:
                return pos, problem
            pos += 1
            if at(pos) == ",":
                pos += 1
            elif at(pos) != ")":
                return pos, f"expected ',' or ')' in {key} {op} (...), found " \
                            f"{at(pos) or 'the end'!r}"
        return pos + 1, None
    return pos + 1, f"expected an operator (=, ==, !=, in, notin, >, <) after {key}, found {op!r}"


def selector_problem(selector: str) -> str | None:
    """What is wrong with a label selector as the API server parses it (None: nothing):
    comma-separated ``key``, ``!key``, ``key=v``, ``key==v``, ``key!=v``,
    ``key in (a,b)``, ``key notin (a,b)``, ``key>N``, ``key<N``."""
    if not isinstance(selector, str):
        return f"must be a string, not {type(selector).__name__}"
    if _CONTROL_RE.search(selector):
        return "may not contain control characters (NUL...)"
    tokens = _tokens(selector)
    pos = 0
    while pos < len(tokens):
        pos, problem = _requirement(tokens, pos)
        if problem:
            return problem
        if pos < len(tokens):
            if tokens[pos] != ",":
                return f"expected ',' between requirements, found {tokens[pos]!r}"
            pos += 1
            if pos == len(tokens):
                return "ends with ','"
    return None


def check_selector(value: str, field: str = "label selector") -> str:
    """`value` if the API server would parse it as a label selector.

    Raises:
        KubeNameError: it would not.
    """
    return _checked(value, selector_problem(value), field, "label selector")
