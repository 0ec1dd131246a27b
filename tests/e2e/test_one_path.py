"""One rule, every request kind, one outcome: every filter holds for every kind of request.

Each row is a route (on its own hostname) whose one rule carries one filter
kind; each column is a real client: curl over HTTP/1.1, over h2c and over
HTTP/2 with TLS (ALPN h2), a raw HTTP/1.1 ``Upgrade: websocket`` handshake,
an RFC 8441 extended CONNECT with the ``h2`` library, and a grpcio unary
call. All of them reach the same
backend, which answers each kind in its own shape (200, a 101, a gRPC
message with trailers) and reports in an ``x-seen`` header what it received.
The same rule must give the same outcome in every column.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h11
import pytest
import trustme
from wsproto.utilities import generate_accept_token

from tests.e2e.conftest import Gateway, Port, SocketServer, curl, http_gateway, wait_for
from tests.h2text import text_headers
from tests.ports import free_port

pytestmark = pytest.mark.e2e

_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


class SeeingBackend(SocketServer):
    """HTTP/1.1 backend answering every kind of request with what it saw (``x-seen``)."""

    def __init__(self) -> None:
        super().__init__(concurrent=True)
        self.seen: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        server = h11.Connection(h11.SERVER)
        while True:
            request, body = self._read_request(conn, server)
            if request is None:
                return
            fields = {n.decode(): v.decode() for n, v in request.headers}
            seen = {"path": request.target.decode(), "headers": fields}
            with self._lock:
                self.seen.append(seen)
            token = base64.b64encode(json.dumps(seen).encode())
            if fields["host"].startswith("timeout."):  # never answers: hold until the proxy goes
                while conn.recv(65536):
                    pass
                return
            if fields.get("upgrade", "").lower() == "websocket":
                return self._switch(conn, fields, token)
            self._answer(conn, server, fields, token, body)
            if server.our_state is h11.MUST_CLOSE:
                return
            server.start_next_cycle()

    @staticmethod
    def _read_request(conn: socket.socket, server: h11.Connection) -> tuple[Any, bytes]:
        request, body = None, b""
        while True:
            event = server.next_event()
            if event is h11.NEED_DATA:
                try:
                    server.receive_data(conn.recv(65536))
                except OSError:
                    return None, b""
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            else:
                return None, b""

    @staticmethod
    def _switch(conn: socket.socket, fields: dict[str, str], token: bytes) -> None:
        accept = generate_accept_token(fields["sec-websocket-key"].encode())
        head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        conn.sendall(
            head + b"Sec-WebSocket-Accept: " + accept + b"\r\nX-Seen: " + token + b"\r\n\r\n"
        )
        while conn.recv(65536):  # until the client goes
            pass

    @staticmethod
    def _answer(
        conn: socket.socket,
        server: h11.Connection,
        fields: dict[str, str],
        token: bytes,
        body: bytes,
    ) -> None:
        grpc_call = fields.get("content-type", "").startswith("application/grpc")
        headers: list[tuple[str, str]] = [("x-seen", token.decode())]
        if grpc_call:
            message = body[5:]  # echo the message: a gRPC frame is a flag, a length, the bytes
            out = b"\x00" + len(message).to_bytes(4, "big") + message
            headers += [("content-type", "application/grpc"), ("transfer-encoding", "chunked")]
        else:
            out = b"ok"
            headers += [("content-length", "2")]
        data = server.send(h11.Response(status_code=200, headers=headers)) or b""
        data += server.send(h11.Data(data=out)) or b""
        trailers = [("grpc-status", "0")] if grpc_call else []
        data += server.send(h11.EndOfMessage(headers=trailers)) or b""
        conn.sendall(data)


@dataclass
class Outcome:
    """What a client observed, in terms that mean the same for every kind."""

    status: int | str  # "forwarded" for 200 / 101 / a gRPC OK
    headers: dict[str, str] = field(default_factory=dict)
    seen: dict[str, Any] | None = None

    @classmethod
    def of(cls, status: int, headers: dict[str, str], forwarded: tuple[int, ...]) -> Outcome:
        seen = headers.get("x-seen")
        decoded = json.loads(base64.b64decode(seen)) if seen else None
        return cls("forwarded" if status in forwarded else status, headers, decoded)


# --- the clients ---------------------------------------------------------------------------


@dataclass
class Env:
    """Where the table's gateway listens: plain HTTP, HTTPS (and the CA that signed it)."""

    port: int
    tls_port: int
    ca_file: str
    mirror: SeeingBackend


def _curl(url: str, host: str, headers: dict[str, str], *extra: str) -> Outcome:
    args = ["-o", "/dev/null", "-D", "-", "-H", f"Host: {host}"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    done = curl(*extra, *args, url)
    assert done.returncode == 0, done.stderr
    blocks = [b for b in done.stdout.replace("\r\n", "\n").split("\n\n") if b.strip()]
    lines = blocks[-1].split("\n")
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return Outcome.of(int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, (200,))


_TARGET = "/table/path?q=1"


def http1(env: Env, host: str, headers: dict[str, str]) -> Outcome:
    return _curl(f"http://127.0.0.1:{env.port}{_TARGET}", host, headers, "--http1.1")


def h2c(env: Env, host: str, headers: dict[str, str]) -> Outcome:
    url = f"http://127.0.0.1:{env.port}{_TARGET}"
    return _curl(url, host, headers, "--http2-prior-knowledge")


def h2_tls(env: Env, host: str, headers: dict[str, str]) -> Outcome:
    """HTTP/2 over TLS (ALPN h2), the name in SNI as in Host."""
    resolve = f"{host}:{env.tls_port}:127.0.0.1"
    url = f"https://{host}:{env.tls_port}{_TARGET}"
    return _curl(url, host, headers, "--http2", "--cacert", env.ca_file, "--resolve", resolve)


def websocket_h1(env: Env, host: str, headers: dict[str, str]) -> Outcome:
    port = env.port
    lines = [
        "GET /table/path?q=1 HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {_KEY.decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {data!r}"
            data += chunk
    head = data.split(b"\r\n\r\n")[0].decode().split("\r\n")
    fields = {k.lower(): v for k, v in (line.split(": ", 1) for line in head[1:])}
    outcome = Outcome.of(int(head[0].split()[1]), fields, (101,))
    if outcome.status == "forwarded":
        assert fields["sec-websocket-accept"] == generate_accept_token(_KEY).decode()
    return outcome


def websocket_h2(env: Env, host: str, headers: dict[str, str]) -> Outcome:
    port = env.port
    conn = h2.connection.H2Connection(h2.config.H2Configuration())
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        while not conn.remote_settings.enable_connect_protocol:
            conn.receive_data(sock.recv(65536))
        fields = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http")]
        fields += [(":authority", host), (":path", "/table/path?q=1")]
        fields += [("sec-websocket-version", "13"), *headers.items()]
        conn.send_headers(1, fields)
        sock.sendall(conn.data_to_send())
        while True:
            data = sock.recv(65536)
            assert data, "closed before the response"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    got = text_headers(event.headers)
                    status = int(got.pop(":status"))
                    return Outcome.of(status, got, (200,))
            sock.sendall(conn.data_to_send())


_GRPC_AS_HTTP = {
    grpc.StatusCode.UNIMPLEMENTED: 404,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,  # the gateway's timeout, as proxy.py answers it
}


def grpc_unary(env: Env, host: str, headers: dict[str, str]) -> Outcome:
    port = env.port
    options = [("grpc.default_authority", host), ("grpc.enable_retries", 0)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/table.Echo/Call")
        try:
            reply, info = call.with_call(b"ping", metadata=tuple(headers.items()), timeout=10)
        except grpc.RpcError as exc:
            details = exc.details() or ""
            if "http2 header with status: " in details:  # an HTTP answer, not a gRPC one
                return Outcome(int(details.rsplit(": ", 1)[1].split()[0]), {})
            return Outcome(_GRPC_AS_HTTP.get(exc.code(), str(exc.code())), {})
        assert reply == b"ping"
        fields = {k: v for k, v in info.initial_metadata() if isinstance(v, str)}
        return Outcome.of(200, fields, (200,))


KINDS: dict[str, Callable[[Env, str, dict[str, str]], Outcome]] = {
    "http1": http1,
    "h2c": h2c,
    "h2-tls": h2_tls,
    "websocket-h1": websocket_h1,
    "websocket-h2": websocket_h2,
    "grpc": grpc_unary,
}


# --- the rules -----------------------------------------------------------------------------


@dataclass
class Row:
    """A route with one filter kind, what a client sends, and the outcome every kind must see."""

    filters: str
    expect: Callable[[Outcome], bool]
    send: dict[str, str] = field(default_factory=dict)
    backend_filters: str = ""
    extra: str = ""
    forwards: bool = True
    kinds: tuple[str, ...] = tuple(KINDS)


def _seen_header(name: str, value: str) -> Callable[[Outcome], bool]:
    return lambda o: o.status == "forwarded" and (o.seen or {})["headers"].get(name) == value


ROWS: dict[str, Row] = {
    "none": Row("[]", lambda o: o.status == "forwarded" and o.seen is not None),
    "redirect": Row(
        "[{type: RequestRedirect, requestRedirect: {scheme: https, statusCode: 301}}]",
        lambda o: (
            o.status == 301
            and o.headers.get("location", "https://redirect.test/table/path?q=1")
            == "https://redirect.test/table/path?q=1"
        ),
        forwards=False,
    ),
    "request-header": Row(
        "[{type: RequestHeaderModifier, "
        "requestHeaderModifier: {set: [{name: X-Table, value: set}]}}]",
        _seen_header("x-table", "set"),
    ),
    "response-header": Row(
        "[{type: ResponseHeaderModifier, "
        "responseHeaderModifier: {add: [{name: X-Resp, value: added}]}}]",
        lambda o: o.status == "forwarded" and o.headers.get("x-resp") == "added",
    ),
    "url-rewrite": Row(
        "[{type: URLRewrite, urlRewrite: {hostname: rewritten.test}}]",
        _seen_header("host", "rewritten.test"),
    ),
    "cors": Row(
        "[{type: CORS, cors: {allowOrigins: ['https://app.test']}}]",
        lambda o: (
            o.status == "forwarded"
            and o.headers.get("access-control-allow-origin") == "https://app.test"
        ),
        send={"origin": "https://app.test"},
    ),
    "session": Row(
        "[]",
        lambda o: o.status == "forwarded" and o.headers.get("set-cookie", "").startswith("table="),
        extra="    sessionPersistence: {type: Cookie, cookie: {name: table}}\n",
    ),
    "backend-filter": Row(
        "[]",
        _seen_header("x-backend", "yes"),
        backend_filters="[{type: RequestHeaderModifier, "
        "requestHeaderModifier: {set: [{name: X-Backend, value: 'yes'}]}}]",
    ),
    "timeout": Row(
        "[]",
        lambda o: o.status == 504,
        extra="    timeouts: {request: 300ms}\n",
    ),
    # a gRPC call has a body, and mirrors copy body-less requests only (proxy.py)
    "mirror": Row(
        "[{type: RequestMirror, requestMirror: {backendRef: {name: mirror, port: 80}}}]",
        lambda o: o.status == "forwarded",
        kinds=("http1", "h2c", "h2-tls", "websocket-h1", "websocket-h2"),
    ),
}


def _route(name: str, row: Row) -> str:
    backend_filters = f", filters: {row.backend_filters}" if row.backend_filters else ""
    backends = f"    backendRefs: [{{name: seeing, port: 80{backend_filters}}}]\n"
    backends = backends if row.forwards else ""
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [{name}.test]
  rules:
  - filters: {row.filters}
{backends}{row.extra}"""


def _secret(ca: trustme.CA) -> str:
    cert = ca.issue_cert(*(f"{name}.test" for name in [*ROWS, "nowhere"]))
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    return f"""\
apiVersion: v1
kind: Secret
metadata: {{name: table-tls, namespace: default}}
type: kubernetes.io/tls
data:
  tls.crt: {base64.b64encode(chain).decode()}
  tls.key: {base64.b64encode(cert.private_key_pem.bytes()).decode()}
"""


@pytest.fixture(scope="module")
def table_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    backend, mirror = SeeingBackend(), SeeingBackend()
    tmp = Path(tmp_path_factory.mktemp("one-path"))
    gateway = Gateway(tmp)
    port, tls_port = free_port(), free_port()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    listeners = f"""\
- {{name: http, protocol: HTTP, port: {port}, allowedRoutes: {{namespaces: {{from: All}}}}}}
- name: https
  protocol: HTTPS
  port: {tls_port}
  tls: {{certificateRefs: [{{name: table-tls}}]}}
  allowedRoutes: {{namespaces: {{from: All}}}}
"""
    gateway.service("seeing", Port(backend.port))
    gateway.service("mirror", Port(mirror.port))
    gateway.write("secret.yaml", _secret(ca))
    gateway.write("gateway.yaml", http_gateway(port, listeners=listeners))
    for name, row in ROWS.items():
        gateway.write(f"route-{name}.yaml", _route(name, row))
    gateway.start()
    assert "ERROR" not in gateway.process.output() if gateway.process else False
    try:
        yield Env(port, tls_port, str(tmp / "ca.pem"), mirror)
    finally:
        gateway.stop()
        backend.close()
        mirror.close()


CELLS = [(row, kind) for row, spec in ROWS.items() for kind in spec.kinds]


@pytest.mark.parametrize(("row", "kind"), CELLS)
def test_same_rule_same_outcome(table_gateway: Env, row: str, kind: str) -> None:
    mirror = table_gateway.mirror
    spec = ROWS[row]
    before = len(mirror.seen)
    outcome = KINDS[kind](table_gateway, f"{row}.test", dict(spec.send))
    assert spec.expect(outcome), outcome
    if row == "mirror":
        wait_for(lambda: len(mirror.seen) > before, what="the mirrored copy")
        copy = mirror.seen[-1]
        assert copy["path"] == "/table/path?q=1"
        assert "upgrade" not in copy["headers"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_no_route_is_404_for_every_kind(table_gateway: Env, kind: str) -> None:
    assert KINDS[kind](table_gateway, "nowhere.test", {}).status == 404
