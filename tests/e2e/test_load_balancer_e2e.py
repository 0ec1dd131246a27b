"""BackendTrafficPolicy loadBalancer through ``edgegw run``: RoundRobin and ConsistentHash."""

from __future__ import annotations

import collections
import itertools
from typing import Any

import pytest

from tests.e2e.conftest import Gateway, curl, echoed, free_port, http_gateway
from tests.e2e.test_h2_e2e import route

pytestmark = pytest.mark.e2e


def _btp(name: str, body: str) -> str:
    return f"""\
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {name}}}]
  loadBalancer:
{body}"""


@pytest.fixture
def port(gateway: Gateway, echoes: Any) -> int:
    port = free_port()
    gateway.service("pair", [echoes["a"], echoes["b"]])
    gateway.write("gateway.yaml", http_gateway(port))
    for name in ("rr", "ip", "hdr"):
        gateway.write(f"route-{name}.yaml", route(name, "pair", f"/{name}"))
    gateway.write(
        "policies.yaml",
        _btp("rr", "    type: RoundRobin\n")
        + _btp("ip", "    type: ConsistentHash\n    consistentHash: {type: SourceIP}\n")
        + _btp(
            "hdr",
            "    type: ConsistentHash\n"
            "    consistentHash: {type: Header, header: {name: X-User}}\n",
        ),
    )
    gateway.start()
    for name in ("rr", "ip", "hdr"):
        status = gateway.resource("BackendTrafficPolicy", name)["status"]
        assert status["ancestors"][0]["conditions"][0]["status"] == "True", status
    return port


def _pod(*args: str) -> str:
    return str(echoed(curl(*args).stdout)["pod"])


def test_round_robin_alternates(port: int) -> None:
    pods = [_pod(f"http://127.0.0.1:{port}/rr") for _ in range(6)]
    assert collections.Counter(pods) == {"a": 3, "b": 3}
    assert all(x != y for x, y in itertools.pairwise(pods))


def test_consistent_hash_by_source_address(port: int) -> None:
    for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        pods = {_pod("--interface", source, f"http://127.0.0.1:{port}/ip") for _ in range(4)}
        assert len(pods) == 1, (source, pods)


def test_consistent_hash_by_header_over_both_protocols(port: int) -> None:
    url = f"http://127.0.0.1:{port}/hdr"
    owner = {}
    for user in range(16):
        h1 = _pod("--http1.1", "-H", f"X-User: u{user}", url)
        h2 = _pod("--http2-prior-knowledge", "-H", f"X-User: u{user}", url)
        assert h1 == h2
        owner[user] = h1
    assert set(owner.values()) == {"a", "b"}  # the keys spread over both
