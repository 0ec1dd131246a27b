"""HTTPRouteBackendRequestRedirect and HTTPRouteBackendURLRewrite through ``edgegw run``.

The golden case ``httproute-backend-filters`` holds their manifests (and
checks the status); here the same routes serve real requests: a redirect
decided by the picked backendRef's filter, and a path rewritten by it before
the request reaches the echo backend.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from tests.e2e.conftest import Echo, Gateway, echoed, free_port, request

GOLDEN = Path(__file__).parent.parent / "golden"
NS = "gateway-conformance-infra"


def start(gateway: Gateway, echoes: dict[str, Echo], route: str) -> int:
    """Serve the Gateway, the backend and HTTPRoute ``route`` of the golden case."""
    port = free_port()
    text = (GOLDEN / "httproute-backend-filters.in.yaml").read_text()
    docs = [
        d
        for d in yaml.safe_load_all(text)
        if d
        and d["kind"] not in ("Service", "EndpointSlice")
        and (d["kind"] != "HTTPRoute" or d["metadata"]["name"] == route)
    ]
    body = yaml.safe_dump_all(docs, sort_keys=False)
    gateway.write("case.yaml", re.sub(r"\bport: 80\b", f"port: {port}", body))
    gateway.service("infra-backend-v1", echoes["infra-backend-v1"], namespace=NS, port=8080)
    gateway.start()
    parents = gateway.resource("HTTPRoute", route, NS)["status"]["parents"]
    assert {c["type"]: c["status"] for c in parents[0]["conditions"]} == {
        "Accepted": "True",
        "ResolvedRefs": "True",
    }
    return port


def test_httproute_backend_request_redirect(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = start(gateway, echoes, "backend-request-redirect")
    for path, redirected in [
        ("/full/original", "/redirected-full"),
        ("/prefix/original", "/redirected-prefix/original"),
    ]:
        code, headers, _ = request(port, path, host="example.com")
        assert code == 302, path
        assert urlsplit(headers["location"]).path == redirected


def test_httproute_backend_url_rewrite(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = start(gateway, echoes, "backend-url-rewrite")
    for path, rewritten in [
        ("/full/original", "/rewritten-full"),
        ("/prefix/original", "/rewritten-prefix/original"),
    ]:
        code, _, body = request(port, path, host="example.com")
        assert code == 200, path
        seen = echoed(body)
        assert seen["pod"] == "infra-backend-v1"
        assert seen["path"] == rewritten
