"""The admin API: health, readiness, metrics, status and the effective config.

It is a control-plane endpoint scraped a few times a second at most, so it
uses h11 (the reference HTTP/1.1 implementation) rather than the data plane's
fast parser, and it listens on loopback or a unix socket by default: status
can name internal addresses, and nothing here is meant for the network.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol

import h11
import trio

from edgegw.errors import EdgegwError

log = logging.getLogger("edgegw.admin")

MAX_REQUEST_BYTES = 16 * 1024
READ_TIMEOUT = 10.0


class AdminView(Protocol):
    """What the admin API reads from the running gateway."""

    def ready(self) -> bool: ...
    def status_document(self) -> dict[str, Any]: ...
    def config_document(self) -> dict[str, Any]: ...
    def metrics_text(self) -> bytes: ...


class AdminAddressError(EdgegwError):
    """The ``--admin`` value is neither HOST:PORT nor unix:/path."""


def parse_admin_address(value: str) -> tuple[str, int] | Path:
    """``unix:/run/edgegw.sock`` → Path; ``127.0.0.1:9901`` / ``[::1]:9901`` → (host, port)."""
    if value.startswith("unix:"):
        return Path(value[len("unix:") :])
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise AdminAddressError(f"--admin {value!r}: expected HOST:PORT or unix:/path")
    return host.strip("[]") or "127.0.0.1", int(port)


async def open_admin_listeners(value: str) -> list[trio.SocketListener]:
    """Bind the admin address; a stale unix socket file is replaced."""
    address = parse_admin_address(value)
    if isinstance(address, Path):
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        address.unlink(missing_ok=True)
        await sock.bind(str(address))
        os.chmod(address, 0o660)
        sock.listen(64)
        return [trio.SocketListener(sock)]
    host, port = address
    return await trio.open_tcp_listeners(port, host=host)


async def serve_admin(
    listeners: list[trio.SocketListener],
    view: AdminView,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the admin API on already-bound listeners until cancelled."""
    handler = _Handler(view)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler.serve, listeners)
        task_status.started()


Response = tuple[int, str, bytes]


class _Handler:
    def __init__(self, view: AdminView) -> None:
        self.view = view
        self.routes: dict[str, Callable[[], Awaitable[Response]]] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._metrics,
            "/api/status": self._status,
            "/api/config": lambda: _json(view.config_document),
        }

    async def _healthz(self) -> Response:
        return 200, "text/plain", b"ok\n"

    async def _readyz(self) -> Response:
        if self.view.ready():
            return 200, "text/plain", b"ready\n"
        return 503, "text/plain", b"not ready\n"

    async def _status(self) -> Response:
        """Taken on the event loop (it reads live state, the cluster's included), serialized
        in a thread; ``/api/config`` is a pure view of the model, built in the thread too."""
        document = self.view.status_document()
        return await _json(lambda: document)

    async def _metrics(self) -> Response:
        return 200, "text/plain; version=0.0.4", self.view.metrics_text()

    async def serve(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        try:
            with trio.move_on_after(READ_TIMEOUT):
                while await self._one_request(conn, stream):
                    conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _one_request(self, conn: h11.Connection, stream: trio.abc.Stream) -> bool:
        request = await _next_event(conn, stream)
        if not isinstance(request, h11.Request):
            return False
        if request.method not in (b"GET", b"HEAD"):
            # Answered before reading the body (which may be large), then closed.
            await self._answer(conn, stream, b"", (405, "text/plain", b"method not allowed\n"))
            return False
        while not isinstance(await _next_event(conn, stream), h11.EndOfMessage):
            pass
        target = request.target.decode("ascii", "replace").split("?", 1)[0]
        route = self.routes.get(target)
        response = (404, "text/plain", b"not found\n") if route is None else await _run(route)
        await self._answer(conn, stream, request.method, response)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    @staticmethod
    async def _answer(
        conn: h11.Connection, stream: trio.abc.Stream, method: bytes, response: Response
    ) -> None:
        """Send one response; HEAD gets the headers of GET and no body."""
        status, ctype, body = response
        headers = [("content-type", ctype), ("content-length", str(len(body)))]
        if status == 405:
            headers += [("allow", "GET, HEAD"), ("connection", "close")]
        reason = HTTPStatus(status).phrase.encode()
        data = conn.send(h11.Response(status_code=status, headers=headers, reason=reason)) or b""
        if method != b"HEAD":
            data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)


async def _run(route: Callable[[], Awaitable[Response]]) -> Response:
    """A bug behind one admin path answers 500; it must not end the gateway's nursery."""
    try:
        return await route()
    except Exception:
        log.exception("admin API: internal error")
        return 500, "text/plain", b"internal error\n"


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(bytes(await stream.receive_some(65536)))


async def _json(document: Callable[[], dict[str, Any]]) -> Response:
    """Build and serialize in a worker thread: the status of 10,000 routes is megabytes of
    JSON, and the event loop serves traffic and ``/healthz`` meanwhile (the thread lets go of
    the GIL every few milliseconds)."""
    body = await trio.to_thread.run_sync(_dumps, document)
    return 200, "application/json", body


def _dumps(document: Callable[[], dict[str, Any]]) -> bytes:
    return json.dumps(document(), indent=2).encode() + b"\n"
