"""HTTP/2 control-frame abuse against a real ``edgegw run`` (issue "Safe at the edge", items 4
and 5): SETTINGS and PING floods from a client that never reads, and a peer's
SETTINGS_HEADER_TABLE_SIZE of 2^32-1, on the client side and on the backend side."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hyperframe.frame import Frame, GoAwayFrame, PingFrame, SettingsFrame

from tests.e2e.conftest import Echo, Gateway, Port, SocketServer, free_port, http_gateway

pytestmark = pytest.mark.e2e

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ENHANCE_YOUR_CALM = 11
HUGE = 2**32 - 1


def route(name: str, service: str) -> str:
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - backendRefs: [{{name: {service}, port: 80}}]
"""


def rss(pid: int) -> int:
    """Resident memory of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def frames(data: bytes) -> list[Frame]:
    """The whole frames in ``data``."""
    out = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        if len(data) < 9 + length:
            break
        frame.parse_body(memoryview(data[9 : 9 + length]))
        out.append(frame)
        data = data[9 + length :]
    return out


def flood(port: int, frame: bytes, count: int, *, reads: bool) -> tuple[float, list[Frame]]:
    """Send ``count`` copies of ``frame``, then read to the end.

    A client that ``reads`` has the usual receive buffer; one that does not has
    a 4 KiB one and reads only after the flood, as an attacker's would.

    Returns:
        (seconds from the first flood byte to the connection's end, frames received)
    """
    with socket.socket() as sock:
        if not reads:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        sock.sendall(PREFACE + SettingsFrame(0).serialize())
        start = time.monotonic()
        batch = frame * 1000
        try:
            for _ in range(count // 1000):
                sock.sendall(batch)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway closed while we were still sending
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # it closed with our flood unread: a reset
        return time.monotonic() - start, frames(received)


def _answers(got: list[Frame]) -> int:
    return sum(1 for f in got if isinstance(f, PingFrame | SettingsFrame) and "ACK" in f.flags)


def _kernel_slack() -> int:
    """Answers the kernel may take off the gateway before its writer stalls on a client that
    never reads: the gateway's default send buffer plus the client's 4 KiB receive buffer (which
    the kernel doubles), in 9-byte SETTINGS ACKs, the smallest answer.

    The gateway's budget counts answers it holds unsent; those the kernel took are gone from
    it. How many it took depends on how the scheduler interleaves the gateway's reads and
    writes (one flushed batch of 1,000 under load), so only this bound is certain.
    """
    default_send = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[1])
    return (default_send + 2 * 4096) // 9


def _flood_frames() -> list[tuple[str, bytes]]:
    ping = PingFrame(0)
    ping.opaque_data = b"12345678"
    return [("PING", ping.serialize()), ("SETTINGS", SettingsFrame(0).serialize())]


@pytest.fixture
def echo_gateway(gateway: Gateway, echoes: dict[str, Echo]) -> tuple[int, int]:
    """(listener port, pid) of a gateway routing everything to an echo backend."""
    port = free_port()
    gateway.service("echo", echoes["a"])
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("route.yaml", route("all", "echo"))
    gateway.start()
    assert gateway.process is not None
    return port, gateway.process.proc.pid


def _still_serving(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_floods_from_a_client_that_never_reads_are_cut_off(echo_gateway: tuple[int, int]) -> None:
    port, pid = echo_gateway
    for name, frame in _flood_frames():
        before = rss(pid)
        took, got = flood(port, frame, 300_000, reads=False)
        growth = rss(pid) - before
        assert took < 5, (name, took)
        assert growth < 20 << 20, (name, growth)
        # at most the budget reached the client, plus what the kernel's buffers held
        assert _answers(got) <= 1001 + _kernel_slack(), name
        print(f"{name} flood, never read: closed after {took:.2f} s, RSS +{growth >> 10} KiB")
    _still_serving(port)


def burst(port: int, frame: bytes, count: int) -> tuple[float, list[Frame]]:
    """The preface and ``count`` copies of ``frame`` in one write, then read to the end.

    In one write (under 64 KiB) the gateway reads them at once, so the flood is
    there before its writer can take a single answer: a client that reads its
    answers is otherwise no flood (the kernel takes them as fast as they come).
    """
    with socket.socket() as sock:
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        start = time.monotonic()
        sock.sendall(PREFACE + SettingsFrame(0).serialize() + frame * count)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
        return time.monotonic() - start, frames(received)


def test_a_flood_is_answered_with_goaway_enhance_your_calm(echo_gateway: tuple[int, int]) -> None:
    port, _ = echo_gateway
    for name, frame in _flood_frames():
        took, got = burst(port, frame, 2_000)
        goaways = [f for f in got if isinstance(f, GoAwayFrame)]
        assert [f.error_code for f in goaways] == [ENHANCE_YOUR_CALM], name
        assert _answers(got) <= 1001, name
        assert took < 5, (name, took)
    _still_serving(port)


def h2_client(settings: dict[int, int]) -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding=None))
    conn.initiate_connection()
    conn.update_settings(settings)
    return conn


class H2Backend(SocketServer):
    """An h2c backend that offers a 2^32-1 HPACK table and notes the size the gateway chose."""

    def __init__(self) -> None:
        self.table_sizes: list[int] = []
        super().__init__(concurrent=True)

    def handle(self, conn: socket.socket) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        h2conn = h2.connection.H2Connection(config)
        h2conn.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.HEADER_TABLE_SIZE: HUGE}
        )
        h2conn.initiate_connection()
        conn.sendall(h2conn.data_to_send())
        conn.settimeout(10)
        while data := conn.recv(65536):
            for event in h2conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    self.table_sizes.append(h2conn.decoder.header_table_size)
                    h2conn.send_headers(event.stream_id, [(b":status", b"200")], end_stream=True)
            conn.sendall(h2conn.data_to_send())


def test_hpack_tables_stay_within_4096_whatever_the_peer_offers(gateway: Gateway) -> None:
    port = free_port()
    backend = H2Backend()
    try:
        gateway.service("h2", Port(backend.port), app_protocol="kubernetes.io/h2c")
        gateway.write("gateway.yaml", http_gateway(port))
        gateway.write("route.yaml", route("all", "h2"))
        gateway.start()
        client = h2_client({h2.settings.SettingCodes.HEADER_TABLE_SIZE: HUGE})
        fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"example.com")]
        client.send_headers(1, [*fields, (b":path", b"/")], end_stream=True)
        status = None
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(client.data_to_send())
            while status is None:
                data = sock.recv(65536)
                assert data, "closed before the response"
                for event in client.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        status = dict(event.headers)[b":status"]
                sock.sendall(client.data_to_send())
        assert status == b"200"
        # What the gateway's encoder announced: at most 4,096 (the codec keeps no table at all).
        assert client.decoder.header_table_size <= 4096
        assert len(backend.table_sizes) == 1
        assert backend.table_sizes[0] <= 4096  # and towards the backend
    finally:
        backend.close()
