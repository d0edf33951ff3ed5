"""Pure checks of run-form fields against Kubernetes' own rules (names, labels, keys,
quantities, ports), run before any request so that a refused form changes nothing.

Each check appends a readable problem to a :class:`Problems` list; :meth:`Problems.raise_if_any`
raises one StepFailed naming every problem at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ansflow.engines.kube_names import (
    dns1035_label_problem,
    dns1123_label_problem,
    dns1123_subdomain_problem,
    label_value_problem,
)
from ansflow.errors import StepFailed

_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# resource.Quantity's grammar: a decimal number, then a binary/decimal suffix or an exponent.
_QUANTITY = re.compile(
    r"^(?:\d+(?:\.\d*)?|\.\d+)(?:Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_INT_OR_PERCENT = re.compile(r"^(?:\d{1,9}|\d{1,3}%)$")
MAX_SHOWN = 200  # a user's value quoted in a message is cut to this


def shown(value: object) -> str:
    """``repr`` of a form value for a message: printable, one line, bounded."""
    text = repr(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "...'"


@dataclass
class Problems:
    """What is wrong with one form, collected so that the user sees it all at once."""

    what: str  # e.g. "configmap"
    items: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.items.append(message)

    def raise_if_any(self) -> None:
        """Raises:
            StepFailed: one or more problems were found (all named; nothing was changed)."""
        if not self.items:
            return
        listed = "; ".join(self.items[:20])
        more = f"; ... and {len(self.items) - 20} more" if len(self.items) > 20 else ""
        raise StepFailed(f"{self.what}: refused, nothing was changed: {listed}{more}",
                         hint="correct the form's fields and run it again")


def _check_name(problems: Problems, where: str, value: str,
                problem: Callable[[str], str | None], rule: str) -> None:
    # The API server's rules (ansflow.engines.kube_names), told in the form's words.
    if not isinstance(value, str) or not value:
        problems.add(f"{where} is empty")
    elif problem(value):
        problems.add(f"{where} {shown(value)} {rule}")


def check_dns_label(problems: Problems, where: str, value: str) -> None:
    """A DNS-1123 label (a namespace's name): lower-case alphanumerics and '-', <= 63."""
    _check_name(problems, where, value, dns1123_label_problem,
                "is not a valid name: at most 63 lower-case letters, digits and '-', "
                "starting and ending with a letter or digit")


def check_dns_1035(problems: Problems, where: str, value: str) -> None:
    """A DNS-1035 label (a Service's name): as a DNS-1123 label, starting with a letter."""
    _check_name(problems, where, value, dns1035_label_problem,
                "is not a valid service name: at most 63 lower-case letters, digits and "
                "'-', starting with a letter and ending with a letter or digit")


def check_subdomain(problems: Problems, where: str, value: str) -> None:
    """A DNS-1123 subdomain (most objects' names): DNS labels joined by '.', <= 253."""
    _check_name(problems, where, value, dns1123_subdomain_problem,
                "is not a valid name: lower-case letters, digits, '-' and '.', starting "
                "and ending with a letter or digit, at most 253 characters")


def _qualified_name(value: str) -> bool:
    return bool(value) and label_value_problem(value) is None


def check_labels(problems: Problems, where: str, labels: dict[str, str] | None) -> None:
    """Label keys (``[prefix/]name``: prefix a DNS subdomain, name <= 63 of [A-Za-z0-9-_.])
    and values (empty, or <= 63 of the same characters, alphanumeric at both ends)."""
    for key, value in (labels or {}).items():
        prefix, slash, name = str(key).rpartition("/")
        if not slash:
            prefix, name = "", str(key)
        bad_prefix = bool(slash) and (not prefix or dns1123_subdomain_problem(prefix) is not None)
        if bad_prefix or not _qualified_name(name):
            problems.add(f"{where}: key {shown(key)} is not a valid label key: an optional "
                         "DNS-subdomain prefix and '/', then at most 63 letters, digits, '-', "
                         "'_' and '.', starting and ending with a letter or digit")
        if not isinstance(value, str):
            problems.add(f"{where}: the value of {shown(key)} must be text")
        elif value and not _qualified_name(value):
            problems.add(f"{where}: value {shown(value)} of {shown(key)} is not a valid label "
                         "value: at most 63 letters, digits, '-', '_' and '.', starting and "
                         "ending with a letter or digit (or empty)")


def check_data_keys(problems: Problems, where: str, keys: list[str]) -> None:
    """ConfigMap / Secret keys: letters, digits, '-', '_' and '.', <= 253, not '.'/'..'."""
    for key in keys:
        if not isinstance(key, str) or not key or len(key) > 253 \
                or not _DATA_KEY.match(key) or key in (".", ".."):
            problems.add(f"{where}: key {shown(key)} is not a valid key: at most 253 letters, "
                         "digits, '-', '_' and '.' (and not '.' or '..')")


def check_env_names(problems: Problems, where: str, names: list[str]) -> None:
    """Environment variable names: a letter, '_', '-' or '.', then those and digits."""
    for name in names:
        if not isinstance(name, str) or not _ENV_NAME.match(name) or len(name) > 253:
            problems.add(f"{where}: {shown(name)} is not a valid environment variable name "
                         "(letters, digits, '_', '-' and '.', not starting with a digit)")


def check_quantity(problems: Problems, where: str, value: str) -> None:
    """A resource quantity such as ``500m``, ``2``, ``1.5``, ``256Mi``, ``1Gi`` (empty: unset)."""
    if value in ("", None):
        return
    if not isinstance(value, str) or len(value) > 64 or not _QUANTITY.match(value.strip()):
        problems.add(f"{where} {shown(value)} is not a quantity: write e.g. 500m or 2 (CPU), "
                     "256Mi or 1Gi (memory)")


def check_port(problems: Problems, where: str, value: object, *, optional: bool = False) -> None:
    """A port number 1-65535 (None allowed when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        problems.add(f"{where} {shown(value)} is not a port number (1-65535)")


def check_int_or_percent(problems: Problems, where: str, value: str) -> None:
    """A rolling update's maxSurge / maxUnavailable: a count (``1``) or a percentage (``25%``)."""
    if not isinstance(value, str) or not _INT_OR_PERCENT.match(value.strip()):
        problems.add(f"{where} {shown(value)} is not a count or a percentage (e.g. 1 or 25%)")


def int_or_percent(value: str) -> int | str:
    """``"1"`` -> 1, ``"25%"`` stays text (as the API's IntOrString wants it)."""
    value = value.strip()
    return value if value.endswith("%") else int(value)


def check_port_name(problems: Problems, where: str, value: str | None) -> None:
    """A port's name (IANA service name): <= 15 lower-case letters, digits and '-'."""
    if value in (None, ""):
        return
    if not isinstance(value, str) or len(value) > 15 or not _IANA_SVC_NAME.match(value) \
            or "--" in value or not any(c.isalpha() for c in value):
        problems.add(f"{where} {shown(value)} is not a valid port name: at most 15 lower-case "
                     "letters, digits and '-', with at least one letter")


def check_object_name(problems: Problems, where: str, value: str) -> None:
    """Any kind's object name, as far as a URL path needs: no '/', '%', '?', '#', no spaces
    or control characters, not '.' or '..', at most 253 characters (RBAC names such as
    ``system:node`` pass)."""
    if not isinstance(value, str) or not value:
        problems.add(f"{where} is empty")
    elif len(value) > 253 or value in (".", "..") or any(
            c in "/%?#" or c.isspace() or not c.isprintable() for c in value):
        problems.add(f"{where} {shown(value)} is not an object name (no '/', '%', '?', '#' "
                     "or spaces, at most 253 characters)")


def require_namespace(what: str, namespace: str | None) -> str:
    """The namespace an operation acts in, checked as a DNS-1123 label.

    Raises:
        StepFailed: no namespace, or not a valid namespace name.
    """
    problems = Problems(what)
    if not namespace:
        problems.add("no namespace given (choose one, or set the cluster block's namespace)")
    else:
        check_dns_label(problems, "namespace", namespace)
    problems.raise_if_any()
    return namespace
