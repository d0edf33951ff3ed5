"""Bounds of one template render: jinja2's sandbox with capped arithmetic and sizes, so no
template runs for minutes or allocates gigabytes before a step's timeout could start.
(ansflow.templating builds its environments from BoundedSandbox; a refused operation raises
BoundExceeded, which templating turns into a TemplateError.)"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from typing import Any

from jinja2 import nodes, pass_environment, pass_eval_context
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import SandboxedEnvironment

MAX_CHARS_ENV = "ANSFLOW_TEMPLATE_MAX_CHARS"
DEFAULT_MAX_CHARS = 1024 * 1024
MAX_POWER_BITS = 4096  # `**` results beyond this many bits are refused


class BoundExceeded(Exception):
    """A size bound refused an operation (turned into a TemplateError)."""


def max_chars() -> int:
    try:
        return max(1, int(os.environ.get(MAX_CHARS_ENV, DEFAULT_MAX_CHARS)))
    except ValueError:
        return DEFAULT_MAX_CHARS



def _size(value: Any) -> int | None:
    """The characters a value adds when repeated (a list counts its strings' lengths)."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(len(v) if isinstance(v, (str, bytes)) else 1 for v in value)
    return None


class BoundedSandbox(SandboxedEnvironment):
    """jinja2's sandbox with bounded arithmetic and sizes: `**` exponents, `*` repetition,
    `+` concatenation, `%` formatting widths and str-method widths are capped, so no
    template runs for minutes or allocates gigabytes before a timeout could start."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = None  # set below (the class is defined after this one)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_chars = max_chars()
        self.ansflow_session: Any = None  # ansflow.templating.RenderSession
        self.ansflow_shell: str | None = None  # "sh" | "shlex" | None: what the text is

    def ansflow_concat(self, parts: tuple) -> str:
        texts = [str(p) for p in parts]
        if sum(len(t) for t in texts) > self.max_chars:
            self._refuse("the concatenation")
        return "".join(texts)

    def _refuse(self, what: str) -> None:
        raise BoundExceeded(
            f"{what} is over the template size limit of {self.max_chars} characters")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limit = self.max_chars
        if operator == "**" and isinstance(left, (int, float)) and isinstance(right, (int, float)):
            if abs(left) > 1 and right > 0 and right * math.log2(abs(left)) > MAX_POWER_BITS:
                raise BoundExceeded(
                    f"{left!r} ** {right!r} is too large (over {MAX_POWER_BITS} bits)")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                n = _size(seq)
                if n is not None and isinstance(times, int) and n * times > limit:
                    self._refuse(f"repeating a sequence of {n} items {times} times")
            if isinstance(left, int) and isinstance(right, int) and \
                    left.bit_length() + right.bit_length() > MAX_POWER_BITS:
                raise BoundExceeded("the product is too large")
        if operator == "+":
            a, b = _size(left), _size(right)
            if a is not None and b is not None and a + b > limit:
                self._refuse("the concatenation")
        if operator == "%" and isinstance(left, str):
            _check_widths(left, limit)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        target = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            for arg in (*args, *kwargs.values()):
                if isinstance(arg, int) and arg > __self.max_chars:
                    __self._refuse(f"str.{target.__name__}({arg})")
            if target.__name__ in ("format", "format_map"):
                _check_widths(owner, __self.max_chars)
            if target.__name__ == "replace" and len(args) >= 2:
                _check_replace(owner, args[1], __self)
        return super().call(__context, __obj, *args, **kwargs)


def _check_widths(fmt: str, limit: int) -> None:
    for digits in re.findall(r"\d+", fmt):
        if len(digits) > 12 or int(digits) > limit:
            raise BoundExceeded(f"a format width of {digits} is over the template size limit of "
                         f"{limit} characters")


def _check_replace(text: Any, new: Any, env: BoundedSandbox) -> None:
    if (len(str(text)) + 1) * len(str(new)) + len(str(text)) > env.max_chars:
        env._refuse("the replacement's result")


@pass_eval_context
def bounded_replace(eval_ctx: Any, value: Any, old: Any, new: Any,
                     count: int | None = None) -> Any:
    env = eval_ctx.environment
    _check_replace(value, new, env)
    return env.ansflow_replace(eval_ctx, value, old, new, count)


def bounded_filter(original: Callable, name: str, width_arg: int) -> Callable:
    @pass_environment
    def bounded(env: BoundedSandbox, value: Any, *args: Any, **kwargs: Any) -> Any:
        width = args[width_arg - 1] if len(args) >= width_arg else kwargs.get("width")
        text = str(value)
        size = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        lines = text.count("\n") + 1 if name == "indent" else 1
        if size * lines + len(text) > env.max_chars:
            env._refuse(f"the {name} filter's result")
        return original(value, *args, **kwargs)
    return bounded


class _BoundedCodeGenerator(CodeGenerator):
    """`~` (string concatenation) goes through a size check too."""

    def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:  # noqa: N802
        self.write("environment.ansflow_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


BoundedSandbox.code_generator_class = _BoundedCodeGenerator
