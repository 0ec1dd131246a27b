"""HTTP/2 over TLS to backends: BackendTLSPolicy with GRPCRoute and with appProtocol h2c.

One gateway serves every case, in front of backends the test runs itself:

- a grpcio server with TLS server credentials behind a GRPCRoute, called by a
  grpcio client (h2c to the gateway, h2 over TLS with ALPN h2 beyond it);
- ``TLSBackend``, a small threaded server built on ``h2`` and ``h11`` that speaks
  HTTP/2 when ALPN picks h2 and HTTP/1.1 otherwise, and answers with JSON
  saying what it saw (protocol, ALPN, connection, stream), reached by curl
  over HTTP/1.1 and over h2c prior knowledge, and by h2load for many streams
  on one client connection;
- copies of both whose certificates the policy's CA does not sign.

Every certificate is issued by trustme; the CA reaches the gateway as a
ConfigMap named by a BackendTLSPolicy.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h11
import pytest
import trio
import trustme
import wsproto
import wsproto.connection
import wsproto.events
from trio_websocket import open_websocket_url
from wsproto.utilities import generate_accept_token

from tests.e2e.conftest import (
    ROOT,
    Gateway,
    Port,
    curl,
    free_port,
    http_gateway,
    request,
    wait_for,
)
from tests.h2text import text_headers

pytestmark = pytest.mark.e2e

HOSTNAME = "backend.example.com"
HOLD_LIMIT = 5.0  # how long held requests wait for company before being answered anyway
CONCURRENT = 8
GRPC_OPTIONS = [("grpc.enable_http_proxy", 0)]


class TLSBackend:
    """A TLS server: HTTP/2 when ALPN selects h2, HTTP/1.1 otherwise; it records what it saw.

    Every answer is JSON naming the protocol, the ALPN result, the connection
    (numbered in accept order) and, for HTTP/2, the stream. A request whose
    query has ``hold=N`` is answered only once N held requests are open on its
    connection (or after ``HOLD_LIMIT``), which shows they were in flight at once.
    An HTTP/1.1 WebSocket Upgrade is accepted and its text messages echoed.
    """

    def __init__(self, ca: trustme.CA) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(HOSTNAME).configure_cert(self.context)
        self.context.set_alpn_protocols(["h2", "http/1.1"])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.lock = threading.Lock()
        self.alpns: list[str | None] = []  # one entry per TLS connection accepted
        self.failed_handshakes = 0
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.hold_timeouts = 0  # held requests answered without company, after HOLD_LIMIT
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        try:
            tls = self.context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            with self.lock:
                self.failed_handshakes += 1
            sock.close()
            return
        alpn = tls.selected_alpn_protocol()
        with self.lock:
            conn_id = len(self.alpns)
            self.alpns.append(alpn)
        try:
            if alpn == "h2":
                self._serve_h2(tls, conn_id)
            else:
                self._serve_h1(tls, conn_id, alpn)
        except (OSError, h2.exceptions.ProtocolError, h11.ProtocolError) as exc:
            with self.lock:
                self.errors.append(f"connection {conn_id}: {exc!r}")
        finally:
            tls.close()

    def _answer(self, info: dict[str, Any]) -> bytes:
        with self.lock:
            self.requests.append(info)
        return json.dumps(info).encode()

    def _serve_h1(self, tls: ssl.SSLSocket, conn_id: int, alpn: str | None) -> None:
        conn = h11.Connection(h11.SERVER)
        info: dict[str, Any] = {}
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(tls.recv(65536))
            elif isinstance(event, h11.Request):
                headers = {k.decode(): v.decode() for k, v in event.headers}
                info = {
                    "proto": "HTTP/" + event.http_version.decode(),
                    "alpn": alpn,
                    "conn": conn_id,
                    "method": event.method.decode(),
                    "path": event.target.decode(),
                    "authority": headers.get("host"),
                    "body": 0,
                }
                if headers.get("upgrade", "").lower() == "websocket":
                    info["key"] = headers["sec-websocket-key"]
            elif isinstance(event, h11.Data):
                info["body"] += len(event.data)
            elif isinstance(event, h11.EndOfMessage) and "key" in info:
                self._answer(info)
                accept = generate_accept_token(info["key"].encode())
                switch = [("upgrade", "websocket"), ("connection", "Upgrade")]
                switch.append(("sec-websocket-accept", accept.decode()))
                tls.sendall(conn.send(h11.InformationalResponse(status_code=101, headers=switch)))
                self._echo_websocket(tls, conn.trailing_data[0], f"{info['proto']} {alpn}")
                return
            elif isinstance(event, h11.EndOfMessage):
                payload = self._answer(info)
                head = [("content-type", "application/json"), ("content-length", str(len(payload)))]
                tls.sendall(conn.send(h11.Response(status_code=200, headers=head)) or b"")
                tls.sendall(conn.send(h11.Data(data=payload)) or b"")
                tls.sendall(conn.send(h11.EndOfMessage()) or b"")
                conn.start_next_cycle()
            else:  # ConnectionClosed
                return

    def _echo_websocket(self, tls: ssl.SSLSocket, data: bytes, prefix: str) -> None:
        """Answer each text message with ``prefix: message`` until the close handshake."""
        ws = wsproto.connection.Connection(wsproto.ConnectionType.SERVER)
        while True:
            if data:
                ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, wsproto.events.TextMessage):
                    tls.sendall(ws.send(wsproto.events.Message(data=f"{prefix}: {event.data}")))
                elif isinstance(event, wsproto.events.CloseConnection):
                    tls.sendall(ws.send(event.response()))
                    return
            data = tls.recv(65536)
            if not data:
                return

    def _serve_h2(self, tls: ssl.SSLSocket, conn_id: int) -> None:
        config = h2.config.H2Configuration(client_side=False)
        conn = h2.connection.H2Connection(config)
        conn.initiate_connection()
        tls.sendall(conn.data_to_send())
        tls.settimeout(0.05)
        streams: dict[int, dict[str, Any]] = {}
        ended: list[int] = []
        first_held: float | None = None
        while True:
            try:
                data = tls.recv(65536)
            except TimeoutError:
                data = None
            if data == b"":
                return
            for event in conn.receive_data(data) if data else ():
                if isinstance(event, h2.events.RequestReceived):
                    headers = text_headers(event.headers)
                    streams[event.stream_id] = {
                        "proto": "HTTP/2",
                        "alpn": "h2",
                        "conn": conn_id,
                        "stream": event.stream_id,
                        "method": headers[":method"],
                        "path": headers[":path"],
                        "scheme": headers[":scheme"],
                        "authority": headers.get(":authority"),
                        "body": 0,
                    }
                elif isinstance(event, h2.events.DataReceived):
                    streams[event.stream_id]["body"] += len(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended.append(event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    streams.pop(event.stream_id, None)
                    if event.stream_id in ended:
                        ended.remove(event.stream_id)
            held = [s for s in ended if _hold(streams[s]["path"])]
            if held and first_held is None:
                first_held = time.monotonic()
            wanted = max((_hold(streams[s]["path"]) for s in held), default=0)
            release = len(held) >= wanted
            if not release and first_held and time.monotonic() - first_held > HOLD_LIMIT:
                release = True
                with self.lock:
                    self.hold_timeouts += 1
            for stream_id in [s for s in ended if release or s not in held]:
                ended.remove(stream_id)
                payload = self._answer(streams.pop(stream_id))
                head = [(":status", "200"), ("content-type", "application/json")]
                conn.send_headers(stream_id, [*head, ("content-length", str(len(payload)))])
                conn.send_data(stream_id, payload, end_stream=True)
            if release:
                first_held = None
            if out := conn.data_to_send():
                tls.sendall(out)


def _hold(path: str) -> int:
    return int(parse_qs(urlsplit(path).query).get("hold", ["0"])[0])


class GRPCBackend:
    """A grpcio server with TLS server credentials; records each call's transport security."""

    def __init__(self, ca: trustme.CA, service: str) -> None:
        self.calls: list[str] = []
        leaf = ca.issue_cert(HOSTNAME)
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        credentials = grpc.ssl_server_credentials([(leaf.private_key_pem.bytes(), chain)])
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((self._handlers(service),))
        self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.server.start()

    def _security(self, method: str, context: grpc.ServicerContext) -> bytes:
        auth = context.auth_context()
        # grpc's stubs type the values as bytes; they are lists of bytes.
        types = cast("list[bytes]", auth.get("transport_security_type", [b"none"]))
        security = b",".join(types)
        self.calls.append(method)
        return security

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return request + b"|" + self._security("Unary", context)

    def server_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._security("ServerStream", context)
        for i in range(int(request)):
            yield b"%d" % i

    def bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        self._security("Bidi", context)
        for r in requests:
            yield r.upper()

    def _handlers(self, service: str) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            service,
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
                "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream),
                "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
            },
        )


def _ca_config_map(name: str, ca: trustme.CA) -> str:
    pem = textwrap.indent(ca.cert_pem.bytes().decode(), "    ")
    return f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}, namespace: default}}
data:
  ca.crt: |
{pem}"""


def _policy(name: str, services: tuple[str, ...], ca_map: str) -> str:
    targets = ", ".join(f'{{group: "", kind: Service, name: {s}}}' for s in services)
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{targets}]
  validation:
    caCertificateRefs: [{{group: "", kind: ConfigMap, name: {ca_map}}}]
    hostname: {HOSTNAME}
"""


ROUTES = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{method: {service: test.Secure}}]
    backendRefs: [{name: grpc-tls, port: 80}]
  - matches: [{method: {service: test.WrongCA}}]
    backendRefs: [{name: grpc-wrong-ca, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: http, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /h2}}]
    backendRefs: [{name: h2-tls, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /h1}}]
    backendRefs: [{name: h1-tls, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /wrong-ca}}]
    backendRefs: [{name: h2-wrong-ca, port: 80}]
"""


SERVICES = ("grpc-tls", "grpc-wrong-ca", "h2-tls", "h1-tls", "h2-wrong-ca")


@dataclass
class Env:
    port: int
    gateway: Gateway
    channel: grpc.Channel
    grpc: GRPCBackend
    grpc_wrong_ca: GRPCBackend
    h2: TLSBackend
    h1: TLSBackend
    h2_wrong_ca: TLSBackend

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    ca, stranger = trustme.CA(), trustme.CA()  # the policy trusts ca; stranger signs *-wrong-ca
    tmp = tmp_path_factory.mktemp("backend-tls-h2")
    gateway = Gateway(tmp)
    grpc_ok, grpc_bad = GRPCBackend(ca, "test.Secure"), GRPCBackend(stranger, "test.WrongCA")
    h2_ok, h1_ok, h2_bad = TLSBackend(ca), TLSBackend(ca), TLSBackend(stranger)
    port = free_port()
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.service("grpc-tls", Port(grpc_ok.port))
    gateway.service("grpc-wrong-ca", Port(grpc_bad.port))
    gateway.service("h2-tls", Port(h2_ok.port), app_protocol="kubernetes.io/h2c")
    gateway.service("h1-tls", Port(h1_ok.port))
    gateway.service("h2-wrong-ca", Port(h2_bad.port), app_protocol="kubernetes.io/h2c")
    gateway.write(
        "backend-tls.yaml",
        _ca_config_map("backend-ca", ca) + "---\n" + _policy("backends", SERVICES, "backend-ca"),
    )
    gateway.write("routes.yaml", ROUTES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        gateway.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS)
    try:
        yield Env(port, gateway, channel, grpc_ok, grpc_bad, h2_ok, h1_ok, h2_bad)
    finally:
        channel.close()
        gateway.stop()
        for server in (grpc_ok.server, grpc_bad.server):
            server.stop(None)
        for backend in (h2_ok, h1_ok, h2_bad):
            backend.close()


def _curl_json(*args: str) -> tuple[dict[str, Any], str]:
    """curl's JSON answer and the HTTP version it used towards the gateway."""
    result = curl(*args, "-H", "Host: example.com", "-w", "\n%{http_version}")
    assert result.returncode == 0, result.stderr
    body, _, version = result.stdout.rpartition("\n")
    return json.loads(body), version


def test_grpc_unary_and_streaming_over_tls(env: Env) -> None:
    unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = env.channel.unary_unary(
        "/test.Secure/Unary"
    )
    assert unary(b"hello", timeout=10) == b"hello|ssl"
    stream: grpc.UnaryStreamMultiCallable[bytes, bytes]
    stream = env.channel.unary_stream("/test.Secure/ServerStream")
    assert list(stream(b"30", timeout=10)) == [b"%d" % i for i in range(30)]
    bidi: grpc.StreamStreamMultiCallable[bytes, bytes] = env.channel.stream_stream(
        "/test.Secure/Bidi"
    )
    words = [b"alpha", b"beta", b"gamma"]
    assert list(bidi(iter(words), timeout=10)) == [w.upper() for w in words]
    assert env.grpc.calls[-3:] == ["Unary", "ServerStream", "Bidi"]


def test_grpc_backend_failing_verification_is_unavailable(env: Env) -> None:
    wrong: grpc.UnaryUnaryMultiCallable[bytes, bytes]
    wrong = env.channel.unary_unary("/test.WrongCA/Unary")
    with pytest.raises(grpc.RpcError) as info:
        wrong(b"x", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert env.grpc_wrong_ca.calls == []


def test_h1_and_h2c_clients_to_h2_backend_over_tls(env: Env) -> None:
    for flag, version in (("--http1.1", "1.1"), ("--http2-prior-knowledge", "2")):
        doc, got = _curl_json(flag, "--data-binary", "payload", env.url("/h2/x?y=1"))
        assert got == version
        assert doc["proto"] == "HTTP/2"
        assert doc["alpn"] == "h2"
        assert doc["scheme"] == "https"
        assert (doc["method"], doc["path"], doc["body"]) == ("POST", "/h2/x?y=1", 7)
        assert doc["authority"] == "example.com"
    assert env.h2.alpns
    assert set(env.h2.alpns) == {"h2"}
    assert env.h2.failed_handshakes == 0
    assert env.h2.errors == []


def test_concurrent_requests_share_one_backend_tls_connection(env: Env) -> None:
    connections_before = len(env.h2.alpns)
    path = f"/h2/many?hold={CONCURRENT}&i="
    # CONCURRENT HTTP/1.1 clients at once, each on its own connection to the gateway
    with futures.ThreadPoolExecutor(CONCURRENT) as pool:
        answers = list(pool.map(lambda i: request(env.port, f"{path}{i}"), range(CONCURRENT)))
    assert [status for status, _, _ in answers] == [200] * CONCURRENT
    docs = [json.loads(body) for _, _, body in answers]
    # then CONCURRENT streams at once on one h2c connection, from h2load (nghttp2); curl
    # 7.88 cannot multiplex with --http2-prior-knowledge (curl/curl#10634)
    urls = [env.url(f"{path}{CONCURRENT + i}") for i in range(CONCURRENT)]
    out = subprocess.run(
        ["h2load", "-n", str(CONCURRENT), "-c", "1", "-m", str(CONCURRENT), *urls],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    assert f"{CONCURRENT} succeeded" in out, out
    assert f"{CONCURRENT} 2xx" in out, out
    with env.h2.lock:
        seen = [d for d in env.h2.requests if d["path"].startswith(path)]
    assert all(doc in seen for doc in docs)  # what the HTTP/1.1 clients got is what was seen

    assert sorted(int(d["path"].rpartition("=")[2]) for d in seen) == list(range(2 * CONCURRENT))
    assert {d["proto"] for d in seen} == {"HTTP/2"}
    # all on one backend TLS connection, as distinct streams...
    assert len({d["conn"] for d in seen}) == 1
    assert len({d["stream"] for d in seen}) == 2 * CONCURRENT
    assert len(env.h2.alpns) - connections_before <= 1
    assert set(env.h2.alpns) == {"h2"}
    # ...and each batch was in flight on it at once: no held request waited out HOLD_LIMIT
    assert env.h2.hold_timeouts == 0


def test_h2c_client_to_http1_backend_over_tls(env: Env) -> None:
    doc, version = _curl_json("--http2-prior-knowledge", env.url("/h1/plain?z=2"))
    assert version == "2"
    assert doc["proto"] == "HTTP/1.1"
    assert doc["alpn"] is None  # an HTTP/1.1 backend is offered no h2
    assert (doc["method"], doc["path"], doc["authority"]) == ("GET", "/h1/plain?z=2", "example.com")


def test_h2_backend_failing_verification_gets_no_request(env: Env) -> None:
    for flag in ("--http1.1", "--http2-prior-knowledge"):
        url = env.url("/wrong-ca/secret")
        result = curl(flag, "-o", "/dev/null", "-w", "%{http_code}", url)
        assert result.stdout == "503", result.stderr
    wait_for(lambda: env.h2_wrong_ca.failed_handshakes >= 1, what="a refused handshake")
    assert env.h2_wrong_ca.alpns == []
    assert env.h2_wrong_ca.requests == []


async def test_websocket_to_h2_backend_over_tls_is_http11(env: Env) -> None:
    """The Upgrade is HTTP/1.1, so its TLS connection offers ALPN http/1.1, not h2."""
    with trio.fail_after(10):
        async with open_websocket_url(f"ws://127.0.0.1:{env.port}/h2/chat") as ws:
            await ws.send_message("hi")
            assert await ws.get_message() == "HTTP/1.1 http/1.1: hi"
    with env.h2.lock:
        upgrades = [d for d in env.h2.requests if d["path"] == "/h2/chat"]
    assert [(d["proto"], d["alpn"]) for d in upgrades] == [("HTTP/1.1", "http/1.1")]
