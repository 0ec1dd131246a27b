"""Each CRD rule rejects a bad resource with the file, line and field a user needs to fix it.

Every case marks the line the error must point at with ``# <-``.
"""

from __future__ import annotations

import pytest

from edgegw.config import decode, parse
from edgegw.errors import ConfigError

GW = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"
RT = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n"

CASES: dict[str, tuple[str, str, str]] = {
    # name: (yaml, field, message fragment)
    "path must start with slash": (
        RT + "  rules:\n  - matches:\n    - path:\n        type: Exact\n        value: api  # <-\n",
        "spec.rules[0].matches[0].path.value",
        'start with "/"',
    ),
    "path must not contain //": (
        RT + "  rules:\n  - matches:\n    - path: {value: /a//b}  # <-\n",
        "spec.rules[0].matches[0].path.value",
        "'//'",
    ),
    "unknown field is named": (
        RT + "  rules:\n  - matchs: []  # <-\n",
        "spec.rules[0].matchs",
        "unknown field `matchs`",
    ),
    "port range": (
        GW + "  gatewayClassName: c\n  listeners:\n  - name: a\n    port: 70000  # <-\n"
        "    protocol: HTTP\n",
        "spec.listeners[0].port",
        "<= 65535",
    ),
    "weight range": (
        RT + "  rules:\n  - backendRefs:\n    - name: s\n      port: 80\n"
        "      weight: 1000001  # <-\n",
        "spec.rules[0].backendRefs[0].weight",
        "<= 1000000",
    ),
    "service backend needs a port": (
        RT + "  rules:\n  - backendRefs:\n    - name: s  # <-\n",
        "spec.rules[0].backendRefs[0].port",
        "must have port",
    ),
    "missing required field points at parent": (
        GW.replace("spec:", "spec:  # <-")
        + "  listeners:\n  - {name: a, port: 80, protocol: HTTP}\n",
        "spec.gatewayClassName",
        "required field is missing",
    ),
    "hostname pattern": (
        RT + "  hostnames:\n  - Bad_Host  # <-\n",
        "spec.hostnames[0]",
        "matching regex",
    ),
    "hostname is not an IP": (
        RT + "  hostnames:\n  - 10.0.0.1  # <-\n",
        "spec.hostnames[0]",
        "IP address",
    ),
    "enum": (
        RT + "  rules:\n  - matches:\n    - path:\n        type: Prefix  # <-\n",
        "spec.rules[0].matches[0].path.type",
        "Invalid enum value 'Prefix'",
    ),
    "max 64 listeners": (
        GW
        + "  gatewayClassName: c\n  listeners:  # <-\n"
        + "".join(f"  - {{name: l{i}, port: {1000 + i}, protocol: HTTP}}\n" for i in range(65)),
        "spec.listeners",
        "length <= 64",
    ),
    "max 16 rules": (
        RT + "  rules:  # <-\n" + "  - {}\n" * 17,
        "spec.rules",
        "length <= 16",
    ),
    "listener names unique": (
        GW + "  gatewayClassName: c\n  listeners:\n  - {name: a, port: 80, protocol: HTTP}\n"
        "  - {name: a, port: 81, protocol: HTTP}  # <-\n",
        "spec.listeners[1]",
        "listener name must be unique",
    ),
    "tls forbidden on HTTP listener": (
        GW + "  gatewayClassName: c\n  listeners:\n  - name: a\n    port: 80\n    protocol: HTTP\n"
        "    tls:  # <-\n      certificateRefs: [{name: x}]\n",
        "spec.listeners[0].tls",
        "tls must not be specified",
    ),
    "tls required on TLS listener": (
        GW + "  gatewayClassName: c\n  listeners:\n  - name: a  # <-\n    port: 443\n"
        "    protocol: TLS\n",
        "spec.listeners[0].tls",
        "tls mode must be set",
    ),
    "terminate needs certificateRefs": (
        GW + "  gatewayClassName: c\n  listeners:\n  - name: a\n    port: 443\n"
        "    protocol: HTTPS\n    tls:  # <-\n      mode: Terminate\n",
        "spec.listeners[0].tls.certificateRefs",
        "certificateRefs or options must be specified",
    ),
    "hostname forbidden on TCP listener": (
        GW + "  gatewayClassName: c\n  listeners:\n  - name: a\n    port: 9000\n"
        "    protocol: TCP\n    hostname: db.example.com  # <-\n",
        "spec.listeners[0].hostname",
        "hostname must not be specified",
    ),
    "redirect and rewrite together": (
        RT + "  rules:\n  - filters:\n    - type: RequestRedirect\n"
        "      requestRedirect: {scheme: https}\n"
        "    - type: URLRewrite  # <-\n      urlRewrite: {hostname: a.example.com}\n",
        "spec.rules[0].filters[1]",
        "RequestRedirect or URLRewrite",
    ),
    "replacePrefixMatch needs a PathPrefix match": (
        RT + "  rules:\n  - matches:  # <-\n    - path: {type: Exact, value: /a}\n"
        "    filters:\n    - type: URLRewrite\n      urlRewrite:\n        path:\n"
        "          type: ReplacePrefixMatch\n          replacePrefixMatch: /b\n",
        "spec.rules[0].matches",
        "exactly one PathPrefix match",
    ),
    "filter type must match its config": (
        RT + "  rules:\n  - filters:\n    - type: RequestHeaderModifier  # <-\n"
        "      responseHeaderModifier:\n        set: [{name: a, value: b}]\n",
        "spec.rules[0].filters[0].requestHeaderModifier",
        "must be specified",
    ),
    "core filter at most once": (
        RT + "  rules:\n  - filters:\n    - type: RequestHeaderModifier\n"
        "      requestHeaderModifier: {remove: [a]}\n"
        "    - type: RequestHeaderModifier  # <-\n      requestHeaderModifier: {remove: [b]}\n",
        "spec.rules[0].filters[1]",
        "cannot be repeated",
    ),
    "redirect with backendRefs": (
        RT + "  rules:\n  - filters:\n    - type: RequestRedirect  # <-\n"
        "      requestRedirect: {scheme: https}\n"
        "    backendRefs: [{name: s, port: 80}]\n",
        "spec.rules[0].filters[0]",
        "must not be used together with backendRefs",
    ),
    "duration format": (
        RT + "  rules:\n  - timeouts:\n      request: 10 seconds  # <-\n",
        "spec.rules[0].timeouts.request",
        "invalid duration",
    ),
    "backendRequest not longer than request": (
        RT + "  rules:\n  - timeouts:\n      request: 1s\n      backendRequest: 2s  # <-\n",
        "spec.rules[0].timeouts.backendRequest",
        "cannot be longer",
    ),
    "mirror percent and fraction": (
        RT + "  rules:\n  - filters:\n    - type: RequestMirror\n      requestMirror:\n"
        "        backendRef: {name: m, port: 80}\n        percent: 5\n"
        "        fraction: {numerator: 1}  # <-\n",
        "spec.rules[0].filters[0].requestMirror.fraction",
        "only one of percent or fraction",
    ),
    "cors wildcard alone": (
        RT + "  rules:\n  - filters:\n    - type: CORS\n      cors:\n"
        "        allowOrigins: ['*', 'https://a.example.com']  # <-\n",
        "spec.rules[0].filters[0].cors.allowOrigins",
        "cannot contain '*'",
    ),
    "header name pattern": (
        RT + "  rules:\n  - matches:\n    - headers:\n      - name: 'bad header'  # <-\n"
        "        value: x\n",
        "spec.rules[0].matches[0].headers[0].name",
        "matching regex",
    ),
    "duplicate parentRefs need sectionName": (
        RT + "  parentRefs:\n  - name: gw\n    sectionName: http\n  - name: gw  # <-\n",
        "spec.parentRefs[1]",
        "sectionName or port must be specified",
    ),
    "grpc method match needs service or method": (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\n"
        "spec:\n  rules:\n  - matches:\n    - method:  # <-\n        type: Exact\n",
        "spec.rules[0].matches[0].method.service",
        "'service' or 'method'",
    ),
    "tlsroute v1 allows one rule": (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {name: t}\n"
        "spec:\n  hostnames: [a.example.com]\n  rules:  # <-\n"
        "  - backendRefs: [{name: a, port: 443}]\n  - backendRefs: [{name: b, port: 443}]\n",
        "spec.rules",
        "at most 1 rule",
    ),
    "backendtlspolicy needs a CA": (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {name: p}\n"
        "spec:\n  targetRefs: [{group: '', kind: Service, name: s}]\n"
        "  validation:  # <-\n    hostname: s.internal\n",
        "spec.validation.caCertificateRefs",
        "must specify either",
    ),
    "backend endpoint needs exactly one address": (
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: b}\n"
        "spec:\n  endpoints:\n  - ip: {address: 10.0.0.1, port: 80}  # <-\n"
        "    fqdn: {hostname: a.example.com, port: 80}\n",
        "spec.endpoints[0]",
        "exactly one of fqdn, ip or unix",
    ),
    "ip address pool range": (
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\n"
        "spec:\n  addresses:\n  - 10.0.0.300/24  # <-\n",
        "spec.addresses[0]",
        "10.0.0.300/24",
    ),
    "tls secret needs key": (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\n"
        "data: {tls.crt: Y2VydA==}  # <-\n",
        "data",
        "tls.key",
    ),
    "service proxy protocol version": (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: app\n"
        "  annotations:  # <-\n    edgegw.io/proxy-protocol: v3\n"
        "spec: {ports: [{port: 80}]}\n",
        "metadata.annotations.edgegw.io/proxy-protocol",
        '"v1" or "v2"',
    ),
    "envoy backend proxy protocol version": (
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata:\n  name: b\n"
        "  annotations: {edgegw.io/proxy-protocol: '2'}  # <-\n"
        "spec:\n  endpoints: [{ip: {address: 10.0.0.1, port: 80}}]\n",
        "metadata.annotations.edgegw.io/proxy-protocol",
        '"v1" or "v2"',
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_rule_rejects_with_field_and_line(name: str) -> None:
    text, field, fragment = CASES[name]
    want_line = next(i for i, line in enumerate(text.splitlines(), 1) if "# <-" in line)
    docs = parse("routes/app.yaml", text)
    with pytest.raises(ConfigError) as caught:
        decode(docs[0])
    error = caught.value
    assert (error.file, error.field) == ("routes/app.yaml", field)
    assert fragment in error.message
    assert error.line == want_line


def test_error_str_and_dict_name_file_line_and_field() -> None:
    (doc,) = parse("routes/app.yaml", CASES["path must start with slash"][0])
    with pytest.raises(ConfigError) as caught:
        decode(doc)
    assert str(caught.value) == (
        "routes/app.yaml:9: spec.rules[0].matches[0].path.value: "
        'must be an absolute path and start with "/"'
    )
    assert caught.value.as_dict() == {
        "file": "routes/app.yaml",
        "line": 9,
        "field": "spec.rules[0].matches[0].path.value",
        "message": 'must be an absolute path and start with "/"',
    }


def test_regular_expression_paths_skip_the_path_rules() -> None:
    text = (
        RT + "  rules:\n  - matches:\n    - path: {type: RegularExpression, value: '^/v[0-9]+'}\n"
    )
    (doc,) = parse("r.yaml", text)
    assert decode(doc).metadata.name == "r"


def test_older_versions_allow_several_l4_rules() -> None:
    text = (
        "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: t}\n"
        "spec:\n  rules:\n  - backendRefs: [{name: a, port: 1}]\n"
        "  - backendRefs: [{name: b, port: 2}]\n"
    )
    (doc,) = parse("t.yaml", text)
    assert decode(doc).metadata.name == "t"
