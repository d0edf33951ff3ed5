"""A run's git source: the commit it builds, chosen before any step and checked out into the
run's workspace.

- :func:`prepare_git` (before the build number, before any step): the pipeline's `source:` (or
  the deployment's `source` parameter), the run's `ref` / `sha`, the credentials block;
  `git ls-remote` resolves the ref. A ref that does not exist fails the run here, naming the
  closest refs. The plan comes back with the resolved commit in ``git_source["resolved"]``.
- :func:`git_filler`: fills the run's new workspace with that commit (ansflow.workspaces).
- :func:`git_values`: the `git.*` template values, :func:`run_label`: the commit as the
  run's name shows it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ansflow.engines.git import (
    HEX_SHA,
    CheckoutOptions,
    Commit,
    GitCredentials,
    GitError,
    Resolved,
    check_ref_text,
    checkout,
    ls_remote,
    public_url,
    resolve_ref,
)
from ansflow.engines.lines import clean_line
from ansflow.errors import AnsflowError, StepFailed, UsageError
from ansflow.plan import Plan
from ansflow.spec.source import GitSource

_RunLogger = logging.Logger | logging.LoggerAdapter


def effective_source(plan: Plan, source: dict[str, Any] | None) -> dict[str, Any] | None:
    """The pipeline's own `source:`, else the deployment-level default ``source`` (a run
    parameter of the same shape). Raises UsageError for a bad parameter."""
    if plan.git_source is not None:
        return dict(plan.git_source)
    if source in (None, {}):
        return None
    if not isinstance(source, dict):
        raise UsageError("the run parameter `source` must be a mapping like the pipeline's "
                         "`source:` ({git: URL, ref: ...})")
    try:
        return GitSource.model_validate(source).model_dump()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'source'}: "
                             f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise UsageError(f"the run parameter `source`: {problems}") from None


def _check_run_ref(ref: Any, sha: Any) -> tuple[str | None, str | None]:
    for name, value in (("ref", ref), ("sha", sha)):
        if value is not None and not isinstance(value, str):
            raise UsageError(f"the run parameter `{name}` must be text, got "
                             f"{type(value).__name__}")
    ref = ref.strip() if ref else None
    sha = sha.strip().lower() if sha else None
    if ref:
        problem = check_ref_text(ref)
        if problem:
            raise UsageError(f"the run parameter `ref`: {problem}")
    if sha and not HEX_SHA.match(sha):
        raise UsageError(f"the run parameter `sha` must be a full commit SHA (40 or 64 hex "
                         f"digits), got {sha[:80]!r}")
    return ref or None, sha or None


def load_credentials(name: str | None) -> GitCredentials | None:
    """The git adapter's credentials from the GitCredentials block ``name``. Raises
    AnsflowError naming the block."""
    if not name:
        return None
    from ansflow.blocks.git import GitCredentials as Block  # noqa: PLC0415 - Prefect

    try:
        block = Block.load(name, _sync=True)
    except ValueError:
        raise UsageError(f"source.credentials: no GitCredentials block named {name!r} "
                         "(save one: see docs/git-sources.md)") from None
    except Exception as exc:  # noqa: BLE001 - the server unreachable, a block of another type
        raise UsageError(f"source.credentials: cannot load the block {name!r}: "
                         f"{type(exc).__name__}") from None
    return block.engine_credentials()


def prepare_git(plan: Plan, ref: Any = None, sha: Any = None,
                source: dict[str, Any] | None = None) -> Plan:
    """The plan with its source's commit resolved (``git_source["resolved"]``), or unchanged
    without a source. Runs `git ls-remote` unless the run names an exact ``sha`` with a
    full ref. Raises AnsflowError (the run fails before any step)."""
    ref, sha = _check_run_ref(ref, sha)
    chosen = effective_source(plan, source)
    if chosen is None:
        if ref or sha:
            raise UsageError(f"pipeline {plan.name!r} has no `source:`: the run parameters "
                             "`ref` and `sha` choose a commit of a pipeline's git source")
        return plan
    url = chosen["git"]
    wanted = ref or chosen.get("ref")
    creds = load_credentials(chosen.get("credentials"))
    try:
        if sha and (not wanted or wanted.startswith("refs/")):
            target = Resolved(sha, wanted, exact=False)
        else:
            refs = ls_remote(url, creds, timeout=min(float(chosen.get("timeout") or 600), 120))
            target = resolve_ref(refs, wanted, url)
            if sha:
                target = Resolved(sha, target.ref, exact=False)
    except GitError as exc:
        raise UsageError(str(exc)) from None
    resolved = {"commit": target.commit, "ref": target.ref, "exact": target.exact,
                "asked": wanted or ""}
    return replace(plan, git_source={**chosen, "resolved": resolved})


def _target(plan: Plan) -> Resolved:
    resolved = (plan.git_source or {}).get("resolved")
    if not resolved:
        raise AnsflowError("the git source was not resolved before the run started")
    return Resolved(resolved["commit"], resolved.get("ref"), bool(resolved.get("exact")))


def git_filler(plan: Plan, logger: _RunLogger):  # noqa: ANN201 - ansflow.workspaces.Filler
    """Fill a new workspace with the plan's resolved commit; returns ``{"git": values}``."""
    source = dict(plan.git_source or {})
    target = _target(plan)

    def fill(dest: Path) -> dict[str, Any]:
        creds = load_credentials(source.get("credentials"))
        url = source["git"]
        logger.info(f"checking out {public_url(url)} at "
                    f"{target.ref or target.commit} ({target.commit[:12]})")
        options = CheckoutOptions(depth=source.get("depth") or None,
                                  submodules=source.get("submodules") or False,
                                  lfs=bool(source.get("lfs")),
                                  timeout=float(source.get("timeout") or 600))
        try:
            commit = checkout(url, str(dest), target, creds=creds, options=options,
                              emit=lambda line: logger.info(f"git: {line}"))
        except GitError as exc:
            raise StepFailed(str(exc)) from None
        values = git_values(commit)
        logger.info(f"checked out {values['short_sha']} ({values['ref'] or 'commit'}) by "
                    f"{values['author']}: {first_line(values['message'])}")
        return {"git": values}

    return fill


def git_values(commit: Commit) -> dict[str, str]:
    """The `git.*` template values of a checked-out commit (all text)."""
    return {"sha": commit.sha, "short_sha": commit.short_sha, "ref": commit.ref or "",
            "branch": commit.branch, "tag": commit.tag, "message": commit.message,
            "author": commit.author, "repository": commit.repository}


def first_line(message: str, limit: int = 100) -> str:
    """The subject line of a commit message, cleaned for one log line and cut."""
    line = clean_line(message.split("\n", 1)[0]) if message else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."


def as_checked_out(plan: Plan, values: dict[str, str]) -> Plan:
    """The plan whose resolved commit is the one its workspace holds (``values``: the kept
    workspace's `git` facts, when a retry reuses it and the ref has moved on since)."""
    resolved = (plan.git_source or {}).get("resolved")
    if not resolved or not values.get("sha") or values["sha"] == resolved.get("commit"):
        return plan
    return replace(plan, git_source={**(plan.git_source or {}), "resolved": {
        **resolved, "commit": values["sha"], "ref": values.get("ref") or None}})


def run_label(plan: Plan) -> str:
    """The commit as a run's name shows it: ``main@1a2b3c4`` (``v1@...``, or the short SHA
    alone), "" without a source."""
    resolved = (plan.git_source or {}).get("resolved")
    if not resolved:
        return ""
    short = str(resolved["commit"])[:7]
    ref = str(resolved.get("ref") or "")
    name = ref.removeprefix("refs/heads/").removeprefix("refs/tags/") if ref else ""
    return f"{name}@{short}" if name else short


def split_run_parameters(plan: Plan, values: dict[str, Any] | None
                         ) -> tuple[Any, Any, dict[str, Any]]:
    """A served run form's values as (ref, sha, the pipeline's variables): `ref` and `sha`
    are the git fields unless the pipeline declares variables of those names (it then has no
    source: the spec refuses both together)."""
    rest = dict(values or {})
    found = [rest.pop(name, None) if name not in plan.variables else None
             for name in ("ref", "sha")]
    return found[0], found[1], rest


GIT_ENV = {"sha": "ANSFLOW_GIT_SHA", "ref": "ANSFLOW_GIT_REF", "branch": "ANSFLOW_GIT_BRANCH",
           "tag": "ANSFLOW_GIT_TAG", "repository": "ANSFLOW_GIT_REPOSITORY"}


def with_git(plan: Plan, values: dict[str, str]) -> Plan:
    """The plan whose steps also get the commit in their environment (ANSFLOW_GIT_SHA, _REF,
    _BRANCH, _TAG, _REPOSITORY; the pipeline's own `env:` wins); unchanged without one."""
    if not values:
        return plan
    env = {name: str(values.get(key) or "") for key, name in GIT_ENV.items()}
    return replace(plan, env={**env, **plan.env})
