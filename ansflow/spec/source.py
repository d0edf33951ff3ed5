"""`source:`: where a run's workspace comes from, one commit of a git repository.

    source:
      git: https://git.example.com/team/app.git
      ref: main              # branch, tag, full ref name or commit SHA (default: HEAD's branch)
      depth: 1               # commits of history (0: all of it)
      submodules: false      # true, false or recursive
      lfs: false
      credentials: app-token # a GitCredentials block (a token, or an SSH key + host key)

A run may ask for another ref (the run form's `ref`, a trigger's `sha`); see docs/git-sources.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator

from ansflow.blocknames import check_block_name
from ansflow.engines.git_urls import GitError, check_ref_text, parse_remote
from ansflow.errors import StepFailed
from ansflow.spec.common import Duration, StrictModel

# The run parameters a pipeline with a source gets (served run forms, the pipeline flow): a
# variable may not take either name there.
RUN_PARAMETERS = ("ref", "sha")
MAX_DEPTH = 1_000_000


def _submodules(value: Any) -> Any:
    if isinstance(value, bool) or value == "recursive":
        return value
    raise ValueError(f"expected true, false or 'recursive', got {str(value)[:60]!r}")


Submodules = Annotated[bool | str, BeforeValidator(_submodules),
                       WithJsonSchema({"anyOf": [{"type": "boolean"}, {"const": "recursive"}]})]


class GitSource(StrictModel):
    """The repository and commit a run checks out into its workspace (with the real git)."""

    git: str = Field(description="Repository URL: https://..., ssh://user@host/path, "
                                 "user@host:path or an absolute path. No password in it: "
                                 "credentials come from a block.")
    ref: str | None = Field(None, description="Branch, tag, full ref name (refs/heads/x) or "
                                              "commit SHA checked out by default (default: "
                                              "the branch HEAD points at); a run may ask for "
                                              "another one.")
    depth: int = Field(1, ge=0, le=MAX_DEPTH, description="How many commits of history to "
                                                          "fetch; 0 fetches all of it.")
    submodules: Submodules = Field(
        False, description="Check out submodules too (recursive: theirs as well).")
    lfs: bool = Field(False, description="Fetch Git LFS files (needs git-lfs on the worker).")
    credentials: str | None = Field(
        None, description="Name of a GitCredentials block: an HTTPS token, or an SSH key with "
                          "the server's pinned host key.")
    timeout: Duration = Field(600.0, description="How long the checkout may take.")

    @field_validator("git")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            parse_remote(value)
        except GitError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if value is not None:
            problem = check_ref_text(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("credentials")
    @classmethod
    def _block(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_block_name(value)
            except StepFailed as exc:
                raise ValueError(str(exc)) from None
        return value


def parameter_clash(variables: dict[str, Any]) -> str | None:
    """Why a pipeline with a source cannot declare these variables (None: it can)."""
    clash = [name for name in RUN_PARAMETERS if name in variables]
    if not clash:
        return None
    return (f"variable(s) {', '.join(map(repr, clash))}: with a `source:`, the run form's "
            f"{' and '.join(map(repr, RUN_PARAMETERS))} fields choose the commit; rename the "
            "variable")
