"""GatewayStaticAddresses through a real ``edgegw run``: a usable address serves, others say why.

The upstream test's three steps: an unsupported address type (Accepted=False),
then an address this host does not have and no L2Advertisement announces
(Programmed=False/AddressNotUsable, though IP_FREEBIND would let it bind),
then only the usable address, which carries traffic and is in status.
"""

from __future__ import annotations

import http.client

from tests.e2e.conftest import GATEWAY_CLASS, Echo, Gateway, echoed, free_port, wait_for

USABLE, UNUSABLE = "127.0.0.10", "203.0.113.9"


def gateway_doc(port: int, addresses: str) -> str:
    return (
        GATEWAY_CLASS
        + f"""\
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gateway-static-addresses}}
spec:
  gatewayClassName: edgegw
  addresses: [{addresses}]
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app}}
spec:
  parentRefs: [{{name: gateway-static-addresses}}]
  rules: [{{backendRefs: [{{name: app, port: 80}}]}}]
"""
    )


def conditions(gateway: Gateway) -> dict[str, tuple[str, str]]:
    status = gateway.resource("Gateway", "gateway-static-addresses")["status"]
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_gateway_static_addresses(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = free_port()
    gateway.service("app", echoes["app"])
    invalid = '{type: test/fake-invalid-type, value: "fake address teehee!"}'
    unusable, usable = f"{{value: {UNUSABLE}}}", f"{{value: {USABLE}}}"
    gateway.write("gw.yaml", gateway_doc(port, f"{invalid}, {unusable}, {usable}"))
    gateway.start()
    assert conditions(gateway)["Accepted"] == ("False", "UnsupportedAddress")

    generation = gateway.generation()
    gateway.write("gw.yaml", gateway_doc(port, f"{unusable}, {usable}"))
    gateway.wait_generation_after(generation)
    got = conditions(gateway)
    assert got["Accepted"] == ("True", "Accepted")
    assert got["Programmed"] == ("False", "AddressNotUsable")

    generation = gateway.generation()
    gateway.write("gw.yaml", gateway_doc(port, usable))
    gateway.wait_generation_after(generation)
    assert conditions(gateway)["Programmed"] == ("True", "Programmed")
    status = gateway.resource("Gateway", "gateway-static-addresses")["status"]
    assert status["addresses"] == [{"type": "IPAddress", "value": USABLE}]
    code, body = wait_for(lambda: get(USABLE, port), what=f"traffic on {USABLE}")
    assert code == 200
    assert echoed(body)["pod"] == "app"


def get(address: str, port: int) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(address, port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": "x.example"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
