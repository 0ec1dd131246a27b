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
def ports(gateway: Gateway, echoes: Any) -> tuple[int, int]:
    strict, redirect = free_port(), free_port()
    listeners = f"""\
- {{name: strict, protocol: HTTP, port: {strict}}}
- {{name: redirect, protocol: HTTP, port: {redirect}}}
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
""",
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
    return strict, redirect


def _code(*args: str) -> int:
    return int(curl("-o", "/dev/null", "-w", "%{http_code}", *args).stdout)


@pytest.mark.parametrize("proto", PROTOS)
def test_headers_before_routing(ports: tuple[int, int], proto: str) -> None:
    strict, redirect = ports
    url = f"http://127.0.0.1:{strict}/x"
    assert _code(proto, "-H", "x_user: mallory", url) == 400
    got = echoed(curl(proto, "-H", "X-Request-ID: mine", "-H", "X-Drop: 1", url).stdout)
    assert got["headers"]["x-early"] == ["yes"]
    assert "x-drop" not in got["headers"]
    (generated,) = got["headers"]["x-request-id"]
    assert generated != "mine"
    assert len(generated) == 36  # a fresh UUID
    # on the other listener, underscored names are dropped and the client's ID kept
    other = f"http://127.0.0.1:{redirect}/x"
    got = echoed(curl(proto, "-H", "x_user: mallory", "-H", "X-Request-ID: mine", other).stdout)
    assert "x_user" not in got["headers"]
    assert got["headers"]["x-request-id"] == ["mine"]


@pytest.mark.parametrize("proto", PROTOS)
def test_escaped_slashes(ports: tuple[int, int], proto: str) -> None:
    strict, redirect = ports
    assert _code(proto, f"http://127.0.0.1:{strict}/a%2Fb") == 400
    assert echoed(curl(proto, f"http://127.0.0.1:{strict}/a%2Cb").stdout)["path"] == "/a%2Cb"
    out = curl(proto, "-D", "-", "-o", "/dev/null", f"http://127.0.0.1:{redirect}/a%2fb//c?q=1")
    assert out.stdout.split()[1] == "307"
    assert "location: /a/b//c?q=1" in out.stdout.lower()  # unescaped, slashes not merged


def test_connection_limit(ports: tuple[int, int]) -> None:
    _, redirect = ports
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


def _read_or_reset(conn: socket.socket) -> bytes:
    try:
        return conn.recv(65536)
    except ConnectionResetError:
        return b""


@pytest.mark.parametrize("proto", PROTOS)
def test_fault_injection_merged_onto_gateway_policy(ports: tuple[int, int], proto: str) -> None:
    strict, _ = ports
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


async def test_websocket_upgrade_under_the_same_rules(ports: tuple[int, int]) -> None:
    strict, _ = ports
    base = f"ws://127.0.0.1:{strict}"
    assert await _ws_status(f"{base}/chat", [(b"x_user", b"mallory")]) == 400
    assert await _ws_status(f"{base}/a%2Fb", []) == 400
    assert await _ws_status(f"{base}/fault", []) == 503
    assert await _ws_status(f"{base}/chat", []) == 101
