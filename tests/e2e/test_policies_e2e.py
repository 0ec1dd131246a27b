"""Envoy Gateway policies through ``edgegw run``: HTTP/1.1 and HTTP/2 (curl), WebSocket.

Basic auth with ``htpasswd`` lines (apache2-utils), an IP allowlist checked
with clients bound to 127.0.0.2 / 127.0.0.3, forward auth to an Authelia-like
server (302 to login without a session cookie, 200 + Remote-User with one),
compression with ``curl --compressed``, and a per-client local rate limit.
"""

from __future__ import annotations

import gzip
import http.server
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.e2e.conftest import Gateway, curl, echoed, free_port, http_gateway
from tests.e2e.test_h2_e2e import route

pytestmark = pytest.mark.e2e
HTTP2 = "--http2-prior-knowledge"


class _Authelia(http.server.BaseHTTPRequestHandler):
    """302 to the login page without ``session=ok``; 200 and Remote-User with it."""

    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        _Authelia.seen.append(
            {"path": self.path, **{k.lower(): v for k, v in self.headers.items()}}
        )
        if "session=ok" in (self.headers.get("Cookie") or ""):
            self.send_response(200)
            self.send_header("Remote-User", "alice")
            self.send_header("Remote-Groups", "admins")
        else:
            self.send_response(302)
            self.send_header("Location", "https://auth.example.com/?rd=" + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def authelia() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Authelia)
    server.socket.setblocking(False)  # a connection gone before accept must not block shutdown
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _htpasswd() -> str:
    lines = [
        subprocess.run(
            ["htpasswd", "-nb", *flag, user, "pw-" + user],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for flag, user in ((["-s"], "sha"), (["-m"], "apr"), (["-B", "-C", "5"], "bcrypt"))
    ]
    return "\n".join(lines)


def _policy(kind: str, name: str, route: str, body: str) -> str:
    return f"""\
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: {kind}
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {route}}}]
{body}"""


@pytest.fixture
def port(gateway: Gateway, echoes: Any, authelia: int) -> int:
    port = free_port()
    gateway.service("echo", echoes["a"])
    gateway.service("authelia", type("P", (), {"port": authelia})())
    gateway.write("gateway.yaml", http_gateway(port))
    for name, prefix in (
        ("basic", "/basic"),
        ("lan", "/lan"),
        ("fa", "/fa"),
        ("gz", "/gz"),
        ("rl", "/rl"),
        ("key", "/key"),
        ("cors", "/cors"),
    ):
        gateway.write(f"route-{name}.yaml", route(name, "echo", prefix))
    htpasswd = "\n".join("    " + line for line in _htpasswd().splitlines())
    gateway.write(
        "policies.yaml",
        f"""\
apiVersion: v1
kind: Secret
metadata: {{name: users, namespace: default}}
stringData:
  .htpasswd: |
{htpasswd}
---
apiVersion: v1
kind: Secret
metadata: {{name: api-keys, namespace: default}}
stringData: {{client-a: key-aaa, client-b: key-bbb}}
"""
        + _policy(
            "SecurityPolicy",
            "basic",
            "basic",
            "  basicAuth: {users: {name: users}, forwardUsernameHeader: X-User}\n",
        )
        + _policy(
            "SecurityPolicy",
            "lan",
            "lan",
            """\
  authorization:
    defaultAction: Deny
    rules: [{action: Allow, principal: {clientCIDRs: [127.0.0.2/32]}}]
""",
        )
        + _policy(
            "SecurityPolicy",
            "fa",
            "fa",
            """\
  extAuth:
    http:
      backendRefs: [{name: authelia, port: 80}]
      path: /api/authz/ext-authz/
      headersToBackend: [Remote-User, Remote-Groups]
    headersToExtAuth: [cookie, accept]
""",
        )
        + _policy(
            "SecurityPolicy",
            "key",
            "key",
            """\
  apiKeyAuth:
    credentialRefs: [{name: api-keys}]
    extractFrom: [{headers: [x-api-key]}, {params: [api_key]}]
    forwardClientIDHeader: x-client-id
    sanitize: true
""",
        )
        + _policy(
            "SecurityPolicy",
            "cors",
            "cors",
            """\
  cors: {allowOrigins: ["https://*.example.com"], allowMethods: [GET, PUT], maxAge: 10m}
  basicAuth: {users: {name: users}}
""",
        )
        + _policy(
            "BackendTrafficPolicy",
            "gz",
            "gz",
            "  compression: [{type: Zstd}, {type: Brotli}, {type: Gzip}]\n",
        )
        + _policy(
            "BackendTrafficPolicy",
            "rl",
            "rl",
            """\
  rateLimit:
    type: Local
    local:
      rules:
      - clientSelectors: [{sourceCIDR: {type: Distinct, value: 127.0.0.0/8}}]
        limit: {requests: 2, unit: Hour}
""",
        ),
    )
    gateway.start()
    for policy in ("basic", "lan", "fa", "key", "cors"):
        status = gateway.resource("SecurityPolicy", policy)["status"]
        assert status["ancestors"][0]["conditions"][0]["status"] == "True", status
    return port


def _code(*args: str) -> int:
    out = curl("-o", "/dev/null", "-w", "%{http_code}", *args)
    return int(out.stdout or 0)


@pytest.mark.parametrize("proto", ["--http1.1", HTTP2])
def test_basic_auth(port: int, proto: str) -> None:
    url = f"http://127.0.0.1:{port}/basic"
    out = curl(proto, "-i", url)
    assert out.stdout.split()[1] == "401"
    assert "www-authenticate: basic" in out.stdout.lower()
    for user in ("sha", "apr", "bcrypt"):
        got = curl(proto, "-u", f"{user}:pw-{user}", url)
        assert echoed(got.stdout)["headers"]["x-user"] == [user]
    assert _code(proto, "-u", "sha:wrong", url) == 401


@pytest.mark.parametrize("proto", ["--http1.1", HTTP2])
def test_ip_allowlist_by_source_address(port: int, proto: str) -> None:
    url = f"http://127.0.0.1:{port}/lan"
    assert _code(proto, "--interface", "127.0.0.2", url) == 200
    assert _code(proto, "--interface", "127.0.0.3", url) == 403


@pytest.mark.parametrize("proto", ["--http1.1", HTTP2])
def test_forward_auth_like_authelia(port: int, proto: str) -> None:
    url = f"http://127.0.0.1:{port}/fa/app?x=1"
    out = curl(proto, "-i", "-H", "Remote-User: mallory", url)
    assert out.stdout.split()[1] == "302"
    assert "location: https://auth.example.com/?rd=/api/authz/ext-authz/fa/app?x=1" in (
        out.stdout.lower()
    )
    got = echoed(curl(proto, "-H", "Cookie: session=ok", "-H", "Remote-User: mallory", url).stdout)
    assert got["headers"]["remote-user"] == ["alice"]
    assert got["headers"]["remote-groups"] == ["admins"]
    assert _Authelia.seen[-1]["host"] == f"127.0.0.1:{port}"


@pytest.mark.parametrize("proto", ["--http1.1", HTTP2])
@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_compression(port: int, proto: str, encoding: str) -> None:
    url = f"http://127.0.0.1:{port}/gz/" + "x" * 200
    out = subprocess.run(
        ["curl", "-sS", proto, "-D", "-", "-o", "-", "-H", f"Accept-Encoding: {encoding}", url],
        capture_output=True,
        check=True,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert f"content-encoding: {encoding}".encode() in head.lower()
    assert b"vary: accept-encoding" in head.lower()
    if encoding == "gzip":
        assert echoed(gzip.decompress(body))["path"].startswith("/gz/xxx")
    plain = curl(proto, "--compressed", url)  # curl decodes what it asked for
    assert echoed(plain.stdout)["path"].startswith("/gz/xxx")
    identity = curl(proto, "-D", "-", "-o", "/dev/null", url).stdout.lower()
    assert "content-encoding" not in identity


def test_rate_limit_per_client(port: int) -> None:
    url = f"http://127.0.0.1:{port}/rl"
    codes = [_code("--interface", "127.0.0.4", url) for _ in range(3)]
    assert codes == [200, 200, 429]
    assert _code(HTTP2, "--interface", "127.0.0.5", url) == 200  # its own bucket
    assert _code(HTTP2, "--interface", "127.0.0.4", url) == 429


async def _ws_status(url: str, headers: list[tuple[bytes, bytes]] | None = None) -> int:
    with trio.fail_after(20):
        try:
            async with open_websocket_url(url, extra_headers=headers or []) as ws:
                await ws.send_message("hi")
                assert await ws.get_message() == "hi"
                return 101
        except ConnectionRejected as exc:
            return exc.status_code


async def test_websocket_upgrades_pass_the_same_policies(port: int) -> None:
    base = f"ws://127.0.0.1:{port}"
    assert await _ws_status(f"{base}/basic/chat") == 401
    auth = [(b"Authorization", b"Basic c2hhOnB3LXNoYQ==")]  # sha:pw-sha
    assert await _ws_status(f"{base}/basic/chat", auth) == 101
    assert await _ws_status(f"{base}/lan/chat") == 403  # from 127.0.0.1
    assert await _ws_status(f"{base}/fa/chat") == 302
    assert await _ws_status(f"{base}/fa/chat", [(b"Cookie", b"session=ok")]) == 101


def test_metrics_count_policy_decisions(port: int, gateway: Gateway) -> None:
    _code(f"http://127.0.0.1:{port}/basic")
    _code("-H", "Accept-Encoding: gzip", f"http://127.0.0.1:{port}/gz/" + "y" * 100)
    _, text = gateway.admin("/metrics")
    assert (
        b'edgegw_policy_decisions_total{kind="basic",policy="default/basic",outcome="deny"}' in text
    )
    assert b'edgegw_compression_input_bytes_total{encoding="gzip"}' in text


@pytest.mark.parametrize("proto", ["--http1.1", HTTP2])
def test_api_key_auth(port: int, proto: str) -> None:
    url = f"http://127.0.0.1:{port}/key"
    assert _code(proto, url) == 401
    assert _code(proto, "-H", "x-api-key: wrong", url) == 401
    got = echoed(curl(proto, "-H", "x-api-key: key-bbb", url).stdout)
    assert got["headers"]["x-client-id"] == ["client-b"]
    assert "x-api-key" not in got["headers"]  # sanitize
    assert _code(proto, f"{url}?api_key=key-aaa") == 200


@pytest.mark.parametrize("proto", ["--http1.1", HTTP2])
def test_cors_preflight_answered_before_auth(port: int, proto: str) -> None:
    url = f"http://127.0.0.1:{port}/cors"
    origin = ("-H", "Origin: https://app.example.com")
    preflight = curl(
        proto, "-i", "-X", "OPTIONS", *origin, "-H", "Access-Control-Request-Method: PUT", url
    ).stdout.lower()
    assert preflight.split()[1] == "200"
    assert "access-control-allow-origin: https://app.example.com" in preflight
    assert "access-control-max-age: 600" in preflight
    assert _code(proto, *origin, url) == 401
    allowed = curl(proto, "-i", *origin, "-u", "sha:pw-sha", url).stdout.lower()
    assert "access-control-allow-origin: https://app.example.com" in allowed


async def test_websocket_api_key_and_rate_limit(port: int) -> None:
    base = f"ws://127.0.0.1:{port}"
    assert await _ws_status(f"{base}/key/chat") == 401
    assert await _ws_status(f"{base}/key/chat", [(b"x-api-key", b"key-aaa")]) == 101
    codes = [await _ws_status(f"{base}/rl/chat") for _ in range(3)]
    assert codes == [101, 101, 429]  # 127.0.0.1's own bucket: 2 an hour
