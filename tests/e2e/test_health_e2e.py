"""BackendTrafficPolicy healthCheck and circuitBreaker through ``edgegw run``.

Real backends that are killed and revived (``edgegw echo``), a backend that
answers 500, and one that holds its answers; clients are curl over HTTP/1.1
and HTTP/2 (prior knowledge) and trio-websocket. Every wait is on a
condition: the admin API's ``backendHealth``, the backends' own counts.
"""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.e2e.conftest import (
    Echo,
    Gateway,
    Port,
    Process,
    accepts,
    curl,
    echoed,
    edgegw_cmd,
    free_port,
    http_gateway,
    wait_for,
)
from tests.e2e.test_h2_e2e import route

pytestmark = pytest.mark.e2e
HTTP2 = "--http2-prior-knowledge"
CEILING = 30


def _btp(name: str, body: str) -> str:
    return f"""\
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {name}}}]
{body}"""


class _Backend(http.server.BaseHTTPRequestHandler):
    """``/bad...`` answers 500; ``/slow...`` waits for ``release``; both say who they are."""

    protocol_version = "HTTP/1.1"
    release = threading.Event()
    lock = threading.Lock()
    waiting = 0
    served = 0
    port = 0

    def do_GET(self) -> None:
        cls = type(self)
        if self.headers.get("Upgrade"):
            status = 500
        elif "/slow" in self.path:
            with cls.lock:
                cls.waiting += 1
            cls.release.wait(20)
            status = 200
        else:
            status = 500
        with cls.lock:
            cls.served += 1
        body = b'{"pod": "bad"}' if status == 500 else b'{"pod": "slow"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def backend() -> Iterator[type[_Backend]]:
    class Handler(_Backend):
        release = threading.Event()
        lock = threading.Lock()

    handler = Handler
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler
    finally:
        handler.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def echoes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Echo]]:
    tmp = tmp_path_factory.mktemp("echoes")
    started = {name: Echo(name, tmp) for name in ("a", "b")}
    yield started
    for echo in started.values():
        echo.process.stop()


ROUTES = {  # route → (Service, policy body)
    "hc": ("pair", "http"),
    "tcp": ("pair", "tcp"),
    "hcws": ("pair", "http"),  # the same check on the same endpoints: one checker for both
    "od1": ("flaky", "passive"),
    "od2": ("flaky", "passive"),
    "odws": ("flaky", "passive"),
    "cb1": ("slow", "limits"),
    "cb2": ("slow", "limits"),
    "cbws": ("pair", "limits"),
}
_ACTIVE = """\
  healthCheck:
    active:
      timeout: 500ms
      interval: 100ms
      unhealthyThreshold: 2
      healthyThreshold: 1
"""
POLICIES = {
    "http": _ACTIVE + "      type: HTTP\n      http: {path: /healthz, expectedStatuses: [200]}\n",
    "tcp": _ACTIVE + "      type: TCP\n      tcp: {}\n",
    "passive": """\
  healthCheck:
    passive: {consecutive5XxErrors: 2, maxEjectionPercent: 50, baseEjectionTime: 60s, interval: 1s}
""",
    "limits": "  circuitBreaker:\n"
    "    {maxParallelRequests: 2, maxConnections: 2, maxPendingRequests: 0}\n",
}


@pytest.fixture(scope="module")
def rig(
    tmp_path_factory: pytest.TempPathFactory, echoes: dict[str, Echo], backend: type[_Backend]
) -> Iterator[tuple[Gateway, int]]:
    """One gateway for the module: each test has routes (so clusters) of its own."""
    gateway = Gateway(tmp_path_factory.mktemp("gw"))
    port = free_port()
    gateway.service("pair", [echoes["a"], echoes["b"]])
    gateway.service("flaky", [Port(backend.port), echoes["b"]])
    gateway.service("slow", Port(backend.port))
    gateway.write("gateway.yaml", http_gateway(port))
    for name, (svc, _) in ROUTES.items():
        gateway.write(f"route-{name}.yaml", route(name, svc, f"/{name}"))
    gateway.write("policies.yaml", "".join(_btp(n, POLICIES[p]) for n, (_, p) in ROUTES.items()))
    gateway.start()
    try:
        for name in ROUTES:
            status = gateway.resource("BackendTrafficPolicy", name)["status"]
            assert status["ancestors"][0]["conditions"][0]["status"] == "True", status
        yield gateway, port
    finally:
        gateway.stop()


@pytest.fixture
def gateway(rig: tuple[Gateway, int]) -> Gateway:
    return rig[0]


@pytest.fixture
def port(rig: tuple[Gateway, int]) -> int:
    return rig[1]


def _health(gateway: Gateway, route_name: str) -> dict[int, bool]:
    """endpoint port → healthy, as the admin API's ``backendHealth`` says for a route."""
    out = {}
    for item in gateway.status().get("backendHealth", []):
        if f"/default/{route_name}/" in item["cluster"]:
            out[int(item["endpoint"].rsplit(":", 1)[1])] = item["healthy"]
    return out


def _pods(url: str, *args: str, n: int = 8) -> list[str]:
    out = []
    for _ in range(n):
        result = curl("-f", *args, url)
        assert result.returncode == 0, result.stderr
        out.append(str(echoed(result.stdout)["pod"]))
    return out


def _kill(echo: Echo) -> None:
    echo.process.stop()
    wait_for(lambda: not _accepts(echo.port), what="the backend to be gone")


def _revive(echo: Echo, tmp: Any) -> Process:
    process = Process(
        edgegw_cmd("echo", "--listen", f"127.0.0.1:{echo.port}", "--name", echo.name),
        tmp / f"echo-{echo.name}-revived.log",
    )
    echo.process = process  # the fixture stops it
    wait_for(lambda: accepts(echo.port), what="the revived backend")
    return process


def _accepts(port: int) -> bool:
    try:
        return accepts(port)
    except OSError:
        return False


def _metric(gateway: Gateway, name: str, **labels: str) -> float:
    text = gateway.admin("/metrics")[1].decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- active ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "protocol"), [("hc", "--http1.1"), ("tcp", HTTP2)])
def test_active_check_moves_traffic_off_a_dead_endpoint_and_back(
    gateway: Gateway, echoes: dict[str, Echo], port: int, tmp_path: Path, name: str, protocol: str
) -> None:
    a, b = echoes["a"], echoes["b"]
    url = f"http://127.0.0.1:{port}/{name}"
    wait_for(lambda: _health(gateway, name) == {a.port: True, b.port: True}, what="both healthy")
    assert set(_pods(url, protocol)) == {"a", "b"}
    _kill(a)
    wait_for(lambda: _health(gateway, name)[a.port] is False, what="a marked unhealthy")
    assert set(_pods(url, protocol, n=10)) == {"b"}  # not one request lost to the dead one
    cluster = f"httproute/default/{name}/rule/0/default/pair:80"
    endpoint = f"127.0.0.1:{a.port}"
    assert _metric(gateway, "edgegw_backend_endpoint_healthy", cluster=cluster) == 1  # b only
    assert _metric(gateway, "edgegw_backend_endpoint_healthy", endpoint=endpoint) == 0
    _revive(a, tmp_path)
    wait_for(lambda: _health(gateway, name)[a.port] is True, what="a healthy again")
    assert set(_pods(url, protocol)) == {"a", "b"}


async def test_active_check_keeps_websocket_upgrades_off_a_dead_endpoint(
    gateway: Gateway, echoes: dict[str, Echo], port: int, tmp_path: Path
) -> None:
    a, b = echoes["a"], echoes["b"]
    with trio.fail_after(CEILING):
        await trio.to_thread.run_sync(
            lambda: wait_for(lambda: _health(gateway, "hcws") == {a.port: True, b.port: True})
        )
        await trio.to_thread.run_sync(_kill, a)
        await trio.to_thread.run_sync(
            lambda: wait_for(lambda: _health(gateway, "hcws")[a.port] is False)
        )
        for i in range(6):  # every upgrade reaches the live endpoint
            async with open_websocket_url(f"ws://127.0.0.1:{port}/hcws/ws") as ws:
                await ws.send_message(f"m{i}")
                assert await ws.get_message() == f"m{i}"
        await trio.to_thread.run_sync(_revive, a, tmp_path)
        await trio.to_thread.run_sync(
            lambda: wait_for(lambda: _health(gateway, "hcws")[a.port] is True)
        )


# --- passive -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "protocol"), [("od1", "--http1.1"), ("od2", HTTP2)])
def test_passive_ejection_after_consecutive_5xx(
    gateway: Gateway, backend: type[_Backend], port: int, name: str, protocol: str
) -> None:
    url = f"http://127.0.0.1:{port}/{name}"
    seen = []
    for _ in range(12):  # least-request round robin: the bad one answers every other request
        seen.append(curl("-o", "/dev/null", "-w", "%{http_code}", protocol, url).stdout)
        if seen.count("500") == 2:
            break
    assert seen.count("500") == 2, seen
    served = backend.served
    assert {
        curl("-o", "/dev/null", "-w", "%{http_code}", protocol, url).stdout for _ in range(8)
    } == {"200"}
    assert backend.served == served  # ejected: not asked again
    health = _health(gateway, name)
    assert health[backend.port] is False
    ejections = _metric(
        gateway,
        "edgegw_backend_ejections_total",
        cluster=f"httproute/default/{name}/rule/0/default/flaky:80",
    )
    assert ejections == 1


async def test_passive_ejection_after_5xx_websocket_handshakes(
    gateway: Gateway, backend: type[_Backend], port: int
) -> None:
    with trio.fail_after(CEILING):
        refused = 0
        for _ in range(8):  # the bad endpoint answers every other handshake 500
            status = await _ws_handshake(f"ws://127.0.0.1:{port}/odws/x")
            refused += status == 500
            if refused == 2:
                break
        assert refused == 2
        assert [await _ws_handshake(f"ws://127.0.0.1:{port}/odws/x") for _ in range(6)] == [101] * 6


async def _ws_handshake(url: str) -> int:
    """101 for an echoed WebSocket session, else the status the upgrade was refused with."""
    try:
        async with open_websocket_url(url) as ws:
            await ws.send_message("hi")
            assert await ws.get_message() == "hi"
    except ConnectionRejected as exc:
        return int(exc.status_code)
    return 101


# --- circuit breaker ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "protocol"), [("cb1", "--http1.1"), ("cb2", HTTP2)])
def test_circuit_breaker_answers_503_over_max_parallel_requests(
    gateway: Gateway, backend: type[_Backend], port: int, name: str, protocol: str
) -> None:
    url = f"http://127.0.0.1:{port}/{name}/slow"
    backend.release, backend.waiting = threading.Event(), 0
    held = [
        subprocess.Popen(
            [
                "curl",
                "-sS",
                "--max-time",
                "20",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                protocol,
                url,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        wait_for(lambda: backend.waiting == 2, what="two requests held by the backend")
        over = curl("-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", protocol, url)
        code, seconds = over.stdout.split()
        assert code == "503"
        assert float(seconds) < 2  # at once, never queued
    finally:
        backend.release.set()
    assert [p.communicate(timeout=20)[0] for p in held] == ["200", "200"]
    cluster = f"httproute/default/{name}/rule/0/default/slow:80"
    overflows = _metric(gateway, "edgegw_circuit_breaker_overflows_total", cluster=cluster)
    assert overflows == 1
    assert curl("-o", "/dev/null", "-w", "%{http_code}", protocol, url).stdout == "200"


async def test_circuit_breaker_counts_websocket_tunnels(gateway: Gateway, port: int) -> None:
    url = f"ws://127.0.0.1:{port}/cbws/x"
    with trio.fail_after(CEILING):
        async with open_websocket_url(url) as one, open_websocket_url(url) as two:
            with pytest.raises(ConnectionRejected) as refused:
                async with open_websocket_url(url):
                    pass
            assert refused.value.status_code == 503
            for ws in (one, two):  # the open tunnels are untouched
                await ws.send_message("still here")
                assert await ws.get_message() == "still here"
        async with open_websocket_url(url) as three:  # room again once they closed
            await three.send_message("x")
            assert await three.get_message() == "x"


def test_status_names_every_endpoint(gateway: Gateway, echoes: dict[str, Echo], port: int) -> None:
    wait_for(lambda: len(_health(gateway, "hc")) == 2, what="health in the status")
    items = [i for i in gateway.status()["backendHealth"] if "/hc/" in i["cluster"]]
    assert {i["active"] for i in items} <= {"healthy", "pending"}
    assert all(re.fullmatch(r"127\.0\.0\.1:\d+", i["endpoint"]) for i in items)
    json.dumps(items)
