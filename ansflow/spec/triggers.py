"""A pipeline's `on:` key: the pushes that start it (GitHub Actions' `on.push` filters).

    on:
      push:
        branches: [main, "release/*"]      # or branches_ignore
        tags: ["v*"]                       # or tags_ignore
        paths: ["src/**"]                  # or paths_ignore
        repository: https://git.example/app.git   # default: the pipeline's source.git

A pipeline with `on.push` needs `source:` (the pushed commit is checked out from it).

`on: push`, `on: [push]` and `on: {push: {}}` mean every push of a branch or tag. Which push
selects the pipeline follows GitHub's rules (:func:`PushFilter.selects`); the patterns are
GitHub's (:mod:`ansflow.spec.globs`). Pure: no I/O, no Prefect.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, field_validator, model_validator

from ansflow.spec.common import StrictModel
from ansflow.spec.globs import PatternError, check_patterns, ref_kind, selects

MAX_PATTERNS = 100
ZERO_SHA = "0" * 40  # the old or new value of a created or deleted ref
_LISTS = ("branches", "branches_ignore", "tags", "tags_ignore", "paths", "paths_ignore")


def _patterns_field(what: str, alias: str | None = None) -> Any:
    choices = AliasChoices(what, alias) if alias else None
    return Field(None, validation_alias=choices, max_length=MAX_PATTERNS,
                 description=f"GitHub filter patterns for {what.replace('_', ' ')} "
                             "(`*`, `**`, `?`, `+`, `[a-z]`, leading `!` negates; in order)")


class PushFilter(StrictModel):
    """Which pushes start the pipeline (GitHub's `on.push` keys; `branches-ignore` and the
    other dashed spellings are accepted too)."""

    branches: list[str] | None = _patterns_field("branches")
    branches_ignore: list[str] | None = _patterns_field("branches_ignore", "branches-ignore")
    tags: list[str] | None = _patterns_field("tags")
    tags_ignore: list[str] | None = _patterns_field("tags_ignore", "tags-ignore")
    paths: list[str] | None = _patterns_field("paths")
    paths_ignore: list[str] | None = _patterns_field("paths_ignore", "paths-ignore")
    repository: str | None = Field(
        None, min_length=1, max_length=2048,
        description="The repository whose pushes count, when pushes arrive under another "
                    "URL than `source.git` (e.g. the source is a mirror); default: "
                    "`source.git`.")

    @field_validator(*_LISTS, mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator(*_LISTS)
    @classmethod
    def _valid_patterns(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            try:
                check_patterns(value)
            except PatternError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("repository")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and (" " in value or not value.isprintable()):
            raise ValueError("a repository URL is one line without spaces or control characters")
        if value is not None:
            from ansflow.gitpush.repos import repository_key  # noqa: PLC0415 - pure

            repository_key(value)  # a ValueError says what is wrong with it
        return value

    @model_validator(mode="after")
    def _not_both(self) -> PushFilter:
        for kind in ("branches", "tags", "paths"):
            if getattr(self, kind) is not None and getattr(self, f"{kind}_ignore") is not None:
                raise ValueError(f"give {kind!r} or {kind + '_ignore'!r}, not both (GitHub's "
                                 f"rule: use {kind!r} with '!' patterns to exclude)")
        return self

    def filters(self) -> dict[str, list[str]]:
        """The filter lists that are set (what an emitter evaluates)."""
        return {k: list(getattr(self, k)) for k in _LISTS if getattr(self, k) is not None}


class On(StrictModel):
    """The events that start a pipeline; only `push` is supported (schedules are
    `schedule:`)."""

    push: PushFilter | None = Field(None, description="Pushes of branches and tags.")

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise ValueError("`on:` lists event names, such as [push]")
            return {name: {} for name in value}
        if isinstance(value, dict) and "push" in value and value["push"] is None:
            return {**value, "push": {}}
        return value

    @field_validator("push", mode="before")
    @classmethod
    def _empty_is_every_push(cls, value: Any) -> Any:
        return {} if value is None else value


__all__ = ["On", "PushFilter", "ref_kind", "selects", "ZERO_SHA"]
