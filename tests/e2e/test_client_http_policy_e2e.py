"""ClientTrafficPolicy headers, path and connection limit, and BackendTrafficPolicy
faultInjection and mergeType, through ``edgegw run`` with curl (HTTP/1.1 and h2c prior
knowledge), a raw socket and trio-websocket: what a user checks after applying them."""

from __future__ import annotations

import gzip
import socket
import subprocess
import time
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.e2e.conftest import Gateway, curl, echoed, free_port, http_gateway, wait_for
from tests.e2e.h2wire import Wire

pytestmark = pytest.mark.e2e

HTTP2 = "--http2-prior-knowledge"
PROTOS = ["--http1.1", HTTP2]


def _route(name: str, prefix: str) -> str:
    return f"""\
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]
    backendRefs: [{{name: echo, port: 80}}]
"""


def _policy(kind: str, name: str, target: str, body: str) -> str:
    return f"""\
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: {kind}
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, {target}}}]
{body}"""


@pytest.fixture
def ports(gateway: Gateway, echoes: Any) -> tuple[int, int, int]:
    strict, redirect, legacy = free_port(), free_port(), free_port()
    listeners = f"""\
- {{name: strict, protocol: HTTP, port: {strict}}}
- {{name: redirect, protocol: HTTP, port: {redirect}}}
- {{name: legacy, protocol: HTTP, port: {legacy}, hostname: legacy.example.com}}
"""
    gateway.service("echo", echoes["a"])
    gateway.write("gateway.yaml", http_gateway(strict, listeners=listeners))
    routes = _route("plain", "/") + _route("fault", "/fault") + _route("slow", "/slow")
    policies = (
        _policy(
            "ClientTrafficPolicy",
            "strict",
            "kind: Gateway, name: gw, sectionName: strict",
            """\
  headers:
    withUnderscoresAction: RejectRequest
    requestID: Generate
    earlyRequestHeaders: {set: [{name: x-early, value: "yes"}], remove: [x-drop]}
  path: {escapedSlashesAction: RejectRequest}
""",
        )
        + _policy(
            "ClientTrafficPolicy",
            "redirect",
            "kind: Gateway, name: gw, sectionName: redirect",
            """\
  headers: {withUnderscoresAction: DropHeader, requestID: PreserveOrGenerate}
  path: {escapedSlashesAction: UnescapeAndRedirect, disableMergeSlashes: true}
  connection: {connectionLimit: {value: 2}}
  http2: {maxConcurrentStreams: 7, initialStreamWindowSize: 128Ki}
""",
        )
        + _policy(
            "ClientTrafficPolicy",
            "legacy",
            "kind: Gateway, name: gw, sectionName: legacy",
            "  http1: {http10: {useDefaultHost: true}}\n",
        )
        + _policy(
            "BackendTrafficPolicy",
            "gw",
            "kind: Gateway, name: gw",
            "  compression: [{type: Gzip}]\n",
        )
        + _policy(
            "BackendTrafficPolicy",
            "fault",
            "kind: HTTPRoute, name: fault",
            "  mergeType: StrategicMerge\n  faultInjection: {abort: {httpStatus: 503}}\n",
        )
        + _policy(
            "BackendTrafficPolicy",
            "slow",
            "kind: HTTPRoute, name: slow",
            "  mergeType: StrategicMerge\n  faultInjection: {delay: {fixedDelay: 400ms}}\n",
        )
    )
    gateway.write("routes.yaml", routes + policies)
    gateway.start()
    for kind, name in (("ClientTrafficPolicy", "strict"), ("BackendTrafficPolicy", "slow")):
        conditions = gateway.resource(kind, name)["status"]["ancestors"][0]["conditions"]
        assert {c["type"]: c["status"] for c in conditions}["Accepted"] == "True", conditions
    return strict, redirect, legacy


def _code(*args: str) -> int:
    return int(curl("-o", "/dev/null", "-w", "%{http_code}", *args).stdout)


@pytest.mark.parametrize("proto", PROTOS)
def test_headers_before_routing(ports: tuple[int, int, int], proto: str) -> None:
    strict, redirect, _ = ports
    url = f"http://127.0.0.1:{strict}/x"
    assert _code(proto, "-H", "x_user: mallory", url) == 400
    got = echoed(curl(proto, "-H", "X-Request-ID: mine", "-H", "X-Drop: 1", url).stdout)
    assert got["headers"]["x-early"] == ["yes"]
    assert "x-drop" not in got["headers"]
    (generated,) = got["headers"]["x-request-id"]
    assert generated != "mine"
    assert len(generated) == 36  # a fresh UUID
    sent = curl(proto, "-H", "X-Forwarded-Client-Cert: Hash=forged", url).stdout
    assert "x-forwarded-client-cert" not in echoed(sent)["headers"]  # sanitized
    # on the other listener, underscored names are dropped and the client's ID kept
    other = f"http://127.0.0.1:{redirect}/x"
    got = echoed(curl(proto, "-H", "x_user: mallory", "-H", "X-Request-ID: mine", other).stdout)
    assert "x_user" not in got["headers"]
    assert got["headers"]["x-request-id"] == ["mine"]


@pytest.mark.parametrize("proto", PROTOS)
def test_escaped_slashes(ports: tuple[int, int, int], proto: str) -> None:
    strict, redirect, _ = ports
    assert _code(proto, f"http://127.0.0.1:{strict}/a%2Fb") == 400
    assert echoed(curl(proto, f"http://127.0.0.1:{strict}/a%2Cb").stdout)["path"] == "/a%2Cb"
    out = curl(proto, "-D", "-", "-o", "/dev/null", f"http://127.0.0.1:{redirect}/a%2fb//c?q=1")
    assert out.stdout.split()[1] == "307"
    assert "location: /a/b//c?q=1" in out.stdout.lower()  # unescaped, slashes not merged


def test_connection_limit(ports: tuple[int, int, int], gateway: Gateway) -> None:
    _, redirect, _ = ports
    held = [socket.create_connection(("127.0.0.1", redirect)) for _ in range(2)]
    try:
        for conn in held:  # both served, so both are counted
            conn.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        with socket.create_connection(("127.0.0.1", redirect), timeout=10) as third:
            third.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            assert _read_or_reset(third) == b""  # closed without an answer
    finally:
        for conn in held:
            conn.close()
    wait_for(lambda: _code(f"http://127.0.0.1:{redirect}/x") == 200, what="a free slot")
    _, metrics = gateway.admin("/metrics")
    assert f'edgegw_connections_refused_total{{port="127.0.0.1:{redirect}"}} 1'.encode() in metrics


def _read_or_reset(conn: socket.socket) -> bytes:
    try:
        return conn.recv(65536)
    except ConnectionResetError:
        return b""


@pytest.mark.parametrize("proto", PROTOS)
def test_fault_injection_merged_onto_gateway_policy(
    ports: tuple[int, int, int], proto: str
) -> None:
    strict, _, _ = ports
    base = f"http://127.0.0.1:{strict}"
    out = curl(proto, "-w", "\n%{http_code}", f"{base}/fault")
    assert out.stdout.split("\n") == ["fault filter abort", "503"]
    start = time.monotonic()
    slow = subprocess.run(
        [
            "curl",
            "-sS",
            proto,
            "-D",
            "-",
            "-H",
            "Accept-Encoding: gzip",
            f"{base}/slow/" + "x" * 64,
        ],
        capture_output=True,
        check=True,
    ).stdout
    assert time.monotonic() - start >= 0.4
    head, _, body = slow.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower()  # the Gateway's compression, merged
    assert echoed(gzip.decompress(body))["path"].startswith("/slow/x")


async def _ws_status(url: str, headers: list[tuple[bytes, bytes]]) -> int:
    with trio.fail_after(20):
        try:
            async with open_websocket_url(url, extra_headers=headers) as ws:
                await ws.send_message("hi")
                assert await ws.get_message() == "hi"
                return 101
        except ConnectionRejected as exc:
            return exc.status_code


async def test_websocket_upgrade_under_the_same_rules(ports: tuple[int, int, int]) -> None:
    strict, _, _ = ports
    base = f"ws://127.0.0.1:{strict}"
    assert await _ws_status(f"{base}/chat", [(b"x_user", b"mallory")]) == 400
    assert await _ws_status(f"{base}/a%2Fb", []) == 400
    assert await _ws_status(f"{base}/fault", []) == 503
    assert await _ws_status(f"{base}/chat", []) == 101


def test_http2_settings(ports: tuple[int, int, int]) -> None:
    _, redirect, _ = ports
    with socket.create_connection(("127.0.0.1", redirect)) as sock:
        wire = Wire(sock, f"127.0.0.1:{redirect}", "http")
        wire.handshake()
        assert wire.server_settings[0x3] == 7  # SETTINGS_MAX_CONCURRENT_STREAMS
        assert wire.server_settings[0x4] == 128 * 1024  # SETTINGS_INITIAL_WINDOW_SIZE


def test_http10_default_host(ports: tuple[int, int, int]) -> None:
    *_, legacy = ports
    with socket.create_connection(("127.0.0.1", legacy), timeout=10) as conn:
        conn.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"), head
    assert echoed(body)["host"] == "legacy.example.com"
