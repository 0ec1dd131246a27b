"""BackendTrafficPolicy healthCheck GRPC, failurePercentageThreshold and circuitBreaker
perEndpoint / retryBudget through ``edgegw run``, on one gateway for the module.

gRPC checks probe real grpcio servers running grpcio's own ``grpc.health.v1``
servicer, whose status the test flips (and whose server it stops); clients
are grpcio and curl. Every wait is on a condition (the admin API, the
backends' own counts).
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import trio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.e2e.conftest import Gateway, Port, curl, free_port, http_gateway, wait_for
from tests.e2e.test_h2_e2e import route

pytestmark = pytest.mark.e2e

GRPC_SERVICE = "test.Who"


class GrpcBackend:
    """A grpcio server: ``test.Who/Name`` answers its name; grpcio's Health servicer beside."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.health = health.HealthServicer()
        self.health.set(GRPC_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        self.calls = 0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    GRPC_SERVICE, {"Name": grpc.unary_unary_rpc_method_handler(self._name)}
                ),
            )
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _name(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.calls += 1
        return self.name.encode()

    def serving(self, yes: bool) -> None:
        status = health_pb2.HealthCheckResponse
        self.health.set(GRPC_SERVICE, status.SERVING if yes else status.NOT_SERVING)


def _btp(name: str, kind: str, body: str) -> str:
    return f"""\
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: {kind}, name: {name}}}]
{body}"""


class HTTPBackend:
    """A threaded HTTP/1.1 server: 200s, or every other answer 500 (``flaky``); ``/slow``
    waits for ``release``. It counts what it served."""

    def __init__(self, *, flaky: bool = False) -> None:
        self.flaky = flaky
        self.served = 0
        self.waiting = 0
        self.release = threading.Event()
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        if "/slow" in handler.path:
            with self._lock:
                self.waiting += 1
            self.release.wait(20)
        with self._lock:
            self.served += 1
            status = 500 if self.flaky and self.served % 2 else 200
        reason = b"OK" if status == 200 else b"Internal Server Error"
        # one write: a head and body written apart wait on Nagle and delayed ACKs
        handler.wfile.write(b"HTTP/1.1 %d %s\r\nContent-Length: 2\r\n\r\nok" % (status, reason))

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


GRPC_ROUTE = f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: grpchc, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{method: {{service: {GRPC_SERVICE}}}}}]
    backendRefs: [{{name: grpcpair, port: 80}}]
"""
ROUTES = {  # HTTPRoute → (Service, BackendTrafficPolicy body)
    "fp": (
        "five",
        """\
  healthCheck:
    passive:
      failurePercentageThreshold: 40
      consecutive5XxErrors: 0
      interval: 1s
      maxEjectionPercent: 20
      baseEjectionTime: 60s
""",
    ),
    "pe": (
        "slowpair",
        "  circuitBreaker: {perEndpoint: {maxConnections: 1}, maxPendingRequests: 0}\n",
    ),
    "rb0": (
        "flaky",
        "  retry: {numRetries: 2, retryOn: {triggers: [5xx]}}\n"
        "  circuitBreaker: {retryBudget: {percent: {numerator: 0}, minRetryConcurrency: 0}}\n",
    ),
    "rb": (
        "flaky",
        "  retry: {numRetries: 2, retryOn: {triggers: [5xx]}}\n"
        "  circuitBreaker: {retryBudget: {percent: {numerator: 50}}}\n",
    ),
}


def _policies(log: Path) -> str:
    """Every route's policy; the gRPC check logs its transitions to ``log``."""
    policies = "".join(_btp(name, "HTTPRoute", body) for name, (_, body) in ROUTES.items())
    return policies + _btp(
        "grpchc",
        "GRPCRoute",
        f"""\
  healthCheck:
    active:
      timeout: 500ms
      interval: 100ms
      unhealthyThreshold: 2
      type: GRPC
      grpc: {{service: {GRPC_SERVICE}}}
      healthCheckLog:
        matches: [FailureSeriesStart, HealthyTransition]
        sinks: [{{type: File, file: {{path: "{log}"}}}}]
""",
    )


@pytest.fixture(scope="module")
def grpc_backends() -> Iterator[dict[str, GrpcBackend]]:
    started = {name: GrpcBackend(name) for name in ("a", "b")}
    yield started
    for backend in started.values():
        backend.server.stop(None)


@pytest.fixture(scope="module")
def http_backends() -> Iterator[dict[str, HTTPBackend]]:
    started = {f"ok{i}": HTTPBackend() for i in range(4)}
    started["bad"] = HTTPBackend(flaky=True)
    started["slow1"], started["slow2"] = HTTPBackend(), HTTPBackend()
    started["flaky"] = HTTPBackend(flaky=True)
    yield started
    for backend in started.values():
        backend.stop()


@pytest.fixture(scope="module")
def rig(
    tmp_path_factory: pytest.TempPathFactory,
    grpc_backends: dict[str, GrpcBackend],
    http_backends: dict[str, HTTPBackend],
) -> Iterator[tuple[Gateway, int]]:
    """One gateway for the module: each test has routes (so clusters) of its own."""
    gateway = Gateway(tmp_path_factory.mktemp("gw"))
    port = free_port()
    pair = [Port(b.port) for b in grpc_backends.values()]
    gateway.service("grpcpair", pair, app_protocol="kubernetes.io/h2c")
    five = [Port(http_backends[n].port) for n in ("ok0", "ok1", "ok2", "ok3", "bad")]
    gateway.service("five", five)
    gateway.service("slowpair", [Port(http_backends[n].port) for n in ("slow1", "slow2")])
    gateway.service("flaky", Port(http_backends["flaky"].port))
    gateway.write("gateway.yaml", http_gateway(port))
    routes = [route(name, svc, f"/{name}") for name, (svc, _) in ROUTES.items()]
    gateway.write("routes.yaml", "---\n".join([GRPC_ROUTE, *routes]))
    gateway.write("policies.yaml", _policies(gateway.tmp / "health-events.log"))
    gateway.start()
    try:
        for name in ["grpchc", *ROUTES]:
            status = gateway.resource("BackendTrafficPolicy", name)["status"]
            assert status["ancestors"][0]["conditions"][0]["status"] == "True", status
        yield gateway, port
    finally:
        gateway.stop()


def _health(gateway: Gateway, route_name: str) -> dict[int, bool]:
    """endpoint port → healthy, as the admin API's ``backendHealth`` says for a route."""
    out = {}
    for item in gateway.status().get("backendHealth", []):
        if f"/default/{route_name}/" in item["cluster"]:
            out[int(item["endpoint"].rsplit(":", 1)[1])] = item["healthy"]
    return out


def _names(port: int, n: int) -> set[str]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            f"/{GRPC_SERVICE}/Name"
        )
        return {call(b"", timeout=5).decode() for _ in range(n)}


def test_grpc_health_check_follows_the_servicer(
    rig: tuple[Gateway, int], grpc_backends: dict[str, GrpcBackend]
) -> None:
    gateway, port = rig
    a, b = grpc_backends["a"], grpc_backends["b"]
    both = {a.port: True, b.port: True}
    wait_for(lambda: _health(gateway, "grpchc") == both, what="both SERVING")
    assert _names(port, 8) == {"a", "b"}
    a.serving(False)  # NOT_SERVING: out at the next probe
    wait_for(lambda: _health(gateway, "grpchc")[a.port] is False, what="a NOT_SERVING")
    calls = a.calls
    assert _names(port, 10) == {"b"}
    assert a.calls == calls
    a.serving(True)
    wait_for(lambda: _health(gateway, "grpchc")[a.port] is True, what="a SERVING again")
    assert _names(port, 8) == {"a", "b"}
    # healthCheckLog: Envoy's events for the transitions only (no Failure / Success match)
    events = [json.loads(line) for line in (gateway.tmp / "health-events.log").open()]
    of_a = [e for e in events if e["host"]["socket_address"]["port_value"] == a.port]
    kinds = [next(k for k in e if k.endswith("_event")) for e in of_a]
    assert kinds == ["add_healthy_event", "eject_unhealthy_event", "add_healthy_event"]
    assert of_a[0]["add_healthy_event"] == {"first_check": True}
    assert of_a[1]["eject_unhealthy_event"] == {"failure_type": "ACTIVE"}
    assert {e["health_checker_type"] for e in events} == {"GRPC"}
    assert {e["cluster_name"] for e in events} == {
        "grpcroute/default/grpchc/rule/0/default/grpcpair:80"
    }


# --- passive: failure percentage ----------------------------------------------------------------


def _statuses(url: str, n: int, *args: str) -> list[str]:
    """``n`` GETs on one keep-alive connection (one curl); their status codes.

    Over HTTP/2, one curl per request: Debian's curl 7.88 fails a second request on
    a reused prior-knowledge connection before sending it ("Error in the HTTP2
    framing layer"; nghttp on the same connection is served).
    """
    if "--http2-prior-knowledge" in args and n > 1:
        return [s for _ in range(n) for s in _statuses(url, 1, *args)]
    urls = [arg for _ in range(n) for arg in ("-o", "/dev/null", url)]
    result = curl("-w", "%{http_code}\\n", *args, *urls, timeout=60)
    assert "000" not in result.stdout, result.stderr
    return result.stdout.split()


def test_failure_percentage_ejects_the_failing_endpoint(
    rig: tuple[Gateway, int], http_backends: dict[str, HTTPBackend]
) -> None:
    gateway, port = rig
    bad = http_backends["bad"]
    url = f"http://127.0.0.1:{port}/fp"

    def ejected() -> bool:
        statuses = _statuses(url, 400, "--http1.1")
        assert set(statuses) <= {"200", "500"}
        return _health(gateway, "fp").get(bad.port) is False

    # 50 % of the bad endpoint's answers fail (40 % ejects); the others never do. Without
    # 250 requests in one 1 s interval nothing is judged, so load until it is.
    wait_for(ejected, timeout=15, what="the failing endpoint ejected")
    served = bad.served
    assert set(_statuses(url, 10, "--http2-prior-knowledge")) == {"200"}
    assert bad.served == served
    health = _health(gateway, "fp")
    assert sorted(health.values()) == [False, True, True, True, True]  # 20 %: one at most


# --- circuit breaker ---------------------------------------------------------------------------


async def test_per_endpoint_connections(
    rig: tuple[Gateway, int], http_backends: dict[str, HTTPBackend]
) -> None:
    _, port = rig
    slow = [http_backends["slow1"], http_backends["slow2"]]
    url = f"http://127.0.0.1:{port}/pe"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in slow:  # least request: one to each endpoint, each at its limit
                nursery.start_soon(trio.to_thread.run_sync, curl, "-f", f"{url}/slow")
            while sum(b.waiting for b in slow) < 2:
                await trio.sleep(0.01)
            assert [b.waiting for b in slow] == [1, 1]
            for protocol in ("--http1.1", "--http2-prior-knowledge"):
                result = await trio.to_thread.run_sync(
                    curl, "-o", "/dev/null", "-w", "%{http_code}", protocol, url
                )
                assert result.stdout == "503"  # over the limit, with no pending allowed
            with pytest.raises(ConnectionRejected) as refused:
                async with open_websocket_url(f"ws://127.0.0.1:{port}/pe/ws"):
                    pass
            assert refused.value.status_code == 503
            for backend in slow:
                backend.release.set()
    assert curl("-o", "/dev/null", "-w", "%{http_code}", url).stdout == "200"


def test_retry_budget_bounds_retries(
    rig: tuple[Gateway, int], http_backends: dict[str, HTTPBackend]
) -> None:
    _, port = rig
    flaky = http_backends["flaky"]  # every other answer is 500
    # a budget of 0 % with no minimum: never a retry, so every other request fails
    assert sorted(_statuses(f"http://127.0.0.1:{port}/rb0", 6)) == ["200"] * 3 + ["500"] * 3
    # 50 %, at least 3 (the default) in flight: the retry of each failure is allowed
    served = flaky.served
    assert set(_statuses(f"http://127.0.0.1:{port}/rb", 6, "--http2-prior-knowledge")) == {"200"}
    assert flaky.served - served == 12  # each first try met a 500 (it alternates), then a 200
