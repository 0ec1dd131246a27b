"""SecurityPolicy ``jwt`` through ``edgegw run``: curl over HTTP/1.1 and HTTP/2, a WebSocket
upgrade, a grpcio client, and a JWKS served by a small HTTP server in the test whose keys
the test rotates.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.e2e.conftest import Gateway, curl, echoed, free_port, http_gateway, wait_for
from tests.e2e.test_grpc_e2e import Backend, _handlers
from tests.e2e.test_h2_e2e import route, service
from tests.e2e.test_policies_e2e import _ws_status

pytestmark = pytest.mark.e2e
HTTP2 = "--http2-prior-knowledge"
ISSUER = "https://idp.example.test"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
LOCAL_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPublicKey) else ECAlgorithm
    return {**json.loads(algorithm.to_jwk(key)), "kid": kid}


def token(kid: str = "k1", key: Any = RSA_KEY, **claims: Any) -> str:
    body = {"iss": ISSUER, "aud": "edgegw", "sub": "alice", "exp": time.time() + 600, **claims}
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    return pyjwt.encode(body, key, algorithm=alg, headers={"kid": kid})


class _JWKSHandler(http.server.BaseHTTPRequestHandler):
    """Serves the server's current ``document``; counts what it was asked."""

    server: _JWKSServer

    def do_GET(self) -> None:
        body = json.dumps(self.server.document).encode()
        self.server.hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _JWKSServer(http.server.ThreadingHTTPServer):
    document: dict[str, Any]
    hits = 0


@pytest.fixture
def jwks_server() -> Iterator[_JWKSServer]:
    server = _JWKSServer(("127.0.0.1", 0), _JWKSHandler)
    server.document = {"keys": [_jwk(RSA_KEY.public_key(), "k1")]}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _policy(name: str, kind: str, target: str, jwt: str) -> str:
    return f"""\
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: {kind}, name: {target}}}]
  jwt:
{jwt}"""


def _remote(uri: str) -> str:
    return f"""\
    providers:
    - name: idp
      issuer: {ISSUER}
      audiences: [edgegw]
      remoteJWKS: {{uri: "{uri}", cacheDuration: 300s}}
      claimToHeaders: [{{header: x-user, claim: sub}}, {{header: x-org, claim: org.name}}]
"""


GRPC_ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: grpc-backend, port: 80}]}]
"""


@dataclass
class Env:
    port: int
    gateway: Gateway
    jwks: _JWKSServer
    channel: grpc.Channel


@pytest.fixture
def env(gateway: Gateway, echoes: Any, jwks_server: _JWKSServer) -> Iterator[Env]:
    backend = Backend()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((_handlers(backend),))
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port, closed = free_port(), free_port()
    gateway.service("echo", echoes["a"])
    service(gateway, "grpc-backend", grpc_port, "kubernetes.io/h2c")
    gateway.write("gateway.yaml", http_gateway(port))
    for name, prefix in (("api", "/api"), ("local", "/local"), ("down", "/down")):
        gateway.write(f"route-{name}.yaml", route(name, "echo", prefix))
    gateway.write("route-grpc.yaml", GRPC_ROUTE)
    local_jwks = json.dumps({"keys": [_jwk(LOCAL_KEY.public_key(), "local")]})
    uri = f"http://127.0.0.1:{jwks_server.server_address[1]}/.well-known/jwks.json"
    gateway.write(
        "policies.yaml",
        _policy("api", "HTTPRoute", "api", _remote(uri))
        + _policy("grpc", "GRPCRoute", "grpc", _remote(uri))
        + _policy("down", "HTTPRoute", "down", _remote(f"http://127.0.0.1:{closed}/jwks"))
        + _policy(
            "local",
            "HTTPRoute",
            "local",
            f"""\
    optional: true
    providers:
    - name: local
      localJWKS: {{type: Inline, inline: '{local_jwks}'}}
      extractFrom: {{cookies: [session]}}
""",
        ),
    )
    gateway.start()
    for name in ("api", "grpc", "down", "local"):
        status = gateway.resource("SecurityPolicy", name)["status"]
        assert status["ancestors"][0]["conditions"][0]["status"] == "True", status
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Env(port, gateway, jwks_server, channel)
    finally:
        channel.close()
        server.stop(None)


def _answer(*args: str) -> tuple[int, str, str]:
    """(status, lower-case head, body) of one curl request."""
    out = curl("-i", *args).stdout
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    return int(head.split()[1]), head.lower(), body


def _fetched(env: Env) -> None:
    """Wait for the gateway's first JWKS fetch: a good token gets through."""
    url = f"http://127.0.0.1:{env.port}/api"
    wait_for(lambda: _answer("-H", f"Authorization: Bearer {token()}", url)[0] == 200)


@pytest.mark.parametrize("proto", ["--http1.1", HTTP2])
def test_jwt_on_http1_and_http2(env: Env, proto: str) -> None:
    _fetched(env)
    url = f"http://127.0.0.1:{env.port}/api/x?y=1"
    code, head, body = _answer(proto, url)
    assert (code, body) == (401, "Jwt is missing")
    assert f'www-authenticate: bearer realm="http://127.0.0.1:{env.port}/api/x?y=1"\n' in head
    good = token(org={"name": "acme"})
    got = curl(proto, "-H", f"Authorization: Bearer {good}", "-H", "X-User: mallory", url)
    seen = echoed(got.stdout)["headers"]
    assert seen["x-user"] == ["alice"]  # the client's own x-user is gone
    assert seen["x-org"] == ["acme"]
    assert seen["authorization"] == [f"Bearer {good}"]  # forwarded, as Envoy Gateway does
    code, head, body = _answer(proto, "-H", f"Authorization: Bearer {token(exp=1)}", url)
    assert (code, body) == (401, "Jwt is expired")
    assert 'error="invalid_token"' in head
    code, _, body = _answer(proto, f"{url}&access_token={token(aud='other')}")
    assert (code, body) == (403, "Audiences in Jwt are not allowed")
    forged = token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    code, _, body = _answer(proto, "-H", f"Authorization: Bearer {forged}", url)
    assert (code, body) == (401, "Jwt verification fails")


def test_key_rotation_is_picked_up(env: Env) -> None:
    _fetched(env)
    url = f"http://127.0.0.1:{env.port}/api"
    hits = env.jwks.hits
    env.jwks.document = {"keys": [_jwk(EC_KEY.public_key(), "k2")]}
    rotated = token("k2", EC_KEY)
    code, _, body = _answer("-H", f"Authorization: Bearer {rotated}", url)
    assert (code, body) == (401, "Jwks doesn't have key to match kid or alg from Jwt")
    # the unknown kid makes the gateway fetch again (within 5 s of its last fetch)
    wait_for(lambda: _answer("-H", f"Authorization: Bearer {rotated}", url)[0] == 200, 15)
    assert env.jwks.hits == hits + 1
    code, _, body = _answer("-H", f"Authorization: Bearer {token()}", url)
    assert (code, body) == (401, "Jwks doesn't have key to match kid or alg from Jwt")


async def test_websocket_upgrade_needs_the_token(env: Env) -> None:
    _fetched(env)
    base = f"ws://127.0.0.1:{env.port}/api/chat"
    assert await _ws_status(base) == 401
    assert await _ws_status(base, [(b"Authorization", f"Bearer {token()}".encode())]) == 101


def test_grpc_gets_unauthenticated(env: Env) -> None:
    _fetched(env)
    unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = env.channel.unary_unary("/test.Echo/Unary")
    with pytest.raises(grpc.RpcError) as info:
        unary(b"hi", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == "Jwt is missing"
    answer = unary(b"hi", timeout=10, metadata=(("authorization", f"Bearer {token()}"),))
    assert answer == b"hi|"


def test_local_jwks_optional_and_unreachable_remote(env: Env) -> None:
    local = f"http://127.0.0.1:{env.port}/local"
    assert _answer(local)[0] == 200  # optional: no token at all is fine
    good = token("local", LOCAL_KEY, iss="anyone")
    assert _answer("-H", f"Cookie: session={good}", local)[0] == 200
    bad = token("local", EC_KEY, iss="anyone")
    assert _answer("-H", f"Cookie: session={bad}", local)[:1] == (401,)
    # a remote JWKS never fetched: the provider fails closed
    code, _, body = _answer("-H", f"Authorization: Bearer {token()}", f"{local[:-6]}/down")
    assert (code, body) == (401, "Jwks remote fetch is failed")
    _, text = env.gateway.admin("/metrics")
    decisions = b'edgegw_policy_decisions_total{kind="jwt",policy="default/'
    assert decisions + b'local",outcome="deny"}' in text
    assert decisions + b'down",outcome="error"}' in text
    assert b'edgegw_jwks_fetches_total{uri="http://127.0.0.1:' in text
    assert b'result="failure"}' in text
