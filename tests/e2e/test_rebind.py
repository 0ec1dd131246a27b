"""A listener whose port was busy is bound, Programmed and served once the port frees up."""

from __future__ import annotations

import socket
import time

from tests.e2e.conftest import Echo, Gateway, free_port, http_gateway, request, wait_for

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
"""


def _programmed(gateway: Gateway) -> tuple[str, str]:
    listener = gateway.resource("Gateway", "gw")["status"]["listeners"][0]
    cond = {c["type"]: c for c in listener["conditions"]}["Programmed"]
    return cond["status"], cond["reason"]


def test_a_busy_port_is_bound_when_it_frees_up(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = free_port()
    holder = socket.create_server(("127.0.0.1", port))  # another process's listener
    try:
        gateway.service("svc", echoes["a"])
        gateway.write("gateway.yaml", http_gateway(port))
        gateway.write("route.yaml", ROUTE)
        gateway.start()
        assert _programmed(gateway) == ("False", "PortUnavailable")
        generation = gateway.generation()
    finally:
        holder.close()
    freed = time.monotonic()
    wait_for(lambda: _programmed(gateway) == ("True", "Programmed"), what="Programmed=True")
    took = time.monotonic() - freed
    assert took < 6  # the longest retry delay is 5 s
    assert gateway.admin("/readyz")[0] == 200
    status, _, body = request(port, "/")
    assert status == 200, body
    assert gateway.generation() == generation  # no reload was needed
    address = {"type": "IPAddress", "value": "127.0.0.1"}
    assert address in gateway.resource("Gateway", "gw")["status"]["addresses"]
