"""``edgegw echo``: a backend that answers every request with what it saw, as JSON.

It exists for local development, the conformance-style e2e tests and the
benchmarks, so it must never be the bottleneck: it uses the same strict
HTTP/1.1 parser as the gateway, answers pipelined requests in one write, and
does nothing per request beyond one JSON encode.

Protocols are a per-connection choice (``_serve_http1`` today); h2c, TLS and
WebSocket slot in beside it once the connection's first bytes are sniffed.
"""

from __future__ import annotations

import contextlib
import socket
from functools import partial
from typing import Any, NoReturn

import msgspec
import trio

from edgegw.proto.events import ConnectionClosed, DataReceived, MessageEnded, RequestReceived
from edgegw.proto.http1 import ProtocolError, RequestParser, serialize_response_head

_encoder = msgspec.json.Encoder()
_canonical: dict[bytes, str] = {}


def _canonical_name(name: bytes) -> str:
    """``x-forwarded-for`` → ``X-Forwarded-For``, as Go's echo servers report names."""
    text = _canonical.get(name)
    if text is None:
        text = "-".join(part.capitalize() for part in name.decode("latin-1").split("-"))
        if len(_canonical) < 4096:
            _canonical[name] = text
    return text


class EchoIdentity(msgspec.Struct, frozen=True):
    pod: str
    namespace: str


def echo_body(identity: EchoIdentity, event: RequestReceived, tls_server_name: str | None) -> bytes:
    """The JSON CONTRACT.md fixes for one request."""
    headers: dict[str, list[str]] = {}
    host = ""
    for name, value in event.headers:
        if name == b"host":
            host = value.decode("latin-1")
            continue
        headers.setdefault(_canonical_name(name), []).append(value.decode("latin-1"))
    body: dict[str, Any] = {
        "path": event.target.decode("latin-1"),
        "host": host,
        "method": event.method.decode("latin-1"),
        "proto": "HTTP/" + event.http_version.decode("latin-1"),
        "headers": headers,
        "namespace": identity.namespace,
        "ingress": "",
        "service": "",
        "pod": identity.pod,
    }
    if tls_server_name is not None:
        body["tls"] = {"serverName": tls_server_name}
    return _encoder.encode(body)


def _response(event: RequestReceived, payload: bytes) -> bytes:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(payload)),
    ]
    if not event.keep_alive:
        headers.append((b"connection", b"close"))
    head = serialize_response_head(200, headers)
    return head if event.method == b"HEAD" else head + payload


async def _serve_http1(stream: trio.abc.Stream, identity: EchoIdentity) -> None:
    """Answer requests in order; everything already parsed leaves in one write."""
    parser = RequestParser()
    out: list[bytes] = []
    current: RequestReceived | None = None
    while True:
        try:
            event = parser.next_event()
        except ProtocolError as exc:
            out.append(serialize_response_head(exc.status_hint, [(b"connection", b"close")]))
            event = ConnectionClosed()
        if event is None:
            if out:
                await stream.send_all(b"".join(out))
                out.clear()
            parser.receive_data(await stream.receive_some(65536))
        elif isinstance(event, RequestReceived):
            current = event
            if event.expect_continue:
                out.append(b"HTTP/1.1 100 Continue\r\n\r\n")
        elif isinstance(event, MessageEnded) and current is not None:
            out.append(_response(current, echo_body(identity, current, None)))
            if not current.keep_alive:
                break
        elif isinstance(event, ConnectionClosed):
            break
        else:
            assert isinstance(event, DataReceived | MessageEnded)
    if out:
        await stream.send_all(b"".join(out))


async def _handle(identity: EchoIdentity, stream: trio.SocketStream) -> None:
    try:
        await _serve_http1(stream, identity)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve_echo(
    host: str,
    port: int,
    name: str | None = None,
    namespace: str = "",
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the echo backend on ``host:port`` until cancelled.

    Args:
        host: address to bind ("" or "0.0.0.0" for all IPv4, "::" for IPv6).
        port: the port; 0 picks a free one (read it from the started listeners).
        name: reported as ``pod``; the hostname when None.
        namespace: reported as ``namespace``.
        task_status: receives the bound listeners.
    """
    identity = EchoIdentity(pod=name or socket.gethostname(), namespace=namespace)
    listeners = await trio.open_tcp_listeners(port, host=host or None, backlog=1024)
    task_status.started(listeners)
    await trio.serve_listeners(partial(_handle, identity), listeners)
    raise AssertionError("serve_listeners returned")


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` or ``:PORT``."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen wants HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


def main(listen: str, *, name: str | None = None, namespace: str = "") -> int:
    """``edgegw echo``: serve until interrupted; returns the exit code."""
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        print(f"edgegw echo: {exc}")
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(partial(serve_echo, host, port, name, namespace))
    return 0
