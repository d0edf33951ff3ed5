"""Secret masking: every secret value, and the common encodings of it, shown as ``***``.

One :class:`Masker` per pipeline run holds the run's secrets (Prefect Secret blocks, the
passwords / tokens / keys of the credential blocks its steps load, values a step declares
with ``::add-mask::``). It is applied to every line a step logs, to step outputs, error
messages and the run's artifacts and event. Beyond the value itself it masks:

- each line (of at least :data:`MIN_LINE_PART` characters) of a multi-line secret, since
  output is logged line by line (a PEM key, a kubeconfig, a JSON document);
- base64 (standard and URL-safe, at each of the three byte alignments the value can have
  inside a longer base64 text), URL percent-encoding, JSON string escaping and the
  shell-quoted / backslash-escaped forms.

The line splitter (``ansflow.engines.lines``) asks the masker where its patterns occur so
that it never cuts a long line inside a secret.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import shlex
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from ansflow.errors import StepFailed

MIN_SECRET_LEN = 4  # shorter values are refused at load (they would mask every "1" in a log)
MIN_LINE_PART = 8  # lines of a multi-line secret at least this long are masked on their own
MASK = "***"
_SHELL_SPECIAL = re.compile(r"([^A-Za-z0-9_./:=@%+,-])")
_DQ_SPECIAL = re.compile(r'(["\\$`])')


def short_secret_error(what: str, value: str | None) -> str | None:
    """The message refusing ``value`` as a secret (None when it is long enough)."""
    if value is None or len(value) >= MIN_SECRET_LEN:
        return None
    return (f"{what} is {len(value)} character(s) long: secrets must have at least "
            f"{MIN_SECRET_LEN} characters (ansflow masks every occurrence of a secret in the "
            f"logs, and a shorter one would hide ordinary text)")


class SecretTooShort(StepFailed):
    """A secret shorter than MIN_SECRET_LEN: refused, since masking it would hide ordinary
    text."""


def mask_checked(masker: Masker | None, values: Iterable[tuple[str, str | None]],
                 note: str = "") -> None:
    """Refuse short secrets, then mask: when any value is too short, nothing is added and
    :class:`SecretTooShort` names the first one (``note`` appended); else every value is
    added to ``masker`` (None: only the check). Each value comes as (what it is, value),
    ``what`` naming it for the message ("secret 'db'", "cluster 'prod': its token").

    Raises:
        SecretTooShort: a value shorter than MIN_SECRET_LEN characters.
    """
    values = list(values)
    for what, value in values:
        refused = short_secret_error(what, value)
        if refused:
            raise SecretTooShort(refused + note)
    if masker is not None:
        for _what, value in values:
            if value:
                masker.add(value)


def utf8(value: str) -> bytes:
    """``value`` as bytes, also when it holds lone surrogates: an undecodable byte read with
    Python's surrogateescape (os.environ, file names) becomes that byte again; any other lone
    surrogate is encoded as is, so masking never fails on a value."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def encodings(value: str) -> set[str]:
    """``value`` and the forms in which it commonly reaches a log."""
    forms = {value}
    raw = utf8(value)
    n = len(raw)
    for b64 in (base64.b64encode, base64.urlsafe_b64encode):
        for k in range(3):
            # With k bytes before it, the value fills base64 characters ceil(8k/6) up to
            # floor(8(k+n)/6): those do not depend on the surrounding bytes.
            text = b64(b"\0" * k + raw).decode("ascii")
            forms.add(text[-(-8 * k // 6): (8 * (k + n)) // 6])
        forms.add(b64(raw).decode("ascii"))  # the whole encoding, with its padding
    forms.add(quote(raw, safe=""))
    forms.add(quote(raw))
    forms.add(quote_plus(raw))
    forms.add(json.dumps(value)[1:-1])
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    forms.add(shlex.quote(value))
    forms.add(value.replace("'", "'\\''"))  # inside sh single quotes (set -x traces)
    forms.add(value.replace("'", "'\"'\"'"))  # inside shlex.quote's single quotes
    forms.add(_SHELL_SPECIAL.sub(r"\\\1", value))
    forms.add(_DQ_SPECIAL.sub(r"\\\1", value))
    return {f for f in forms if len(f) >= MIN_SECRET_LEN}


class Masker:
    """Replaces every secret value (and its encodings) with ``***`` in text about to be shown.

    Thread-safe: steps of one run add values and mask text concurrently.
    """

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._patterns: frozenset[str] = frozenset()
        self._compiled: tuple[tuple[str, ...], tuple[bytes, ...], int] | None = None
        for secret in secrets or []:
            self.add(secret)

    def add(self, value: str) -> None:
        """Mask ``value`` from now on, with its encodings and, when it spans several lines,
        each of its lines of at least MIN_LINE_PART characters.

        Values shorter than MIN_SECRET_LEN characters are ignored (loading refuses them).
        """
        if not isinstance(value, str):
            value = str(value)
        if len(value) < MIN_SECRET_LEN:
            return
        new = encodings(value)
        if "\n" in value or "\r" in value:
            for line in re.split(r"\r\n|\r|\n", value):
                line = line.strip()
                if len(line) >= MIN_LINE_PART:
                    new |= encodings(line)
        with self._lock:
            if not new <= self._patterns:
                self._patterns = self._patterns | new
                self._compiled = None  # compiled again at the next use

    def _get(self) -> tuple[tuple[str, ...], tuple[bytes, ...], int] | None:
        compiled = self._compiled
        if compiled is not None or not self._patterns:
            return compiled
        with self._lock:
            if self._compiled is None and self._patterns:
                # Longest first: a secret that contains another is masked whole.
                ordered = tuple(sorted(self._patterns, key=lambda p: (-len(p), p)))
                encoded = tuple(sorted({utf8(p) for p in ordered},
                                       key=lambda p: (-len(p), p)))
                self._compiled = (ordered, encoded, len(encoded[0]))
            return self._compiled

    def __call__(self, text: str) -> str:
        compiled = self._get()
        if compiled is None or not text:
            return text
        # Most text holds no secret: a substring test per pattern (fast, in C) finds the few
        # that occur, and only those go into the (cached) regex that replaces them.
        hits = tuple(p for p in compiled[0] if p in text)
        return _regex(hits).sub(MASK, text) if hits else text

    def __bool__(self) -> bool:
        return bool(self._patterns)

    @property
    def longest_bytes(self) -> int:
        """Length in UTF-8 bytes of the longest pattern (0 without secrets)."""
        compiled = self._get()
        return compiled[2] if compiled is not None else 0

    def straddling(self, data: bytes | bytearray, cut: int) -> list[tuple[int, int]]:
        """The (start, end) of pattern occurrences in ``data`` that a cut at ``cut`` would
        split (start < cut < end); ``data`` must hold ``longest_bytes`` past the cut."""
        compiled = self._get()
        found = []
        for pattern in compiled[1] if compiled is not None else ():
            start = data.find(pattern, max(0, cut - len(pattern) + 1), cut + len(pattern) - 1)
            if start != -1 and start < cut:
                found.append((start, start + len(pattern)))
        return found


@functools.lru_cache(maxsize=512)
def _regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(p) for p in patterns))


def as_masker(secrets: Masker | dict[str, str] | Iterable[str] | None) -> Masker:
    """A Masker for ``secrets``: a Masker as is, a dict by its values, a list of values."""
    if isinstance(secrets, Masker):
        return secrets
    if isinstance(secrets, dict):
        return Masker(v for v in secrets.values() if isinstance(v, str))
    return Masker(secrets or [])
