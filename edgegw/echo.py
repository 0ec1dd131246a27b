"""``edgegw echo``: a backend that answers every request with what it saw, as JSON.

It exists for local development, the conformance-style e2e tests and the
benchmarks, so it must never be the bottleneck: it uses the same strict
HTTP/1.1 parser as the gateway, answers pipelined requests in one write, and
does nothing per request beyond one JSON encode.

Protocols are a per-connection choice: the first bytes are peeked (not
consumed); the HTTP/2 prior-knowledge preface gets ``_serve_h2`` (h2c), the
rest ``_serve_http1``. An HTTP/1.1 WebSocket upgrade switches that connection
to ``_serve_websocket``, which echoes every message back (wsproto framing).
"""

from __future__ import annotations

import contextlib
import socket
from functools import partial
from typing import Any, NoReturn

import msgspec
import trio
import wsproto.events as wse
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.utilities import generate_accept_token

from edgegw.proto import http2
from edgegw.proto.events import ConnectionClosed, DataReceived, MessageEnded, RequestReceived
from edgegw.proto.h2codec import H2Codec, H2Error
from edgegw.proto.h2codec import ProtocolError as H2ProtocolError
from edgegw.proto.h2codec import events as h2e
from edgegw.proto.http1 import ProtocolError, RequestParser, serialize_response_head
from edgegw.proto.sniff import H2_PREFACE

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
            if event.upgrade and _websocket_key(event) is not None:
                if out:
                    await stream.send_all(b"".join(out))
                return await _serve_websocket(stream, event, parser.trailing_data)
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


# --- WebSocket ----------------------------------------------------------------------------


def _websocket_key(event: RequestReceived) -> bytes | None:
    upgrade = key = None
    for name, value in event.headers:
        if name == b"upgrade":
            upgrade = value.lower()
        elif name == b"sec-websocket-key":
            key = value
    return key if upgrade == b"websocket" and event.method == b"GET" else None


async def _serve_websocket(stream: trio.abc.Stream, event: RequestReceived, early: bytes) -> None:
    """Accept the upgrade, then send every message back until the client closes."""
    key = _websocket_key(event)
    assert key is not None
    headers = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", generate_accept_token(key)),
    ]
    for name, value in event.headers:
        if name == b"sec-websocket-protocol":
            headers.append((name, value.split(b",")[0].strip()))
    await stream.send_all(serialize_response_head(101, headers))
    ws = WSConnection(ConnectionType.SERVER)
    if early:
        ws.receive_data(early)
    while True:
        out = b""
        for wevent in ws.events():
            if isinstance(wevent, wse.TextMessage):
                out += ws.send(
                    wse.TextMessage(wevent.data, message_finished=wevent.message_finished)
                )
            elif isinstance(wevent, wse.BytesMessage):
                out += ws.send(
                    wse.BytesMessage(wevent.data, message_finished=wevent.message_finished)
                )
            elif isinstance(wevent, wse.Ping):
                out += ws.send(wevent.response())
            elif isinstance(wevent, wse.CloseConnection):
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    out += ws.send(wevent.response())
                await stream.send_all(out)
                return
        if out:
            await stream.send_all(out)
        data = await stream.receive_some(65536)
        if not data:
            return
        ws.receive_data(bytes(data))


# --- h2c -------------------------------------------------------------------------------------


def _h2_event(headers: list[tuple[bytes, bytes]]) -> RequestReceived:
    pseudo = {n: v for n, v in headers if n[:1] == b":"}
    regular = [(b"host", pseudo.get(b":authority", b""))]
    regular += [(n, v) for n, v in headers if n[:1] != b":"]
    return RequestReceived(
        method=pseudo.get(b":method", b"GET"),
        target=pseudo.get(b":path", b"/"),
        headers=tuple(regular),
        http_version=b"2.0",
        keep_alive=True,
        content_length=None,
        chunked=False,
        expect_continue=False,
    )


async def _serve_h2(stream: trio.abc.Stream, identity: EchoIdentity) -> None:
    """h2c: answer each stream once its request ended; everything pending leaves in one write."""
    conn = http2.server_connection(http2.H2Limits(max_concurrent_streams=1000))
    heads: dict[int, RequestReceived] = {}
    while True:
        out = conn.data_to_send()
        if out:
            await stream.send_all(out)
        data = await stream.receive_some(65536)
        if not data:
            return
        try:
            events = conn.receive_data(data)
        except H2ProtocolError:
            await stream.send_all(conn.data_to_send())
            return
        for event in events:
            if isinstance(event, h2e.RequestReceived):
                heads[event.stream_id] = _h2_event(list(event.headers))
            elif isinstance(event, h2e.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2e.StreamEnded) and event.stream_id in heads:
                _answer_h2(conn, event.stream_id, heads.pop(event.stream_id), identity)
            elif isinstance(event, h2e.StreamReset):
                heads.pop(event.stream_id, None)
            elif isinstance(event, h2e.ConnectionTerminated):
                await stream.send_all(conn.data_to_send())
                return


def _answer_h2(
    conn: H2Codec, stream_id: int, head: RequestReceived, identity: EchoIdentity
) -> None:
    payload = echo_body(identity, head, None)
    headers = [
        (b":status", b"200"),
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(payload)),
    ]
    if head.method == b"HEAD":
        conn.send_headers(stream_id, headers, end_stream=True)
        return
    conn.send_headers(stream_id, headers)
    size = conn.max_outbound_frame_size
    try:  # the client's window is at least 64 KiB; a bigger echo is refused
        for start in range(0, len(payload), size):
            conn.send_data(stream_id, payload[start : start + size])
        conn.end_stream(stream_id)
    except H2Error:
        conn.reset_stream(stream_id)


async def _protocol(stream: trio.SocketStream) -> bytes:
    """The first bytes, peeked: as many as tell h2c from HTTP/1.1."""
    while True:
        data: bytes = await stream.socket.recv(len(H2_PREFACE), socket.MSG_PEEK)
        if not data or not H2_PREFACE.startswith(data) or len(data) == len(H2_PREFACE):
            return data
        await trio.sleep(0.01)


async def _handle(identity: EchoIdentity, stream: trio.SocketStream) -> None:
    try:
        if await _protocol(stream) == H2_PREFACE:
            await _serve_h2(stream, identity)
        else:
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
