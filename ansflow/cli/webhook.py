"""`ansflow webhook`: the receiver of GitHub, GitLab and Gitea push webhooks, which starts
served pipelines through `ansflow.git.push` events (docs/triggers.md).

Secrets never come from the command line: each provider's secret is a Prefect Secret block
named by an option, or an environment variable (ANSFLOW_WEBHOOK_GITHUB_SECRET,
ANSFLOW_WEBHOOK_GITLAB_TOKEN, ANSFLOW_WEBHOOK_GITLAB_SIGNING_TOKEN,
ANSFLOW_WEBHOOK_GITEA_SECRET). A provider without a secret is not enabled.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from ansflow.cli.common import fail as _fail

ENV = {"github": "ANSFLOW_WEBHOOK_GITHUB_SECRET", "gitlab_token": "ANSFLOW_WEBHOOK_GITLAB_TOKEN",
       "gitlab_signing": "ANSFLOW_WEBHOOK_GITLAB_SIGNING_TOKEN",
       "gitea": "ANSFLOW_WEBHOOK_GITEA_SECRET"}


def _secret(block: str | None, env: str, what: str) -> str | None:
    if block:
        from ansflow.blocknames import check_block_name  # noqa: PLC0415

        try:
            check_block_name(block)
            from prefect.blocks.system import Secret  # noqa: PLC0415

            value = Secret.load(block).get()
        except Exception as exc:  # noqa: BLE001 - a missing block: one line, no traceback
            _fail(f"{what}: cannot load the Secret block {block!r}: "
                  f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}")
        if not isinstance(value, str) or not value:
            _fail(f"{what}: the Secret block {block!r} holds no text")
        return value
    return os.environ.get(env) or None


def webhook(
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to listen on (loopback by default: put a TLS "
                                  "proxy in front for the internet)."),
    port: int = typer.Option(8787, "--port", min=0, max=65535),
    github_secret_block: str = typer.Option(None, "--github-secret-block",
                                            help="Secret block with GitHub's webhook secret."),
    gitlab_token_block: str = typer.Option(None, "--gitlab-token-block",
                                           help="Secret block with GitLab's secret token."),
    gitlab_signing_block: str = typer.Option(
        None, "--gitlab-signing-block",
        help="Secret block with GitLab's signing token (whsec_...)."),
    gitea_secret_block: str = typer.Option(None, "--gitea-secret-block",
                                           help="Secret block with Gitea's webhook secret."),
    max_body_mib: int = typer.Option(25, "--max-body-mib", min=1, max=100,
                                     help="Largest delivery accepted (GitHub sends <= 25 MB)."),
    max_age: int = typer.Option(3600, "--max-age", min=0,
                                help="Refuse GitHub deliveries of pushes older than this many "
                                     "seconds (0: no limit); replays are refused by id."),
    state: Path = typer.Option(None, "--state",
                               help="The replay record (default: "
                                    "$ANSFLOW_HOME/webhook-deliveries.db)."),
) -> None:
    """Receive push webhooks and start the served pipelines their `on.push` selects."""
    from ansflow.gitpush.deliveries import DeliveryRecord  # noqa: PLC0415
    from ansflow.gitpush.events import ApiError, PrefectApi  # noqa: PLC0415
    from ansflow.gitpush.providers import Secrets, signing_key  # noqa: PLC0415
    from ansflow.gitpush.server import Receiver, make_server  # noqa: PLC0415
    from ansflow.store import ansflow_home, ensure_home  # noqa: PLC0415

    try:
        api = PrefectApi()
    except ApiError as exc:
        _fail(str(exc))
    github = _secret(github_secret_block, ENV["github"], "GitHub")
    gitlab_token = _secret(gitlab_token_block, ENV["gitlab_token"], "GitLab")
    gitlab_signing = _secret(gitlab_signing_block, ENV["gitlab_signing"], "GitLab signing")
    gitea = _secret(gitea_secret_block, ENV["gitea"], "Gitea")
    try:
        key = signing_key(gitlab_signing) if gitlab_signing else None
    except ValueError as exc:
        _fail(f"GitLab signing token: {exc}")
    secrets = Secrets(github=github.encode() if github else None,
                      gitlab_token=gitlab_token.encode() if gitlab_token else None,
                      gitlab_signing=key, gitea=gitea.encode() if gitea else None)
    enabled = [p for p in ("github", "gitlab", "gitea") if secrets.enabled(p)]
    if not enabled:
        _fail("no webhook secret: set ANSFLOW_WEBHOOK_GITHUB_SECRET, "
              "ANSFLOW_WEBHOOK_GITLAB_TOKEN, ANSFLOW_WEBHOOK_GITLAB_SIGNING_TOKEN or "
              "ANSFLOW_WEBHOOK_GITEA_SECRET, or name Secret blocks (--github-secret-block ...)")
    if state is None:
        ensure_home()
        state = ansflow_home() / "webhook-deliveries.db"
    receiver = Receiver(secrets, DeliveryRecord(state), api=api,
                        max_body=max_body_mib * 1024 * 1024, max_age=max_age or None)
    try:
        server = make_server(receiver, host, port)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    bound = server.server_address
    typer.echo(f"ansflow webhook listening on http://{bound[0]}:{bound[1]} "
               f"({', '.join('/' + p for p in enabled)}) -> {api.url}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
