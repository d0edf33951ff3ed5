"""Shell text in templates: every `{{ }}` value quoted for the shell context it lands in.

:class:`ShellQuoting` (a jinja2 extension) runs a shell lexer over a template's literal text
once at parse time and rewrites each `{{ expr }}` into a call of :func:`shell_filter` with the
quoting context found there (plain word, single or double quotes, a heredoc...); a secret in
shell text travels by an environment variable. In other text, a block using `secrets` has its
result masked (:func:`secret_filter`). ``ansflow.templating`` builds the sandbox with them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jinja2 import TemplateSyntaxError, pass_environment
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream

from ansflow.shellquote import (
    Context,
    ShellCode,
    ShellLexer,
    ShellQuoteError,
    quote,
    secret_reference,
)
from ansflow.template_bounds import BoundedSandbox


@pass_environment
def secret_filter(env: BoundedSandbox, value: Any) -> Any:
    """``_ansflow_secret``: a value derived from a secret, masked for the rest of the run."""
    if env.ansflow_session is not None:
        env.ansflow_session.secret(str(value))
    return value


@pass_environment
def shell_filter(env: BoundedSandbox, value: Any, kind: str, delimiter: str, strip_tabs: bool,
                  secret: bool, prefix: str | None = None) -> str:
    """``_ansflow_shell``: a value quoted for the shell context it lands in (a secret in
    shell text travels by an environment variable instead, where the step allows)."""
    context = Context(kind, delimiter, strip_tabs, prefix)
    text = value if isinstance(value, ShellCode) else str(value)
    session = env.ansflow_session
    if session is not None and session.masker is not None and not secret:
        # A value holding a secret (a step's output, a value derived earlier) is one too.
        secret = session.masker(str(text)) != str(text)
    if secret and session is not None:
        session.secret(str(text))
        if (env.ansflow_shell == "sh" and session.secrets_via_env
                and not isinstance(text, ShellCode)):
            return secret_reference(session.secret_variable(str(text)), context)
    return quote(text, context)


# Tags that could carry a secret's value out of the `{{ }}` block that names it.
_BINDING_TAGS = {"set", "for", "with", "macro", "call", "filter", "import", "from", "include"}


class ShellQuoting(Extension):
    """Rewrites every `{{ expr }}` of shell text into `{{ (expr) | _ansflow_shell(<the
    quoting context there>) }}`, from a shell lexer over the template's literal text, once
    at parse time; in other text, a block using `secrets` gets `| _ansflow_secret` (its
    result is masked for the rest of the run)."""

    def filter_stream(self, stream: TokenStream) -> Iterable[Token]:
        dialect = getattr(self.environment, "ansflow_shell", None)
        lexer = ShellLexer(dialect=dialect) if dialect else None
        tag_state = None
        while not stream.eos:
            token = next(stream)
            if token.type == "data":
                if lexer is not None:
                    lexer.feed(token.value)
                yield token
            elif token.type == "variable_begin":
                inner = []
                while stream.current.type != "variable_end" and not stream.eos:
                    inner.append(next(stream))
                end = next(stream)
                yield token
                yield from self._wrap(inner, lexer, token.lineno)
                yield end
            elif token.type == "block_begin":
                inner = []
                while stream.current.type != "block_end" and not stream.eos:
                    inner.append(next(stream))
                tag = inner[0].value if inner and inner[0].type == "name" else ""
                if _uses_secrets(inner) and tag in _BINDING_TAGS:
                    raise TemplateSyntaxError(
                        f"`secrets` in a {{% {tag} %}} block: use a secret only inside "
                        "{{ }} or {% if %}, so that what is derived from it stays masked",
                        token.lineno)
                if lexer is not None:
                    state = lexer.state()
                    if tag_state is None:
                        tag_state = state
                    elif state != tag_state:
                        raise TemplateSyntaxError(
                            "in shell text, {% %} blocks must all be at the same quoting "
                            "level (not opened outside quotes and closed inside, or in a "
                            "heredoc the other is not in): keep quotes and heredocs whole "
                            "inside each branch", token.lineno)
                    lexer.line_dirty = lexer.heredoc is not None
                yield token
                yield from inner
            else:
                yield token

    def _wrap(self, inner: list[Token], lexer: ShellLexer | None, lineno: int) -> list[Token]:
        secret = _uses_secrets(inner)
        if lexer is None:
            if not secret:
                return inner
            return [Token(lineno, "lparen", "("), *inner, Token(lineno, "rparen", ")"),
                    Token(lineno, "pipe", "|"), Token(lineno, "name", "_ansflow_secret")]
        try:
            context = lexer.context()
        except ShellQuoteError as exc:
            raise TemplateSyntaxError(f"{exc}", lineno) from None
        lexer.after_value()
        args = [Token(lineno, "string", context.kind), Token(lineno, "comma", ","),
                Token(lineno, "string", context.delimiter), Token(lineno, "comma", ","),
                Token(lineno, "name", "true" if context.strip_tabs else "false"),
                Token(lineno, "comma", ","),
                Token(lineno, "name", "true" if secret else "false"),
                Token(lineno, "comma", ","),
                Token(lineno, "string", context.prefix) if context.prefix is not None
                else Token(lineno, "name", "none")]
        return [Token(lineno, "lparen", "("), *inner, Token(lineno, "rparen", ")"),
                Token(lineno, "pipe", "|"), Token(lineno, "name", "_ansflow_shell"),
                Token(lineno, "lparen", "("), *args, Token(lineno, "rparen", ")")]


def _uses_secrets(tokens: list[Token]) -> bool:
    return any(t.type == "name" and t.value == "secrets" for t in tokens)
