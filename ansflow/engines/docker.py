"""The one Docker client factory, streamed engine requests, and label-based cleanup.

Every Docker call in ansflow gets its client from :func:`docker_client` (DOCKER_HOST, else
the docker CLI's context, else the default socket) and its engine errors translated by
:func:`engine_error` into the adapter's own errors (``ansflow.engines.errors``). Nothing here
knows about pipelines, steps or plans: callers pass labels, deadlines and callbacks. The one
thing it knows of a run is the ``ansflow.dev/run-id`` label every container ansflow starts
carries (:data:`LABEL_PREFIX`): the cleanup after a crashed run finds its leftovers by it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import docker
import docker.auth
import docker.errors
import requests
from docker.utils.json_stream import json_stream

from ansflow.engines.docker_streams import StreamEvent, parse_stream_event
from ansflow.engines.errors import (
    EngineCancelled,
    EngineError,
    EngineTimedOut,
    EngineTransient,
    EngineUnreachable,
)

LABEL_PREFIX = "ansflow.dev/"
ENGINE_HINT = (
    "start an engine and point DOCKER_HOST at it: `scripts/docker-services.sh start` starts "
    "a private dockerd (as root) and prints the export line; or `sudo systemctl start docker`"
)


# Engine addresses this process has connected to (a flow-run process runs one pipeline run).
ENGINES_USED: set[str] = set()


def docker_client(base_url: str | None = None, *, timeout: float = 60) -> docker.DockerClient:
    """A fresh client for the engine at ``base_url`` (default: DOCKER_HOST / CLI context).

    Args:
        base_url: Engine address such as ``unix:///var/run/docker.sock`` or ``tcp://h:2375``.
        timeout: Default HTTP timeout of non-streaming calls, in seconds.

    Returns:
        A connected ``docker.DockerClient`` (the engine answered a ping).

    Raises:
        EngineUnreachable: no engine answers; the message says how to start one.
    """
    where = base_url or os.environ.get("DOCKER_HOST") or "the default socket / docker context"
    if base_url:
        ENGINES_USED.add(base_url)  # the crash hook cleans up on every engine a run used
    try:
        if base_url:
            client = docker.DockerClient(base_url=base_url, version="auto", timeout=timeout)
        else:
            client = docker.from_env(version="auto", timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        reason = str(exc).split("\n")[0][:300]
        raise EngineUnreachable(
            f"the Docker engine at {where} is unreachable ({reason})", hint=ENGINE_HINT
        ) from exc
    return client


def engine_error(exc: Exception, doing: str) -> EngineError:
    """Translate a docker SDK / transport error into the ansflow error tree."""
    if isinstance(exc, docker.errors.ImageNotFound):
        return EngineError(f"{doing}: image not found: {_explanation(exc)}")
    if isinstance(exc, docker.errors.NotFound):
        return EngineError(f"{doing}: not found: {_explanation(exc)}")
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code or 0
        transient = status >= 500 and "not found" not in _explanation(exc)
        cls = EngineTransient if transient else EngineError
        return cls(f"{doing}: {_explanation(exc)}")
    if isinstance(exc, (requests.ConnectionError, ConnectionError)):
        return EngineUnreachable(f"{doing}: lost the Docker engine ({exc})", hint=ENGINE_HINT)
    return EngineError(f"{doing}: {exc}")


def _explanation(exc: docker.errors.APIError) -> str:
    text = exc.explanation if exc.explanation else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text).strip()[:2000]


def api_url(client: docker.DockerClient, path: str) -> str:
    """The versioned engine URL of ``path`` (``/build``, ``/images/x/push``)."""
    return f"{client.api.base_url}/v{client.api.api_version}{path}"


def _response_socket(response: requests.Response) -> socket.socket | None:
    """The socket under a streaming response, to shut it down from another thread."""
    raw = getattr(response, "raw", None)
    for path in (("_fp", "fp", "raw"), ("_fp", "fp", "raw", "_sock")):
        obj = raw
        for name in path:
            obj = getattr(obj, name, None)
        if isinstance(obj, socket.socket):
            return obj
    return None


class StreamAborter:
    """Stops a streaming engine request from another thread (deadline or cancel).

    Shutting the socket down wakes the reader blocked in ``recv``; the engine sees the
    client go away and cancels the build / push / pull.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._response: requests.Response | None = None
        self._lock = threading.Lock()

    def attach(self, response: requests.Response) -> None:
        with self._lock:
            self._response = response
            if self.reason is not None:
                self._shutdown()

    def abort(self, reason: str) -> None:
        """Stop the stream; ``reason`` is ``"timeout"`` or ``"cancelled"``."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            self._shutdown()

    def _shutdown(self) -> None:
        if self._response is None:
            return
        sock = _response_socket(self._response)
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
            else:
                self._response.close()
        except OSError:
            pass


@contextmanager
def deadline_timer(seconds: float | None, fn: Callable[[], None]) -> Iterator[None]:
    """Call ``fn`` after ``seconds`` unless the block finished first (None: never)."""
    if seconds is None:
        yield
        return
    timer = threading.Timer(max(seconds, 0.0), fn)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def stream_request(
    client: docker.DockerClient,
    path: str,
    *,
    aborter: StreamAborter,
    params: dict | list | None = None,
    data: object = None,
    headers: dict[str, str] | None = None,
) -> Iterator[dict]:
    """POST to the engine and yield the decoded JSON objects of its streamed answer.

    Raises:
        docker.errors.APIError: the engine refused the request (HTTP 4xx/5xx).
    """
    # The engine may answer only after a long wait (a registry that never replies): send
    # from a helper thread, so that a deadline or a cancel is not stuck behind the request.
    sent: dict[str, object] = {}
    ready = threading.Event()

    def send() -> None:
        try:
            response = client.api.post(
                api_url(client, path), params=params, data=data, headers=headers or {},
                stream=True, timeout=None,
            )
            sent["response"] = response
            aborter.attach(response)  # shuts it at once if already aborted
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            sent["error"] = exc
        finally:
            ready.set()

    threading.Thread(target=send, daemon=True, name="ansflow-docker-request").start()
    while not ready.wait(0.05):
        if aborter.reason is not None:
            return  # the helper closes the response when (if) it comes
    if "error" in sent:
        if aborter.reason is not None:
            return
        raise sent["error"]  # type: ignore[misc]
    response = sent["response"]
    assert isinstance(response, requests.Response)
    try:
        try:
            response.raise_for_status()
        except requests.HTTPError as exc:
            raise docker.errors.create_api_error_from_http_exception(exc) from exc
        chunks = response.iter_content(chunk_size=None)
        yield from json_stream(chunks)
    except (requests.RequestException, OSError, ValueError):
        if aborter.reason is None:
            raise
    finally:
        response.close()


def encode_auth(auth: dict[str, str] | None) -> str:
    """The X-Registry-Auth header of ``{username, password, serveraddress}`` (None: anonymous)."""
    return docker.auth.encode_header(auth or {}).decode("ascii")


def label_filters(run_id: str | None) -> list[str]:
    """Engine filters selecting the containers ansflow labelled (all, or those of one run)."""
    return [f"{LABEL_PREFIX}run-id={run_id}"] if run_id else [f"{LABEL_PREFIX}run-id"]


def remove_labelled_containers(run_id: str | None = None, *, base_url: str | None = None) -> int:
    """Kill and remove the containers carrying ansflow's labels (all, or one run's).

    Args:
        run_id: Only the containers of this pipeline run; None means every ansflow container.
        base_url: Engine address (default: DOCKER_HOST / CLI context).

    Returns:
        How many containers were removed.

    Raises:
        EngineUnreachable: no engine answers.
    """
    client = docker_client(base_url)
    try:
        found = client.api.containers(all=True, filters={"label": label_filters(run_id)})
        removed = 0
        for container in found:
            try:
                client.api.remove_container(container["Id"], force=True, v=True)
                removed += 1
            except docker.errors.NotFound:
                continue
            except docker.errors.APIError as exc:
                if "already in progress" not in _explanation(exc):
                    raise engine_error(exc, f"removing container {container['Id'][:12]}") from exc
                removed += 1
        return removed
    finally:
        client.close()


def list_labelled_containers(
    run_id: str | None = None, *, base_url: str | None = None
) -> list[dict]:
    """Id, name, state and labels of the containers ansflow labelled (all, or one run's)."""
    client = docker_client(base_url)
    try:
        found = client.api.containers(all=True, filters={"label": label_filters(run_id)})
        return [
            {"id": c["Id"][:12], "name": (c.get("Names") or ["?"])[0].lstrip("/"),
             "state": c.get("State", ""), "labels": c.get("Labels") or {}}
            for c in found
        ]
    finally:
        client.close()


def aborted_error(reason: str | None, what: str, timeout: float | None) -> EngineError | None:
    """The error for a stream stopped by a deadline or a cancel; None when it was not."""
    if reason == "timeout":
        limit = f" ({timeout:g} s)" if timeout is not None else ""
        return EngineTimedOut(f"{what} did not finish within the step timeout{limit}; stopped")
    if reason == "cancelled":
        return EngineCancelled(f"{what} stopped: the run was cancelled")
    return None


def stream_engine(
    client: docker.DockerClient,
    path: str,
    *,
    what: str,
    timeout: float | None,
    on_cancel: Callable[[Callable[[], None]], Callable[[], None]],
    fail: Callable[[str], Exception],
    emit: Callable[[str], None] | None = None,
    on_event: Callable[[StreamEvent], None] | None = None,
    limit: float | None = None,
    **request: Any,
) -> None:
    """Run one streamed engine request (build, push, pull) to its end, under a deadline and
    a cancel: the one loop every streamed Docker call goes through.

    Each event's text line goes to ``emit`` as it arrives, each event to ``on_event``; an
    event carrying an error raises ``fail(message)``. Past ``timeout`` seconds, or when the
    function registered with ``on_cancel`` is called, the connection is shut down (the engine
    then stops the work) and EngineTimedOut / EngineCancelled is raised; any other failure of the
    engine is translated by :func:`engine_error`. ``limit`` is the step timeout the
    EngineTimedOut message names.
    """
    aborter = StreamAborter()
    unregister = on_cancel(lambda: aborter.abort("cancelled"))
    failure: Exception | None = None
    try:
        with deadline_timer(timeout, lambda: aborter.abort("timeout")):
            for raw in stream_request(client, path, aborter=aborter, **request):
                event = parse_stream_event(raw)
                if event.line is not None and emit is not None:
                    emit(event.line)
                if event.error:
                    failure = fail(event.error)  # the caller's error: raised as it is
                    break
                if on_event is not None:
                    on_event(event)
        if failure is None:
            _raise_if_aborted(aborter, what, limit)
    except EngineError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated into the adapter's error tree
        _raise_if_aborted(aborter, what, limit)
        raise engine_error(exc, what) from exc
    finally:
        unregister()
    if failure is not None:
        raise failure


def _raise_if_aborted(aborter: StreamAborter, what: str, limit: float | None) -> None:
    error = aborted_error(aborter.reason, what, limit)
    if error is not None:
        raise error


def json_param(value: dict) -> str:
    """A dict as the JSON string the engine expects in query parameters."""
    return json.dumps(value)
