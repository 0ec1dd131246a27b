"""WebSocket through ``edgegw run``: HTTP/1.1 Upgrade and RFC 8441 over h2, trio-websocket ends."""

from __future__ import annotations

import contextlib
import socket
import ssl
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
import trio
import trustme
from trio_websocket import ConnectionClosed, WebSocketRequest, open_websocket_url, serve_websocket
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import CloseConnection, TextMessage

from tests.e2e.conftest import Echo, Gateway, free_port, http_gateway
from tests.e2e.test_h2_e2e import route, service
from tests.h2text import text_headers

pytestmark = pytest.mark.e2e
CEILING = 20


@pytest.fixture
def ws_gateway(gateway: Gateway, echoes: dict[str, Echo]) -> tuple[int, int, Echo]:
    """Routes: /echo → ``edgegw echo`` (plain), /ws → a trio-websocket server (appProtocol ws)."""
    port, ws_port = free_port(), free_port()
    gateway.service("echo", echoes["a"])
    service(gateway, "wsback", ws_port, "kubernetes.io/ws")
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("route-echo.yaml", route("r-echo", "echo", "/echo"))
    gateway.write("route-ws.yaml", route("r-ws", "wsback", "/ws"))
    gateway.start()
    return port, ws_port, echoes["a"]


async def test_upgrade_to_edgegw_echo(ws_gateway: tuple[int, int, Echo]) -> None:
    port, _, _ = ws_gateway
    with trio.fail_after(CEILING):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/echo/chat") as ws:
            for text in ("hello", "x" * 100_000):
                await ws.send_message(text)
                assert await ws.get_message() == text
            await ws.send_message(b"\x00\x01binary")
            assert await ws.get_message() == b"\x00\x01binary"
        assert ws.closed is not None
        assert ws.closed.code == 1000


async def _server_that_closes(request: WebSocketRequest) -> None:
    ws = await request.accept(subprotocol=request.proposed_subprotocols[0])
    message = await ws.get_message()
    assert isinstance(message, str)
    await ws.send_message(f"got {message} at {request.path}")
    await ws.aclose(4001, "bye")


async def test_close_frames_pass_both_ways(
    ws_gateway: tuple[int, int, Echo], nursery: trio.Nursery
) -> None:
    port, ws_port, _ = ws_gateway
    await nursery.start(serve_websocket, _server_that_closes, "127.0.0.1", ws_port, None)
    with trio.fail_after(CEILING):
        async with open_websocket_url(
            f"ws://127.0.0.1:{port}/ws/room?x=1", subprotocols=["chat.v1"]
        ) as ws:
            assert ws.subprotocol == "chat.v1"
            await ws.send_message("hi")
            assert await ws.get_message() == "got hi at /ws/room?x=1"
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
    assert info.value.reason is not None
    assert info.value.reason.code == 4001
    assert info.value.reason.reason == "bye"


def _h2_websocket(port: int, path: str, messages: list[str]) -> tuple[str, list[str], int | None]:
    """RFC 8441 by hand: h2 CONNECT with :protocol, then WebSocket frames in DATA."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration())
    conn.initiate_connection()
    ws = WSConnection(ConnectionType.CLIENT)
    status, got, code = "", [], None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        while not conn.remote_settings.enable_connect_protocol:
            conn.receive_data(sock.recv(65536))
        fields = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http")]
        fields += [(":authority", "example.com"), (":path", path), ("sec-websocket-version", "13")]
        conn.send_headers(1, fields)
        for text in messages:
            conn.send_data(1, ws.send(TextMessage(text)))
        conn.send_data(1, ws.send(CloseConnection(1000, "done")))
        sock.sendall(conn.data_to_send())
        while code is None:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = text_headers(event.headers)[":status"]
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                    if code is not None:  # wsproto takes nothing after the close
                        continue
                    ws.receive_data(event.data)
                    for wse in ws.events():
                        if isinstance(wse, TextMessage):
                            got.append(wse.data)
                        elif isinstance(wse, CloseConnection):
                            code = wse.code
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    code = code or -1
            sock.sendall(conn.data_to_send())
    return status, got, code


def test_extended_connect_over_h2c(ws_gateway: tuple[int, int, Echo]) -> None:
    port, _, _ = ws_gateway
    status, got, code = _h2_websocket(port, "/echo/h2", ["one", "two"])
    assert status == "200"
    assert got == ["one", "two"]
    assert code == 1000


def test_extended_connect_without_route_is_404(ws_gateway: tuple[int, int, Echo]) -> None:
    port, _, _ = ws_gateway
    status, _, _ = _h2_websocket(port, "/nowhere", [])
    assert status == "404"


async def _echo_handler(request: WebSocketRequest) -> None:
    ws = await request.accept()
    with contextlib.suppress(ConnectionClosed):  # the client's close ends the echo
        while True:
            await ws.send_message(await ws.get_message())


async def test_wss_backend(
    gateway: Gateway,
    nursery: trio.Nursery,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    port, ws_port = free_port(), free_port()
    await nursery.start(serve_websocket, _echo_handler, "127.0.0.1", ws_port, server_ctx)
    service(gateway, "secure", ws_port, "kubernetes.io/wss")
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("route.yaml", route("r", "secure", "/"))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the gateway trusts the test CA
    await trio.to_thread.run_sync(gateway.start)
    with trio.fail_after(CEILING):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/secure") as ws:
            await ws.send_message("over tls")
            assert await ws.get_message() == "over tls"
