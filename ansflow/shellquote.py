"""Template values in shell text are data: the quoting context of every `{{ }}` block.

A small POSIX-shell lexer reads the literal text of a template (never the values) and says,
at each `{{ }}` block, in which quoting context the value lands: a bare word, inside single
or double quotes, in a heredoc body (quoted or not), or in a comment. ``quote`` then writes
the value so that the shell sees exactly it, whatever it contains. Contexts where no quoting
is both correct and simple (inside backticks, `${...}`, `$((...))`, a heredoc delimiter) are
refused with a message saying what to do instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

POSIX_SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox"})
_WORD_BREAK = set(" \t\n;&|()<>")
# Contexts left only by their closing character, where only a backslash escape matters:
# `${...}`, backquotes and bash's $'...'.
_CLOSED_BY = {"param": "}", "bq": "`", "ansi": "'"}


class ShellQuoteError(Exception):
    """A value that cannot land where the template puts it (said why, and what to do)."""


class ShellCode(str):
    """A value an author marked with `| shell_code`: shell text, inserted as is."""


@dataclass(frozen=True)
class Context:
    """Where a `{{ }}` block's value lands in the shell text."""

    kind: str  # word | sq | dq | heredoc | heredoc_quoted | comment | shlex_word | shlex_dq
    delimiter: str = ""
    strip_tabs: bool = False
    prefix: str | None = None  # in a heredoc: the text before the value on its line


@dataclass
class _Heredoc:
    delimiter: str
    quoted: bool
    strip_tabs: bool


@dataclass
class ShellLexer:
    """Feed the literal text of a template piece by piece; ``context()`` is the quoting
    context at the current point. ``dialect="shlex"`` reads text that Python's shlex splits
    into argv (docker_run's string command): only quotes and backslashes mean anything."""

    dialect: str = "sh"
    stack: list[str] = field(default_factory=lambda: ["top"])
    word_start: bool = True
    escape: bool = False
    pending: list[_Heredoc] = field(default_factory=list)
    heredoc: _Heredoc | None = None
    line: str = ""
    line_dirty: bool = False
    delim: str | None = None  # the delimiter word being read after `<<`
    delim_quoted: bool = False
    delim_quote: str = ""
    delim_tabs: bool = False
    lt: int = 0  # consecutive `<` just seen
    dollar: bool = False
    _just_opened: bool = False

    def state(self) -> tuple:
        return (tuple(self.stack), tuple((h.delimiter, h.quoted) for h in self.pending),
                self.heredoc.delimiter if self.heredoc else None, self.delim is not None,
                self.escape)

    def context(self) -> Context:
        if self.delim is not None:
            raise ShellQuoteError("a heredoc delimiter cannot come from a template")
        if self.escape:
            raise ShellQuoteError("a template value right after a backslash: remove the "
                                  "backslash")
        if self.heredoc is not None:
            kind = "heredoc_quoted" if self.heredoc.quoted else "heredoc"
            return Context(kind, self.heredoc.delimiter, self.heredoc.strip_tabs,
                           None if self.line_dirty else self.line)
        top = self.stack[-1]
        if self.dialect == "shlex":
            return Context({"top": "shlex_word", "sq": "sq", "dq": "shlex_dq",
                            "comment": "comment"}[top])
        if top in ("top", "cmdsub", "paren"):
            return Context("word")
        if top in ("sq", "dq", "comment"):
            return Context(top)
        what = {"bq": "inside backticks (use $(...) instead)",
                "param": "inside ${...} (assign the value to a variable first)",
                "arith": "inside $((...)) (assign the value to a variable first)",
                "ansi": "inside $'...' (use plain single or double quotes)"}[top]
        raise ShellQuoteError(f"a template value {what}")

    def after_value(self) -> None:
        """A value was inserted: the current word goes on, the line is no longer known."""
        self.word_start = False
        self.dollar = False
        self.lt = 0
        if self.heredoc is not None:
            self.line_dirty = True

    def feed(self, text: str) -> None:
        for ch in text:
            self._char(ch)

    # -- the state machine ---------------------------------------------------------------
    def _char(self, ch: str) -> None:  # noqa: C901, PLR0912 - one small state machine
        if self.heredoc is not None:
            self._heredoc_char(ch)
            return
        if self.delim is not None and self._delim_char(ch):
            return
        top = self.stack[-1]
        if self.escape:
            self.escape = False
            self.word_start = False
            return
        if top == "sq":
            if ch == "'":
                self.stack.pop()
            return
        if top == "comment":
            if ch == "\n":
                self.stack.pop()
                self._newline()
            return
        if self.dialect == "shlex":
            self._shlex_char(ch, top)
            return
        dollar, self.dollar = self.dollar, False
        lt, self.lt = self.lt, 0
        if ch == "\\":
            self.escape = True
            return
        if top == "dq":
            if ch == '"':
                self.stack.pop()
            elif ch == "`":
                self.stack.append("bq")
            elif dollar and ch == "(":
                self.stack.append("cmdsub")
                self._just_opened = True
            elif dollar and ch == "{":
                self.stack.append("param")
            elif ch == "$":
                self.dollar = True
            return
        closer = _CLOSED_BY.get(top)
        if closer is not None:
            if ch == closer:
                self.stack.pop()
            return
        if top == "arith":
            if ch == "(":
                self.stack.append("arith")
            elif ch == ")":
                self.stack.pop()
            return
        # top, cmdsub, paren: an unquoted shell context
        just_opened, self._just_opened = self._just_opened, False
        if just_opened and ch == "(":  # `$((`: arithmetic, closed by `))`
            self.stack[-1] = "arith"
            self.stack.append("arith")
            return
        if dollar and ch == "(":
            self.stack.append("cmdsub")
            self._just_opened = True
            self.word_start = True
            return
        if dollar and ch == "'":  # bash's $'...': backslash escapes apply inside
            self.stack.append("ansi")
            return
        if dollar and ch == "{":
            self.stack.append("param")
            return
        if ch == "#" and self.word_start:
            self.stack.append("comment")
            return
        self.word_start = ch in _WORD_BREAK
        if ch == "'":
            self.stack.append("sq")
        elif ch == '"':
            self.stack.append("dq")
        elif ch == "`":
            self.stack.append("bq")
        elif ch == "$":
            self.dollar = True
        elif ch == "(":
            self.stack.append("paren")
        elif ch == ")":
            if len(self.stack) > 1:
                self.stack.pop()
        elif ch == "<":
            self.lt = lt + 1
            if self.lt == 2:
                self.delim, self.delim_quoted, self.delim_quote = "", False, ""
                self.delim_tabs = False
        elif ch == "\n":
            self._newline()

    def _shlex_char(self, ch: str, top: str) -> None:
        if ch == "\\":
            self.escape = True
            return
        if top == "dq":
            if ch == '"':
                self.stack.pop()
            return
        if ch == "#" and self.word_start:
            self.stack.append("comment")
            return
        self.word_start = ch in " \t\n"
        if ch == "'":
            self.stack.append("sq")
        elif ch == '"':
            self.stack.append("dq")

    def _delim_char(self, ch: str) -> bool:
        """Read the word after `<<`; True when ``ch`` was part of it."""
        word = self.delim or ""
        if self.delim_quote:
            if ch == self.delim_quote:
                self.delim_quote = ""
            else:
                self.delim = word + ch
            return True
        if not word and not self.delim_quoted:
            if ch == "-" and not self.delim_tabs:
                self.delim_tabs = True
                return True
            if ch == "<":  # `<<<`: a here-string, not a heredoc
                self.delim = None
                return True
            if ch in " \t":
                return True
        if ch in ("'", '"'):
            self.delim_quoted, self.delim_quote = True, ch
            return True
        if ch == "\\":
            self.delim_quoted = True
            return True
        if ch in _WORD_BREAK:
            if word:
                self.pending.append(_Heredoc(word, self.delim_quoted, self.delim_tabs))
            self.delim = None
            return False
        self.delim = word + ch
        return True

    def _newline(self) -> None:
        self.word_start = True
        if self.pending:
            self.heredoc = self.pending.pop(0)
            self.line, self.line_dirty = "", False

    def _heredoc_char(self, ch: str) -> None:
        doc = self.heredoc
        assert doc is not None
        if ch != "\n":
            self.line += ch
            return
        line = self.line.lstrip("\t") if doc.strip_tabs else self.line
        if line == doc.delimiter and not self.line_dirty:
            self.heredoc = self.pending.pop(0) if self.pending else None
        self.line, self.line_dirty = "", False


def quote(value: str, context: Context) -> str:
    """``value`` written for ``context`` so that the shell reads exactly ``value``.

    Raises:
        ShellQuoteError: a NUL byte, or a value that would end its heredoc.
    """
    if isinstance(value, ShellCode):
        return str(value)
    if "\x00" in value:
        raise ShellQuoteError("the value contains a NUL byte, which no command can receive")
    kind = context.kind
    if kind in ("word", "shlex_word"):
        return "'" + value.replace("'", "'\\''") + "'"
    if kind == "sq":
        return value.replace("'", "'\\''")
    if kind == "dq":
        return "".join("\\" + c if c in '\\"$`' else c for c in value)
    if kind == "shlex_dq":
        return "".join("\\" + c if c in '\\"' else c for c in value)
    if kind == "comment":
        return value.replace("\r", " ").replace("\n", " ")
    if kind in ("heredoc", "heredoc_quoted"):
        _check_heredoc(value, context)
        if kind == "heredoc":
            return "".join("\\" + c if c in "\\$`" else c for c in value)
        return value
    raise ShellQuoteError(f"unknown shell context {kind!r}")  # pragma: no cover


def secret_reference(name: str, context: Context) -> str:
    """A reference to environment variable ``name`` (which holds a secret) for ``context``."""
    kind = context.kind
    if kind == "word":
        return f'"${{{name}}}"'
    if kind == "sq":
        return f"'\"${{{name}}}\"'"
    if kind in ("dq", "heredoc"):
        return f"${{{name}}}"
    if kind == "comment":
        return "***"
    if kind == "heredoc_quoted":
        raise ShellQuoteError(
            f"a secret in a heredoc with a quoted delimiter (<<'{context.delimiter}'), where "
            "nothing expands: use an unquoted delimiter, or a variable outside the heredoc")
    raise ShellQuoteError("a secret cannot go into this command without a shell")


def _check_heredoc(value: str, context: Context) -> None:
    """Refuse a value that could make a line of its heredoc equal the delimiter (the text
    after the value on its last line is not known here, so that side is conservative)."""
    delim = context.delimiter

    def norm(text: str) -> str:
        return text.lstrip("\t") if context.strip_tabs else text

    lines = value.split("\n")
    prefix = context.prefix
    first = lines[0]
    if len(lines) == 1:
        bad = bool(value) and (delim.startswith(norm(prefix + value)) if prefix is not None
                               else value in delim)
    else:
        bad = (norm(prefix + first) == delim if prefix is not None
               else bool(first) and delim.endswith(first))
        bad = bad or any(norm(line) == delim for line in lines[1:-1])
        bad = bad or (bool(lines[-1]) and delim.startswith(norm(lines[-1])))
    if bad:
        raise ShellQuoteError(f"the value could make a line {delim!r}, which would end its "
                              "heredoc early")


def is_posix_shell(program: object) -> bool:
    """Is ``program`` (a name, a path, or a template we cannot know yet) a POSIX shell?"""
    if not isinstance(program, str):
        return False
    if "{{" in program or "{%" in program:
        return True  # decided at run time: quoting is the safe side
    parts = program.split()
    return bool(parts) and parts[0].rsplit("/", 1)[-1] in POSIX_SHELLS


def _shell_c_text(argv: list) -> int | None:
    """In an argv list that runs a POSIX shell with -c (`["sh", "-c", TEXT, ...]`), the
    index of TEXT."""
    if not argv or not is_posix_shell(argv[0]) or "{{" in str(argv[0]):
        return None
    for i, arg in enumerate(argv[1:], start=1):
        if not isinstance(arg, str) or not arg.startswith("-"):
            return None
        if arg != "--" and "c" in arg[1:] and not arg.startswith("--"):
            return i + 1 if i + 1 < len(argv) else None
    return None


def shell_fields(step_type: str, config: dict) -> dict[tuple, str]:
    """The fields of a step's (raw) config that are shell text: ``{("command",): "sh"}``,
    ``{("command", 2): "sh"}`` for an argv list's `sh -c` text, ``"shlex"`` for a string
    that is split into argv like a shell would (docker_run's command and entrypoint)."""
    out: dict[tuple, str] = {}
    keys = {"command": ("command",), "k8s_exec": ("command",), "script": ("script",),
            "docker_run": ("command", "entrypoint")}.get(step_type, ())
    for key in keys:
        value = config.get(key)
        if isinstance(value, list):
            index = _shell_c_text(value)
            if index is not None:
                out[(key, index)] = "sh"
            continue
        if not isinstance(value, str):
            continue
        if step_type == "command" and not is_posix_shell(config.get("shell", "sh")):
            continue
        if step_type == "script" and not is_posix_shell(config.get("interpreter", "sh")):
            continue
        out[(key,)] = "shlex" if step_type == "docker_run" else "sh"
    return out
