"""`ansflow git-hook install REPO.git`: a post-receive hook that turns pushes to a bare
repository (self-hosted git) into `ansflow.git.push` events on the Prefect server."""

from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path

import typer

from ansflow.cli.common import fail as _fail

app = typer.Typer(help="Start served pipelines on pushes to a bare git repository "
                       "(docs/triggers.md).", no_args_is_help=True)

MARKER = "# ansflow post-receive hook"


def hook_script(repository: str, api_url: str, python: str) -> str:
    """The hook: every value single-quoted for sh (a URL is data, never code)."""
    return "\n".join([
        "#!/bin/sh",
        MARKER,
        "# Installed by `ansflow git-hook install`; emits one ansflow.git.push event per",
        "# updated ref to the Prefect server (docs/triggers.md). PREFECT_API_AUTH_STRING, when",
        "# the server needs it, comes from the git server's environment, never from here.",
        f"ANSFLOW_PUSH_REPOSITORY={shlex.quote(repository)}",
        f"PREFECT_API_URL={shlex.quote(api_url)}",
        "export ANSFLOW_PUSH_REPOSITORY PREFECT_API_URL",
        f"exec {shlex.quote(python)} -m ansflow.gitpush.hook",
        "",
    ])


def _check_one_line(value: str, what: str) -> None:
    if not value or not value.isprintable() or len(value) > 2048:
        _fail(f"{what}: one printable line of at most 2048 characters")


@app.command("install")
def install(
    repo: Path = typer.Argument(..., help="The bare repository (a folder like app.git)."),
    repository: str = typer.Option(
        None, "--repository",
        help="The URL the pipelines' `source.git` names this repository by (default: "
             "file://<the repository's path>)."),
    api_url: str = typer.Option(
        None, "--api-url", envvar="PREFECT_API_URL",
        help="The Prefect server's API (default: PREFECT_API_URL)."),
    force: bool = typer.Option(False, "--force",
                               help="Replace a post-receive hook that is not ansflow's."),
) -> None:
    """Install the post-receive hook that emits `ansflow.git.push` for every pushed ref."""
    from ansflow.gitpush.repos import repository_key  # noqa: PLC0415

    bare = repo.expanduser().resolve()
    if not (bare / "HEAD").is_file() or not (bare / "objects").is_dir():
        _fail(f"{repo}: not a bare git repository (no HEAD and objects/ in it)")
    if (bare / ".git").exists():
        _fail(f"{repo}: a work tree; give its bare repository (pushes land there)")
    url = repository or f"file://{bare}"
    _check_one_line(url, "--repository")
    try:
        key = repository_key(url)
    except ValueError as exc:
        _fail(f"--repository: {exc}")
    if not api_url or not api_url.startswith(("http://", "https://")):
        _fail("the Prefect server's API is not known: give --api-url or set PREFECT_API_URL "
              "(e.g. http://127.0.0.1:4200/api)")
    _check_one_line(api_url, "--api-url")
    hooks = bare / "hooks"
    hooks.mkdir(exist_ok=True)
    target = hooks / "post-receive"
    if target.is_symlink() or (target.exists() and MARKER not in _head(target) and not force):
        _fail(f"{target} exists and is not ansflow's hook; call it from your hook, or "
              "replace it with --force")
    tmp = hooks / ".post-receive.ansflow"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o755)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(hook_script(url, api_url, sys.executable))
    os.chmod(tmp, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    os.replace(tmp, target)
    typer.echo(f"installed {target}: pushes emit ansflow.git.push for repository {key} to "
               f"{api_url}")


def _head(path: Path) -> str:
    try:
        with path.open("rb") as hook:
            return hook.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return ""
