"""The webhook receiver: GitHub, GitLab and Gitea push deliveries in, `ansflow.git.push`
events out (Prefect OSS has no webhooks of its own).

    POST /github   POST /gitlab   POST /gitea   GET /healthz

Each delivery goes through, in order: a size check on Content-Length before any byte of the
body is read (413; no length: 411), a bounded read (a slow sender is cut off), the
provider's signature or token compared in constant time (401; a provider without a secret
is not enabled: 404), the event type (`ping` answers 200, other events are acknowledged and
ignored), the delivery id, the JSON body and its documented fields (400), the push's age
where the provider signs a time (400 stale), the replay record (409), then the event is sent
to the Prefect server (502 when it cannot be; the delivery id is released so the provider's
retry is taken). 202 answers with the pipelines the push starts. The log has one line per
delivery, never a header value, a secret or a signature.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ansflow.gitpush.deliveries import DeliveryRecord
from ansflow.gitpush.events import ApiError, PrefectApi, PushError, deliver
from ansflow.gitpush.providers import (
    PROVIDERS,
    Refused,
    Secrets,
    delivery_id,
    event_kind,
    parse_json,
    parse_push,
    verify,
)

log = logging.getLogger("ansflow.webhook")

DEFAULT_MAX_BODY = 25 * 1024 * 1024  # GitHub caps its payloads at 25 MB
DEFAULT_MAX_AGE = 3600.0
READ_DEADLINE = 30.0
MAX_CONCURRENT = 16


class Receiver:
    """What to do with one delivery (the HTTP server below only moves bytes)."""

    def __init__(self, secrets: Secrets, record: DeliveryRecord, *,
                 api: PrefectApi | None = None, max_body: int = DEFAULT_MAX_BODY,
                 max_age: float | None = DEFAULT_MAX_AGE,
                 deliver_push: Callable | None = None) -> None:
        self.secrets = secrets
        self.record = record
        self.api = api
        self.max_body = max_body
        self.max_age = max_age
        self._deliver = deliver_push or deliver

    def handle(self, provider: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        """The HTTP status and JSON answer of one delivery (headers keyed lowercase)."""
        verify(provider, self.secrets, headers, body)
        kind = event_kind(provider, headers)
        if kind == "ping":
            return 200, {"ok": "pong"}
        if kind != "push":
            return 202, {"ignored": "only push events start pipelines"}
        delivery = delivery_id(provider, headers)
        push = parse_push(provider, parse_json(body), delivery, max_age=self.max_age)
        try:
            push.check()
        except PushError as exc:
            raise Refused(400, str(exc)) from None
        if not self.record.claim(provider, delivery):
            raise Refused(409, "replayed delivery: this delivery id was already taken")
        try:
            started = self._deliver(push, self.api or PrefectApi())
        except (ApiError, PushError) as exc:
            self.record.release(provider, delivery)
            raise Refused(502, f"the push event could not be sent to Prefect: {exc}") from None
        except BaseException:
            self.record.release(provider, delivery)
            raise
        return 202, {"delivery": delivery, "ref": push.ref, "after": push.after,
                     "pipelines": started}


def _short(value: Any, limit: int = 120) -> str:
    text = str(value)
    return repr(text[:limit]) if text.isprintable() else repr(text[:limit].encode())


def make_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    slots = threading.BoundedSemaphore(MAX_CONCURRENT)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ansflow-webhook"
        sys_version = ""
        timeout = 15  # seconds per socket read

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return  # one line per delivery is logged by _answer, without headers

        def _answer(self, status: int, payload: dict, note: str = "") -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            log.info("%s %s %s -> %d %s", self.client_address[0], self.command,
                     _short(self.path, 60), status, note or payload.get("error", "")
                     or ",".join(payload.get("pipelines", [])))

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/healthz":
                self._answer(200, {"ok": True})
            else:
                self._answer(404, {"error": "not found"})

        def do_PUT(self) -> None:  # noqa: N802
            self._answer(405, {"error": "POST a webhook delivery"})

        def do_POST(self) -> None:  # noqa: N802
            provider = self.path.strip("/").split("?", 1)[0]
            if provider not in PROVIDERS:
                self._answer(404, {"error": "POST to /github, /gitlab or /gitea"})
                return
            if not slots.acquire(blocking=False):
                self._answer(503, {"error": "busy: too many deliveries at once"})
                return
            try:
                self._post(provider)
            finally:
                slots.release()

        def _post(self, provider: str) -> None:
            if self.headers.get("Transfer-Encoding"):
                self._answer(411, {"error": "send a Content-Length (no chunked bodies)"})
                return
            raw = self.headers.get("Content-Length")
            if raw is None or not raw.strip().isdigit():
                self._answer(411 if raw is None else 400,
                             {"error": "a Content-Length header is required"})
                return
            length = int(raw)
            if length > receiver.max_body:
                self._answer(413, {"error": f"body larger than {receiver.max_body} bytes; "
                                            "refused before reading it"})
                self._drain_briefly()
                return
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if content_type != "application/json":
                self._answer(415, {"error": "the webhook must send application/json"})
                return
            body = self._read(length)
            if body is None:
                self._answer(408, {"error": "the body did not arrive in time"})
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, payload = receiver.handle(provider, headers, body)
            except Refused as exc:
                self._answer(exc.status, {"error": str(exc)}, f"{provider} {exc}")
                return
            except Exception:  # noqa: BLE001 - a bug: answer 500, log it without the body
                log.exception("%s delivery failed", provider)
                self._answer(500, {"error": "internal error"}, provider)
                return
            self._answer(status, payload,
                         note=f"{provider} {payload.get('ref', '')} "
                              f"{','.join(payload.get('pipelines', [])) or 'nothing started'}")

        def _drain_briefly(self) -> None:
            """Read a little of what the sender is still sending (at most 1 MiB, 1 s), so
            that closing does not reset the connection before the 413 is read."""
            deadline = time.monotonic() + 1.0
            taken = 0
            try:
                self.connection.settimeout(0.2)
                while taken < 1024 * 1024 and time.monotonic() < deadline:
                    chunk = self.connection.recv(65536)
                    if not chunk:
                        break
                    taken += len(chunk)
            except OSError:
                pass

        def _read(self, length: int) -> bytes | None:
            deadline = time.monotonic() + READ_DEADLINE
            chunks: list[bytes] = []
            left = length
            while left > 0:
                if time.monotonic() > deadline:
                    return None
                try:
                    chunk = self.rfile.read1(min(left, 65536))
                except (TimeoutError, OSError):
                    return None
                if not chunk:
                    return None
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)

    return Handler


def make_server(receiver: Receiver, host: str = "127.0.0.1", port: int = 0
                ) -> ThreadingHTTPServer:
    """The receiver's HTTP server, bound (not yet serving: call serve_forever)."""
    server = ThreadingHTTPServer((host, port), make_handler(receiver))
    server.daemon_threads = True
    return server
