"""ListenerSet traffic through a real ``edgegw run``: the upstream routing tests' requests.

The upstream ``listenerset-*`` tests that send traffic run here on the same
golden manifests as ``tests/unit/test_listenerset_conformance.py`` (which
checks their status): port 80 becomes a free port, and the three
``infra-backend-v*`` Services become ``edgegw echo`` backends of those names,
so each request names the backend that answered. Then a team's HTTPS listener
with its own certificate, in its own namespace and file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import trustme
import yaml

from tests.e2e.conftest import Echo, Gateway, curl, echoed, free_port, request
from tests.e2e.test_https import tls_secret

GOLDEN = Path(__file__).parent.parent / "golden"
NS = "gateway-conformance-infra"
V1, V2, V3 = "infra-backend-v1", "infra-backend-v2", "infra-backend-v3"


def start_case(gateway: Gateway, echoes: dict[str, Echo], case: str) -> int:
    """Serve golden case ``listenerset-<case>`` on a free port; returns the port."""
    port = free_port()
    text = (GOLDEN / f"listenerset-{case}.in.yaml").read_text()
    docs = [
        d for d in yaml.safe_load_all(text) if d and d["kind"] not in ("Service", "EndpointSlice")
    ]
    body = yaml.safe_dump_all(docs, sort_keys=False)
    gateway.write("case.yaml", re.sub(r"\bport: 80\b", f"port: {port}", body))
    for name in (V1, V2, V3):
        gateway.service(name, echoes[name], namespace=NS, port=8080)
    gateway.start()
    return port


def expect(port: int, cases: list[tuple[str, str, str | None]]) -> None:
    """Each (host, path, backend) answers from that backend, or 404 when backend is None."""
    for host, path, backend in cases:
        status, _, body = request(port, path, host=host)
        if backend is None:
            assert status == 404, (host, path, status)
        else:
            assert status == 200, (host, path, status, body)
            assert echoed(body)["pod"] == backend, (host, path)


def test_listenerset_http_routing(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = start_case(gateway, echoes, "http-routing")
    gw1, gw2 = "gateway-listener-1.com", "gateway-listener-2.com"
    s1 = [f"listener-set-http-routing-1-listener-{i}.com" for i in (1, 2)]
    s2 = [f"listener-set-http-routing-2-listener-{i}.com" for i in (1, 2)]
    every = [gw1, gw2, *s1, *s2]
    cases: list[tuple[str, str, str | None]] = [(h, "/route", V1) for h in every]
    cases += [(h, "/gateway-route", V2 if h in (gw1, gw2) else None) for h in every]
    cases += [(h, "/gateway-section-route", V3 if h == gw1 else None) for h in every]
    cases += [(h, "/listener-set-http-routing-1-route", V2 if h in s1 else None) for h in every]
    cases += [
        (h, "/listener-set-http-routing-1-section-route", V3 if h == s1[0] else None) for h in every
    ]
    cases += [(h, "/listener-set-http-routing-2-route", V2 if h in s2 else None) for h in every]
    expect(port, cases)


def test_listenerset_allowed_routes_namespaces(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = start_case(gateway, echoes, "allowed-routes-namespaces")
    every, same, selector, cross = (
        f"listener-set-listener-allowed-routes-{k}.com"
        for k in ("all", "same", "selector", "cross-ns-same")
    )
    expect(
        port,
        [
            (every, "/route-in-same-namespace", V1),
            (every, "/route-in-selected-namespace", V2),
            (every, "/route-not-in-selected-namespace", V3),
            (same, "/route-in-same-namespace", V1),
            (same, "/route-in-selected-namespace", None),
            (same, "/route-not-in-selected-namespace", None),
            (selector, "/route-in-same-namespace", None),
            (selector, "/route-in-selected-namespace", V2),
            (selector, "/route-not-in-selected-namespace", None),
            (cross, "/route-in-listenerset-namespace", V1),
            (cross, "/route-in-gateway-namespace", None),
        ],
    )


def test_listenerset_dual_parentref_independence(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = start_case(gateway, echoes, "dual-parentref-independence")
    expect(
        port,
        [
            ("gw-dual.com", "/dualboth", V1),
            ("ls-dual.com", "/dualboth", V1),
            ("ls-dual.com", "/dualone", V2),
            ("gw-dual.com", "/dualone", None),
        ],
    )


def test_listenerset_gateway_parent_section_name_not_found(
    gateway: Gateway, echoes: dict[str, Echo]
) -> None:
    port = start_case(gateway, echoes, "gateway-parent-section-name-not-found")
    expect(
        port, [("ls-section-name.com", "/goodsection", V1), ("gw-section.com", "/badsection", None)]
    )


def test_listenerset_status_in_admin_api_and_cli(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    """``/api/status`` and ``edgegw status`` show ListenerSets as they show Gateways."""
    start_case(gateway, echoes, "route-status-scoped-to-parentref")
    found = gateway.resource("ListenerSet", "listenerset-parentref", NS)
    assert found["apiVersion"] == "gateway.networking.k8s.io/v1"
    conditions = {c["type"]: c["status"] for c in found["status"]["conditions"]}
    assert conditions == {"Accepted": "True", "Programmed": "True"}
    (entry,) = found["status"]["listeners"]
    assert entry["attachedRoutes"] == 1
    gw = gateway.resource("Gateway", "gateway-parentref", NS)
    assert gw["status"]["attachedListenerSets"] == 1
    route = gateway.resource("HTTPRoute", "route-parentref-lsonly", NS)
    assert route["status"]["parents"][0]["parentRef"]["kind"] == "ListenerSet"
    table = subprocess.run(
        [sys.executable, "-m", "edgegw", "status", "--admin", f"127.0.0.1:{gateway.admin_port}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    assert re.search(rf"{NS}\s+listenerset-parentref\s+1\s+True\s+True", table), table
    assert f"ListenerSet {NS}/listenerset-parentref" in table


def test_listenerset_team_https_listener_with_its_own_certificate(
    gateway: Gateway, echoes: dict[str, Echo], tmp_path: Path
) -> None:
    """A team adds an HTTPS listener and its certificate in its own namespace and file."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port, http_port = free_port(), free_port()
    gateway.service("shared", echoes["shared"])
    gateway.service("shop", echoes["shop"], namespace="shop")
    gateway.write("secret-shared.yaml", tls_secret("shared-cert", ca, "www.example.com"))
    shop_secret = tls_secret("shop-cert", ca, "shop.example.com")
    gateway.write("team/secret.yaml", shop_secret.replace("namespace: default", "namespace: shop"))
    gateway.write(
        "gateway.yaml",
        f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: edgegw}}
spec: {{controllerName: edgegw.io/gateway-controller}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{listeners: allowed}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: edgegw
  allowedListeners:
    namespaces: {{from: Selector, selector: {{matchLabels: {{listeners: allowed}}}}}}
  listeners:
  - name: https
    protocol: HTTPS
    port: {port}
    hostname: www.example.com
    tls: {{certificateRefs: [{{name: shared-cert}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shared, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: shared, port: 80}}]}}]
""",
    )
    gateway.write(
        "team/listeners.yaml",
        f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{name: shop, namespace: shop}}
spec:
  parentRef: {{name: gw, namespace: default}}
  listeners:
  - name: https
    protocol: HTTPS
    port: {port}
    hostname: shop.example.com
    tls: {{certificateRefs: [{{name: shop-cert}}]}}
  - name: http
    protocol: HTTP
    port: {http_port}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop, namespace: shop}}
spec:
  parentRefs: [{{kind: ListenerSet, name: shop}}]
  rules: [{{backendRefs: [{{name: shop, port: 80}}]}}]
""",
    )
    gateway.start()
    for host, pod in (("www.example.com", "shared"), ("shop.example.com", "shop")):
        result = curl(
            "--cacert",
            str(ca_file),
            "--resolve",
            f"{host}:{port}:127.0.0.1",
            f"https://{host}:{port}/x",
        )
        assert result.returncode == 0, result.stderr
        assert echoed(result.stdout)["pod"] == pod
    status, _, body = request(http_port, "/plain", host="anything.example")
    assert status == 200
    assert echoed(body)["pod"] == "shop"
    # the shared listener does not serve the team's route, nor the team's listener the shared one
    result = curl(
        "--cacert",
        str(ca_file),
        "--resolve",
        f"www.example.com:{port}:127.0.0.1",
        "-H",
        "Host: shop.example.com",
        f"https://www.example.com:{port}/x",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    )
    assert result.stdout in ("404", "421"), result
