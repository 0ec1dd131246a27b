"""IPAddressPool allocation as ``edgegw run`` reports and serves it, on loopback.

A pool in 127.0.0.0/8 needs no namespace: every address of that block is local on Linux, so
the gateway binds what the pool gives and a plain client reaches it. Each test uses its own
127.0.77.x addresses and free ports. What is checked is what a user sees: ``status.addresses``
and the Programmed condition in ``/api/status``, and where requests are answered.
"""

from __future__ import annotations

import http.client
import json
import shutil
from typing import Any

import pytest

from tests.e2e.conftest import GATEWAY_CLASS, Echo, Gateway, free_port, wait_for

pytestmark = pytest.mark.e2e


def pool(name: str, *addresses: str, auto_assign: bool = True) -> str:
    return f"""\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: {name}, namespace: metallb-system}}
spec: {{addresses: {json.dumps(list(addresses))}, autoAssign: {str(auto_assign).lower()}}}
"""


def gateway_doc(name: str, port: int, *, address: str = "", pool_name: str = "") -> str:
    """A Gateway (no namespace: ``default``) with one HTTP listener and a route to ``app``."""
    addresses = f"\n  addresses: [{{type: IPAddress, value: {address}}}]" if address else ""
    annotations = f"\n  annotations: {{metallb.io/address-pool: {pool_name}}}" if pool_name else ""
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {name}{annotations}
spec:
  gatewayClassName: edgegw{addresses}
  listeners: [{{name: http, protocol: HTTP, port: {port}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}}}
spec:
  parentRefs: [{{name: {name}}}]
  rules: [{{backendRefs: [{{name: app, port: 80}}]}}]
"""


def status_of(gw: Gateway, name: str) -> dict[str, Any]:
    return dict(gw.resource("Gateway", name)["status"])


def held(gw: Gateway, name: str) -> list[str]:
    return [a["value"] for a in status_of(gw, name).get("addresses", [])]


def programmed(gw: Gateway, name: str) -> dict[str, Any]:
    return next(c for c in status_of(gw, name)["conditions"] if c["type"] == "Programmed")


def answers(address: str, port: int) -> str | None:
    """The echo ``pod`` answering on ADDRESS:PORT, or None when nothing listens there."""
    conn = http.client.HTTPConnection(address, port, timeout=2)
    try:
        conn.request("GET", "/", headers={"Host": "example.com"})
        response = conn.getresponse()
        return str(json.loads(response.read())["pod"]) if response.status == 200 else None
    except ConnectionRefusedError:
        return None
    finally:
        conn.close()


@pytest.fixture
def app(gateway: Gateway, echoes: dict[str, Echo]) -> Echo:
    gateway.write("class.yaml", GATEWAY_CLASS)
    gateway.service("app", echoes["app"])
    return echoes["app"]


def reload_with(gw: Gateway, name: str, text: str) -> None:
    generation = gw.generation()
    gw.write(name, text)
    gw.wait_generation_after(generation)


@pytest.mark.usefixtures("app")
def test_pool_address_is_in_status_and_serves(gateway: Gateway) -> None:
    port = free_port()
    gateway.write("pool.yaml", pool("lan", "127.0.77.10-127.0.77.11"))
    gateway.write("web.yaml", gateway_doc("web", port))
    gateway.start()
    assert held(gateway, "web") == ["127.0.77.10"]
    assert programmed(gateway, "web")["status"] == "True"
    assert wait_for(lambda: answers("127.0.77.10", port), what="the pool address") == "app"
    # The pool applies, so --default-address (127.0.0.1) is not bound for this Gateway.
    assert answers("127.0.0.1", port) is None


@pytest.mark.usefixtures("app")
def test_exhausted_pool_gives_address_not_assigned_until_one_is_freed(gateway: Gateway) -> None:
    port = free_port()
    gateway.write("pool.yaml", pool("one", "127.0.77.20/32"))
    gateway.write("a.yaml", gateway_doc("a", port))
    gateway.write("b.yaml", gateway_doc("b", port))
    gateway.start()

    assert held(gateway, "a") == ["127.0.77.20"]
    assert held(gateway, "b") == []
    condition = programmed(gateway, "b")
    assert (condition["status"], condition["reason"]) == ("False", "AddressNotAssigned")
    assert "one" in condition["message"]
    assert gateway.admin("/readyz")[0] == 200  # an unprogrammed Gateway holds nothing back

    # Deleting "a" frees its address, and "b" takes it on the same reload.
    generation = gateway.generation()
    (gateway.config / "a.yaml").unlink()
    gateway.wait_generation_after(generation)
    assert held(gateway, "b") == ["127.0.77.20"]
    assert programmed(gateway, "b")["status"] == "True"
    assert wait_for(lambda: answers("127.0.77.20", port), what="b on the freed address")


@pytest.mark.usefixtures("app")
def test_address_held_by_another_gateway_is_not_usable(gateway: Gateway) -> None:
    port = free_port()
    gateway.write("pool.yaml", pool("lan", "127.0.77.30-127.0.77.31"))
    gateway.write("web.yaml", gateway_doc("web", port))
    gateway.start()
    assert held(gateway, "web") == ["127.0.77.30"]

    # "api" sorts first and asks for web's address by name: web keeps it.
    reload_with(gateway, "api.yaml", gateway_doc("api", free_port(), address="127.0.77.30"))
    assert held(gateway, "web") == ["127.0.77.30"]
    assert held(gateway, "api") == []
    condition = programmed(gateway, "api")
    assert (condition["status"], condition["reason"]) == ("False", "AddressNotUsable")
    assert "default/web" in condition["message"]
    assert programmed(gateway, "web")["status"] == "True"

    # Asking for a free address of the pool works.
    reload_with(gateway, "api.yaml", gateway_doc("api", port, address="127.0.77.31"))
    assert held(gateway, "api") == ["127.0.77.31"]
    assert programmed(gateway, "api")["status"] == "True"
    assert wait_for(lambda: answers("127.0.77.31", port), what="api on its address") == "app"


@pytest.mark.usefixtures("app")
def test_allocation_is_kept_across_restarts_by_the_state_dir(gateway: Gateway) -> None:
    port = free_port()
    gateway.write("pool.yaml", pool("lan", "127.0.77.40-127.0.77.49"))
    gateway.write("web.yaml", gateway_doc("web", port))
    gateway.start()
    reload_with(gateway, "api.yaml", gateway_doc("api", port))
    before = {"api": held(gateway, "api"), "web": held(gateway, "web")}
    assert before == {"api": ["127.0.77.41"], "web": ["127.0.77.40"]}
    allocations = json.loads((gateway.state / "allocations.json").read_text())
    assert {"namespace": "default", "name": "web", "addresses": ["127.0.77.40"]} in (
        allocations["gateways"]
    )

    assert gateway.stop() == 0
    gateway.start()
    assert {"api": held(gateway, "api"), "web": held(gateway, "web")} == before
    assert wait_for(lambda: answers("127.0.77.40", port), what="web after the restart")

    # Without the state dir the same config allocates afresh, in namespace/name order.
    assert gateway.stop() == 0
    shutil.rmtree(gateway.state)
    gateway.start()
    assert held(gateway, "api") == ["127.0.77.40"]
    assert held(gateway, "web") == ["127.0.77.41"]


@pytest.mark.usefixtures("app")
def test_annotation_picks_a_pool_and_without_one_the_default_address_applies(
    gateway: Gateway,
) -> None:
    port = free_port()
    gateway.write("pool.yaml", pool("manual", "127.0.77.50/32", auto_assign=False))
    gateway.write("picked.yaml", gateway_doc("picked", port, pool_name="manual"))
    gateway.write("plain.yaml", gateway_doc("plain", port))
    gateway.write("missing.yaml", gateway_doc("missing", free_port(), pool_name="nope"))
    gateway.start()

    assert held(gateway, "picked") == ["127.0.77.50"]
    assert wait_for(lambda: answers("127.0.77.50", port), what="the annotated pool's address")
    # No autoAssign pool and no annotation: --default-address, as if there were no pools.
    assert held(gateway, "plain") == ["127.0.0.1"]
    assert wait_for(lambda: answers("127.0.0.1", port), what="the default address")
    condition = programmed(gateway, "missing")
    assert (condition["status"], condition["reason"]) == ("False", "AddressNotAssigned")
    assert "nope" in condition["message"]
