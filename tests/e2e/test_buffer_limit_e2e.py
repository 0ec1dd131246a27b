"""ClientTrafficPolicy ``connection.bufferLimit`` through ``edgegw run``, with curl (HTTP/1.1,
HTTPS, h2c, h2), a raw HTTP/2 client, grpcio and trio-websocket: large uploads stream
through, and what the gateway holds of a connection at a time stays within the limit.

The backend reads slowly, so the gateway
always waits for it and the client's bytes pile up in the kernel: each read the gateway
makes is then as large as it allows itself. A chunked upload is forwarded one chunk per
read, so the backend sees those sizes.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trio
import trustme
from hyperframe.frame import PingFrame, SettingsFrame, WindowUpdateFrame
from trio_websocket import open_websocket_url

from tests.e2e.conftest import Echo, Gateway, SocketServer, curl, free_port, http_gateway
from tests.e2e.h2wire import PING, PREFACE, SETTINGS, Wire, raw_frame
from tests.e2e.test_grpc_e2e import GRPC_ROUTE, OPTIONS, _handlers
from tests.e2e.test_grpc_e2e import Backend as GrpcBackend
from tests.e2e.test_h2_e2e import service
from tests.e2e.test_https import tls_secret

pytestmark = pytest.mark.e2e

LIMIT = 16 * 1024
TLS_LIMIT = 8 * 1024
UPLOAD = 2 * 1024 * 1024
HOST = "up.example.com"


class PieceBackend(SocketServer):
    """Reads a request body slowly and answers what it got: length, SHA-256 and, for a
    chunked body, the largest chunk (one chunk per piece the gateway read). The first try
    of a request to ``/retry/<id>`` gets 503 once its body was read whole."""

    def __init__(self) -> None:
        super().__init__(concurrent=True)
        self.tries: Counter[str] = Counter()

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        reader = _Reader(conn)
        head = reader.until(b"\r\n\r\n").decode("latin-1").lower()
        target = head.split(" ", 2)[1]
        fields = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
        digest, length, largest = hashlib.sha256(), 0, 0
        if fields.get("transfer-encoding") == "chunked":
            while size := int(reader.until(b"\r\n"), 16):
                largest = max(largest, size)
                digest.update(reader.exactly(size))
                length += size
                reader.exactly(2)
            reader.until(b"\r\n")
        else:
            length = int(fields.get("content-length", "0"))
            digest.update(reader.exactly(length))
        if target.startswith("/retry/"):
            self.tries[target] += 1
            if self.tries[target] == 1:
                conn.sendall(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                return
        body = json.dumps({"length": length, "sha256": digest.hexdigest(), "largest": largest})
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body.encode())
        )


class _Reader:
    """Buffered reads off a socket, 16 KiB at a time with a pause: a slow backend."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""

    def _more(self) -> None:
        chunk = self.conn.recv(16384)
        if not chunk:
            raise ConnectionError("the gateway closed early")
        self.buffer += chunk
        time.sleep(0.0005)  # the slow consumer this test is about, not a synchronisation

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._more()
        data, _, self.buffer = self.buffer.partition(marker)
        return data

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._more()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


@dataclass
class Env:
    backend: PieceBackend
    limited: int  # HTTP, bufferLimit 16Ki
    unlimited: int  # HTTP, no policy
    secure: int  # HTTPS, bufferLimit 8Ki (below a TLS record, which is read whole otherwise)
    cafile: str
    upload: Path
    sha256: str


def _policy(name: str, section: str, limit: str) -> str:
    return f"""\
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs:
  - {{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: {section}}}
  connection: {{bufferLimit: {limit}}}
"""


ROUTES = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: up, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: pieces, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /retry}}]
    retry: {codes: [503], attempts: 2, backoff: 1ms}
    backendRefs: [{name: pieces, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /ws}}]
    backendRefs: [{name: echo, port: 80}]
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = Path(tmp_path_factory.mktemp("bufferlimit"))
    backend, echo, gateway = PieceBackend(), Echo("ws", tmp), Gateway(tmp)
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=OPTIONS)
    grpc_server.add_generic_rpc_handlers((_handlers(GrpcBackend()),))
    service(
        gateway, "grpc-backend", grpc_server.add_insecure_port("127.0.0.1:0"), "kubernetes.io/h2c"
    )
    grpc_server.start()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    upload = tmp / "upload.bin"
    data = bytes(range(256)) * (UPLOAD // 256)
    upload.write_bytes(data)
    limited, unlimited, secure = free_port(), free_port(), free_port()
    listeners = f"""\
- {{name: limited, protocol: HTTP, port: {limited}}}
- {{name: unlimited, protocol: HTTP, port: {unlimited}}}
- name: secure
  protocol: HTTPS
  port: {secure}
  tls: {{certificateRefs: [{{name: cert}}]}}
"""
    gateway.service("pieces", backend)
    gateway.service("echo", echo)
    gateway.write("secret.yaml", tls_secret("cert", ca, HOST))
    gateway.write("gateway.yaml", http_gateway(limited, listeners=listeners))
    policies = _policy("limited", "limited", "16Ki") + _policy("tls", "secure", "8Ki")
    gateway.write("routes.yaml", ROUTES + policies)
    gateway.write("grpcroute.yaml", GRPC_ROUTE)
    try:
        gateway.start()
        for name in ("limited", "tls"):
            status = gateway.resource("ClientTrafficPolicy", name)["status"]
            conditions = {c["type"]: c["status"] for c in status["ancestors"][0]["conditions"]}
            assert conditions["Accepted"] == "True", status
        yield Env(
            backend,
            limited,
            unlimited,
            secure,
            str(tmp / "ca.pem"),
            upload,
            hashlib.sha256(data).hexdigest(),
        )
    finally:
        if gateway.process is not None:
            gateway.stop()
        echo.process.stop()
        backend.close()
        grpc_server.stop(None)


def _upload(env: Env, url: str, *args: str) -> dict[str, int | str]:
    out = curl(*args, "--data-binary", f"@{env.upload}", url, timeout=30)
    assert out.returncode == 0, out.stderr
    got: dict[str, int | str] = json.loads(out.stdout)
    assert (got["length"], got["sha256"]) == (UPLOAD, env.sha256)  # streamed through whole
    return got


CHUNKED = ("-H", "Transfer-Encoding: chunked")


def test_http1_reads_stay_within_the_limit(env: Env) -> None:
    got = _upload(env, f"http://127.0.0.1:{env.limited}/up", "--http1.1", *CHUNKED)
    assert 0 < int(got["largest"]) <= LIMIT
    # the same upload on a listener without the policy: the gateway reads more at a time
    other = _upload(env, f"http://127.0.0.1:{env.unlimited}/up", "--http1.1", *CHUNKED)
    assert int(other["largest"]) > LIMIT


def test_https_reads_stay_within_the_limit(env: Env) -> None:
    url = f"https://{HOST}:{env.secure}/up"
    resolve = ("--resolve", f"{HOST}:{env.secure}:127.0.0.1", "--cacert", env.cafile)
    got = _upload(env, url, "--http1.1", *resolve, *CHUNKED)
    assert 0 < int(got["largest"]) <= TLS_LIMIT
    _upload(env, url, "--http2", *resolve)  # h2 over TLS streams through the small windows


def _server_windows(port: int) -> tuple[int, int]:
    """The stream window the server's SETTINGS give a client, and its connection window."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        wire = Wire(sock, "x", "http")
        ping = b"windows!"
        wire.send(PREFACE + raw_frame(SETTINGS, 0, 0) + raw_frame(PING, 0, 0, ping))
        stream_window, connection_window = 65535, 65535
        while True:  # what the server sends when a connection starts comes before the PING ACK
            frame = wire.frame()
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                stream_window = dict(frame.settings).get(SettingsFrame.INITIAL_WINDOW_SIZE, 65535)
            elif isinstance(frame, WindowUpdateFrame) and frame.stream_id == 0:
                connection_window += frame.window_increment
            elif isinstance(frame, PingFrame) and frame.opaque_data == ping:
                return stream_window, connection_window


def test_h2c_windows_bound_what_a_client_sends_ahead(env: Env) -> None:
    assert _server_windows(env.limited) == (65535, 65535)  # 16 KiB, raised to HTTP/2's floor
    stream, connection = _server_windows(env.unlimited)
    assert stream > 65535
    assert connection > 65535
    _upload(env, f"http://127.0.0.1:{env.limited}/up", "--http2-prior-knowledge")


def test_grpc_large_messages_stream_through_small_windows(env: Env) -> None:
    payload = bytes(range(256)) * (4 * 1024 * 1024 // 256)
    with grpc.insecure_channel(f"127.0.0.1:{env.limited}", options=OPTIONS) as channel:
        big: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/test.Echo/Big")
        assert big(payload, timeout=20) == payload[::-1]
        parts = iter([payload[i : i + 100_000] for i in range(0, len(payload), 100_000)])
        upload: grpc.StreamUnaryMultiCallable[bytes, bytes]
        upload = channel.stream_unary("/test.Echo/ClientStream")
        sent = upload(parts, timeout=20)
        assert sent == b"%d" % len(payload)


async def test_websocket_large_messages_relay(env: Env) -> None:
    message = b"\x01" * (1 << 20)
    with trio.fail_after(20):
        async with open_websocket_url(
            f"ws://127.0.0.1:{env.limited}/ws", max_message_size=2 << 20
        ) as ws:
            for _ in range(2):
                await ws.send_message(message)
                assert await ws.get_message() == message


@pytest.mark.parametrize(
    ("port", "size", "retried"),
    [
        ("limited", 12 * 1024, True),  # kept whole within the 16 KiB limit: sent again
        ("limited", 40 * 1024, False),  # past it: no retry, the first answer (as Envoy)
        ("unlimited", 24 * 1024, True),  # Envoy Gateway's default limit, 32 KiB, applies
        ("unlimited", 40 * 1024, False),
    ],
)
def test_a_retry_sends_a_body_again_while_it_fits_the_limit(
    env: Env, port: str, size: int, retried: bool
) -> None:
    target = f"/retry/{uuid.uuid4().hex}"
    data = bytes(range(256)) * (size // 256)
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--data-binary",
            "@-",
            f"http://127.0.0.1:{getattr(env, port)}{target}",
        ],
        input=data,
        capture_output=True,
        check=True,
        timeout=20,
    )
    body, _, code = out.stdout.rpartition(b"\n")
    assert env.backend.tries[target] == (2 if retried else 1)
    if retried:
        assert code == b"200"
        assert json.loads(body)["sha256"] == hashlib.sha256(data).hexdigest()
    else:
        assert code == b"503"
