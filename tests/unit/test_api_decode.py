"""Every kind in every served version decodes from realistic YAML, with the CRD defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgegw import api
from edgegw.config import ConfigStore, decode, parse
from edgegw.config.decode import KINDS

DATA = Path(__file__).parent / "data" / "config" / "all-kinds"


@pytest.fixture(scope="module")
def loaded() -> api.Resources:
    result = ConfigStore(DATA).reload()
    assert result.errors == ()
    assert result.warnings == ()
    return result.resources


def _one(items: tuple[api.Object, ...], name: str) -> api.Object:
    (found,) = [o for o in items if o.metadata.name == name]
    return found


def test_every_kind_and_version_in_the_fixtures_is_loaded(loaded: api.Resources) -> None:
    versions = {
        (o.kind, o.api_version)
        for field in api.Resources.__struct_fields__
        for o in getattr(loaded, field)
    }
    for (group, kind), served in KINDS.items():
        for version in served:
            want = f"{group}/{version}" if group else version
            assert (kind, want) in versions, f"{kind} {want} missing from fixtures"


def test_gateway_fields_and_defaults(loaded: api.Resources) -> None:
    gw = _one(loaded.gateways, "production-gateway")
    assert isinstance(gw, api.Gateway)
    assert gw.metadata.namespace == "web-app"
    assert gw.source == api.Source(file="gateway.yaml", line=17)
    http, https, passthrough = gw.spec.listeners
    assert http.allowed_routes.namespaces.from_ == "All"
    assert https.allowed_routes.namespaces.from_ == "Same"  # CRD default
    assert https.tls is not None
    assert https.tls.certificate_refs[0].group == ""
    assert passthrough.tls is not None
    assert passthrough.tls.mode == "Passthrough"
    assert passthrough.allowed_routes.kinds[0].group == "gateway.networking.k8s.io"
    assert gw.spec.addresses[0].type == "IPAddress"
    assert gw.spec.tls is not None
    assert gw.spec.tls.frontend is not None
    assert gw.spec.tls.frontend.default.validation is not None
    assert gw.spec.tls.frontend.default.validation.mode == "AllowValidOnly"
    assert gw.spec.tls.backend is not None
    assert gw.spec.tls.backend.client_certificate_ref is not None
    assert gw.spec.tls.backend.client_certificate_ref.kind == "Secret"


def test_cluster_scoped_kinds_have_no_namespace(loaded: api.Resources) -> None:
    assert all(c.metadata.namespace is None for c in loaded.gateway_classes)
    assert all(n.metadata.namespace is None for n in loaded.namespaces)
    assert _one(loaded.gateways, "example-gateway").metadata.namespace == "default"


def test_httproute_fields_and_defaults(loaded: api.Resources) -> None:
    route = _one(loaded.http_routes, "web-app-route")
    assert isinstance(route, api.HTTPRoute)
    parent = route.spec.parent_refs[0]
    assert (parent.group, parent.kind, parent.section_name) == (
        "gateway.networking.k8s.io",
        "Gateway",
        "http",
    )
    api_rule, plain_rule, redirect_rule = route.spec.rules
    assert api_rule.name == "api"
    assert api_rule.matches[0].headers[0].type == "Exact"
    assert api_rule.backend_refs[0].group == ""
    assert api_rule.backend_refs[0].kind == "Service"
    assert api_rule.timeouts is not None
    assert api_rule.timeouts.request == 10.0
    assert api_rule.timeouts.backend_request == 2.5
    assert api_rule.retry is not None
    assert api_rule.retry.backoff == pytest.approx(0.1)
    assert api_rule.session_persistence is not None
    assert api_rule.session_persistence.absolute_timeout == 3600.0
    mirror = api_rule.filters[2].request_mirror
    assert mirror is not None
    assert mirror.percent == 10
    cors = api_rule.filters[3].cors
    assert cors is not None
    assert cors.max_age == 5
    assert plain_rule.matches[0].path.type == "PathPrefix"
    assert plain_rule.matches[0].path.value == "/"
    assert plain_rule.backend_refs[0].weight == 1
    redirect = redirect_rule.filters[0].request_redirect
    assert redirect is not None
    assert redirect.status_code == 301


def test_l4_and_grpc_routes(loaded: api.Resources) -> None:
    grpc = _one(loaded.grpc_routes, "grpc-service-route")
    assert isinstance(grpc, api.GRPCRoute)
    method = grpc.spec.rules[0].matches[0].method
    assert method is not None
    assert (method.type, method.service, method.method) == (
        "Exact",
        "helloworld.Greeter",
        "SayHello",
    )
    tls = _one(loaded.tls_routes, "tls-passthrough-route")
    assert isinstance(tls, api.TLSRoute)
    assert tls.spec.hostnames == ("secure.example.com",)
    assert len(loaded.tcp_routes) == 2
    assert len(loaded.udp_routes) == 2


def test_core_kinds(loaded: api.Resources) -> None:
    svc = _one(loaded.services, "api-service")
    assert isinstance(svc, api.Service)
    assert svc.spec.ports[0].app_protocol == "kubernetes.io/h2c"
    assert svc.spec.ports[0].protocol == "TCP"
    ext = _one(loaded.services, "external")
    assert isinstance(ext, api.Service)
    assert ext.spec.external_name == "api.example.net"
    secret = _one(loaded.secrets, "tls-secret")
    assert isinstance(secret, api.Secret)
    assert secret.data == {"tls.crt": b"cert", "tls.key": b"key"}
    slice_ = loaded.endpoint_slices[0]
    assert slice_.metadata.labels["kubernetes.io/service-name"] == "api-service"
    assert slice_.endpoints[0].addresses == ("127.0.0.1",)
    assert slice_.ports[0].port == 9000
    ns = loaded.namespaces[0]
    assert ns.metadata.labels == {"gateway-access": "true"}


def test_backend_and_metallb(loaded: api.Resources) -> None:
    local = _one(loaded.backends, "local-app")
    assert isinstance(local, api.Backend)
    assert local.spec.endpoints[0].ip is not None
    assert local.spec.endpoints[0].ip.port == 3000
    assert local.spec.endpoints[1].unix is not None
    pool = loaded.ip_address_pools[0]
    assert pool.spec.auto_assign is True
    assert pool.spec.avoid_buggy_ips is False
    assert loaded.l2_advertisements[0].spec.interfaces == ("eth0",)


def test_resources_are_sorted_by_namespace_then_name(loaded: api.Resources) -> None:
    keys = [(r.metadata.namespace, r.metadata.name) for r in loaded.http_routes]
    assert keys == sorted(keys)
    assert [g.metadata.name for g in loaded.gateways] == ["example-gateway", "production-gateway"]


def test_secret_string_data_wins_over_data() -> None:
    (doc,) = parse(
        "s.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\n"
        "data: {tls.crt: b2xk, tls.key: a2V5}\nstringData: {tls.crt: new}\n",
    )
    secret = decode(doc)
    assert isinstance(secret, api.Secret)
    assert secret.data == {"tls.crt": b"new", "tls.key": b"key"}


def test_creation_timestamp_unquoted_is_epoch_seconds() -> None:
    (doc,) = parse(
        "c.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"
        "  creationTimestamp: 2024-01-01T00:00:00Z\n  uid: 1234\n  managedFields: []\n",
    )
    assert decode(doc).metadata.creation_timestamp == 1704067200.0


def test_http_route_without_rules_matches_everything() -> None:
    (doc,) = parse(
        "r.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        "metadata: {name: r}\nspec: {}\n",
    )
    route = decode(doc)
    assert isinstance(route, api.HTTPRoute)
    (rule,) = route.spec.rules
    assert (rule.matches[0].path.type, rule.matches[0].path.value) == ("PathPrefix", "/")


def test_listenerset_fields_and_defaults(loaded: api.Resources) -> None:
    found = _one(loaded.listener_sets, "shop-listeners")
    assert isinstance(found, api.ListenerSet)
    ref = found.spec.parent_ref
    assert (ref.group, ref.kind, ref.name, ref.namespace) == (
        "gateway.networking.k8s.io",
        "Gateway",
        "production-gateway",
        None,
    )
    (listener,) = found.spec.listeners
    assert listener.allowed_routes.namespaces.from_ == "Same"  # CRD default
    assert listener.tls is not None
    assert listener.tls.mode == "Terminate"
