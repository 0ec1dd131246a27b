"""HTTPRoute behaviour through a real ``edgegw run``, checked with curl and http.client."""

from __future__ import annotations

import collections

from tests.e2e.conftest import Echo, Gateway, curl, echoed, free_port, http_gateway, request


def route(name: str, body: str, *, hostnames: str = "") -> str:
    host_line = f"  hostnames: {hostnames}\n" if hostnames else ""
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
{host_line}  rules:
{body}"""


def start(gateway: Gateway, port: int) -> None:
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.start()


def test_basic_route_spreads_over_two_backends(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = free_port()
    gateway.service("app", [echoes["a"], echoes["b"]])
    gateway.write(
        "route.yaml",
        route(
            "basic",
            """\
  - backendRefs: [{name: app, port: 80}]
""",
            hostnames='["basic.example.com"]',
        ),
    )
    start(gateway, port)

    pods: collections.Counter[str] = collections.Counter()
    for _ in range(20):
        result = curl("-H", "Host: basic.example.com", f"http://127.0.0.1:{port}/hello?x=1")
        assert result.returncode == 0, result.stderr
        body = echoed(result.stdout)
        assert body["path"] == "/hello?x=1"
        assert body["host"] == "basic.example.com"
        assert body["method"] == "GET"
        pods[body["pod"]] += 1
    assert set(pods) == {"a", "b"}, pods
    assert min(pods.values()) >= 5

    status, _, _ = request(port, "/", host="other.example.com")
    assert status == 404


def test_canary_weights_and_header_match(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = free_port()
    gateway.service("stable", echoes["stable"])
    gateway.service("canary", echoes["canary"])
    gateway.write(
        "route.yaml",
        route(
            "app",
            """\
  - matches:
    - headers: [{name: x-version, value: v2}]
    backendRefs: [{name: canary, port: 80}]
  - backendRefs:
    - {name: stable, port: 80, weight: 90}
    - {name: canary, port: 80, weight: 10}
""",
        ),
    )
    start(gateway, port)

    pods = collections.Counter(echoed(request(port, "/")[2])["pod"] for _ in range(300))
    assert 10 <= pods["canary"] <= 60, pods  # 10% of 300 is 30
    for _ in range(10):
        body = echoed(request(port, "/", headers={"x-version": "v2"})[2])
        assert body["pod"] == "canary"


def test_rewrite_and_header_modifiers(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = free_port()
    gateway.service("app", echoes["a"])
    gateway.write(
        "route.yaml",
        route(
            "app",
            """\
  - matches: [{path: {type: PathPrefix, value: /api/v1}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-env, value: demo}]
        add: [{name: x-added, value: "1"}]
        remove: [x-debug]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: x-served-by, value: edgegw}]
    backendRefs: [{name: app, port: 80}]
""",
        ),
    )
    start(gateway, port)

    status, headers, body = request(
        port, "/api/v1/items?q=2", headers={"x-debug": "1", "x-env": "prod"}
    )
    assert status == 200
    echo = echoed(body)
    assert echo["path"] == "/items?q=2"
    assert echo["headers"]["x-env"] == ["demo"]
    assert echo["headers"]["x-added"] == ["1"]
    assert "x-debug" not in echo["headers"]
    assert echo["headers"]["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-served-by"] == "edgegw"
    assert request(port, "/api/v10")[0] == 404  # prefixes match whole segments


def test_redirect_and_unresolved_backend(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = free_port()
    gateway.service("app", echoes["a"])
    gateway.write(
        "route.yaml",
        route(
            "app",
            """\
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, statusCode: 301}
  - matches: [{path: {type: PathPrefix, value: /missing}}]
    backendRefs: [{name: no-such-service, port: 80}]
  - backendRefs: [{name: app, port: 80}]
""",
        ),
    )
    start(gateway, port)

    status, headers, _ = request(port, "/old/page?a=b")
    assert status == 301
    assert headers["location"] == f"http://example.com:{port}/new/page?a=b"
    assert request(port, "/missing")[0] == 500
    parents = gateway.resource("HTTPRoute", "app")["status"]["parents"]
    resolved = {c["type"]: c for c in parents[0]["conditions"]}["ResolvedRefs"]
    assert (resolved["status"], resolved["reason"]) == ("False", "BackendNotFound")
