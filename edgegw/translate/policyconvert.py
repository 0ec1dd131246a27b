"""Envoy Gateway policy specs → the IR each one becomes, or why it cannot.

Pure: Secrets and backends are looked up in the ``Index``; a problem is a
message naming the field, which ``translate.policies`` puts in the policy's
``Accepted=False`` condition. Secret contents never appear in a message.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from edgegw import api, ir
from edgegw.api import envoypolicies as ep
from edgegw.api import envoytraffic as et
from edgegw.api.envoyjwt import JWT
from edgegw.api.envoyoidc import OIDC
from edgegw.api.meta import SecretObjectReference
from edgegw.policy.basicauth import parse_htpasswd
from edgegw.translate.backends import BackendContext, resolve
from edgegw.translate.backendtls import BackendTLSPolicies
from edgegw.translate.clientconvert import Problem, client_fields
from edgegw.translate.clusterconvert import ClusterProblem, cluster_policy
from edgegw.translate.index import ENVOY_GROUP, Index
from edgegw.translate.jwtconvert import JWTConverter, JWTProblem
from edgegw.translate.oidcconvert import OIDCConverter, OIDCProblem

_UNIT_SECONDS = {"Second": 1.0, "Minute": 60.0, "Hour": 3600.0, "Day": 86400.0}
_COMPRESSORS: dict[str, ir.Compressor] = {"Gzip": "gzip", "Brotli": "br", "Zstd": "zstd"}
# retryOn triggers edgegw carries out: connection failures, and these statuses
_STATUS_TRIGGERS = {
    "5xx": tuple(range(500, 600)),
    "gateway-error": (502, 503, 504),
    "retriable-4xx": (409,),  # Envoy's retriable-4xx: 409 Conflict only
}
# Envoy's gRPC triggers: the grpc-status of a trailers-only answer (its headers)
_GRPC_TRIGGERS = {
    "cancelled": 1,
    "deadline-exceeded": 4,
    "resource-exhausted": 8,
    "internal": 13,
    "unavailable": 14,
}
_CONNECTION_TRIGGERS = {"reset", "reset-before-request", "connect-failure", "refused-stream"}
_DEFAULT_RETRY_CODES = (503,)


def _cidr(field: str, value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise Problem(f"{field}: {value!r} is not a CIDR") from None


# --- ClientTrafficPolicy ---------------------------------------------------------------------


def client_policy(policy: ep.ClientTrafficPolicy) -> ir.ClientPolicy:
    """Raises: Problem."""
    spec = policy.spec
    name = f"{policy.metadata.namespace}/{policy.metadata.name}"
    detection = None
    if spec.client_ip_detection is not None:
        detection = _client_ip(spec.client_ip_detection)
    keepalive = None
    if spec.tcp_keepalive is not None:
        k = spec.tcp_keepalive
        keepalive = ir.TCPKeepalive(
            probes=k.probes, idle_time=_secs(k.idle_time), interval=_secs(k.interval)
        )
    tls = spec.tls or ep.ClientTLSSettings()
    low, high = (None if v in (None, "Auto") else v for v in (tls.min_version, tls.max_version))
    if low is not None and high is not None and low > high:
        raise Problem("spec.tls.minVersion: higher than maxVersion")
    http = spec.timeout.http if spec.timeout and spec.timeout.http else None
    return ir.ClientPolicy(
        name=name,
        client_ip=detection,
        tcp_keepalive=keepalive,
        tls_min_version=low,
        tls_max_version=high,
        alpn=tuple(p for p in tls.alpn_protocols if p != "http/1.0"),
        idle_timeout=_secs(http.idle_timeout) if http else None,
        proxy_protocol=spec.enable_proxy_protocol or spec.proxy_protocol is not None,
        http3=spec.http3 is not None,
        **client_fields(spec),
    )


def _client_ip(spec: ep.ClientIPDetection) -> ir.ClientIPDetection:
    if spec.custom_header is not None:
        return ir.ClientIPDetection(
            custom_header=spec.custom_header.name.lower(),
            fail_closed=spec.custom_header.fail_closed,
        )
    xff = spec.x_forwarded_for or ep.XForwardedForSettings()
    cidrs = tuple(
        _cidr(f"spec.clientIPDetection.xForwardedFor.trustedCIDRs[{i}]", c)
        for i, c in enumerate(xff.trusted_cidrs)
    )
    return ir.ClientIPDetection(num_trusted_hops=xff.num_trusted_hops or 0, trusted_cidrs=cidrs)


def _secs(value: float | None) -> float | None:
    return float(value) if value else None


# --- BackendTrafficPolicy --------------------------------------------------------------------


@dataclass(frozen=True)
class BackendTraffic:
    """What a BackendTrafficPolicy does to a rule: per-request parts and rule settings."""

    traffic: ir.TrafficPolicy
    load_balancer: ir.LoadBalancerType | None
    request_timeout: float | None  # None: not set by the policy
    timeout_set: bool
    retry: ir.Retry | None
    per_try_timeout: float | None
    cluster: ir.ClusterPolicy | None = None  # healthCheck, circuitBreaker; named per rule


def backend_traffic(policy: ep.BackendTrafficPolicy) -> BackendTraffic:
    """Raises: Problem."""
    spec = policy.spec
    name = f"{policy.metadata.namespace}/{policy.metadata.name}"
    compression = tuple(
        dict.fromkeys(_COMPRESSORS[c.type] for c in (*spec.compressor, *spec.compression))
    )
    limits = _rate_limits(spec.rate_limit) if spec.rate_limit else ()
    http = spec.timeout.http if spec.timeout and spec.timeout.http else None
    timeout_set = http is not None and http.request_timeout is not None
    retry, per_try = _retry(spec.retry) if spec.retry else (None, None)
    lb = spec.load_balancer
    hash_on: tuple[Literal["SourceIP", "Header", "Cookie"], str] | None = None
    if lb is not None and lb.consistent_hash is not None:
        chash = lb.consistent_hash
        if chash.header is not None and chash.type == "Header":
            hash_on = ("Header", chash.header.name.lower())
        elif chash.cookie is not None and chash.type == "Cookie":
            hash_on = ("Cookie", chash.cookie.name)
        else:
            hash_on = ("SourceIP", "")
    return BackendTraffic(
        traffic=ir.TrafficPolicy(
            name=name,
            compression=compression,
            rate_limits=limits,
            hash_on=hash_on,
            fault=_fault(spec.fault_injection) if spec.fault_injection else None,
        ),
        load_balancer=None if lb is None or lb.type == "ConsistentHash" else lb.type,
        request_timeout=_secs(http.request_timeout) if http else None,
        timeout_set=timeout_set,
        retry=retry,
        per_try_timeout=per_try,
        cluster=_cluster(spec),
    )


def _cluster(spec: ep.BackendTrafficPolicySpec) -> ir.ClusterPolicy | None:
    try:
        return cluster_policy(spec)
    except ClusterProblem as exc:
        raise Problem(str(exc)) from None


def _fault(spec: et.FaultInjection) -> ir.FaultInjection:
    delay, abort = spec.delay, spec.abort
    return ir.FaultInjection(
        delay=float(delay.fixed_delay) if delay else None,
        delay_fraction=delay.percentage / 100 if delay else 0.0,
        abort_status=abort.http_status if abort else None,
        abort_grpc_status=abort.grpc_status if abort else None,
        abort_fraction=abort.percentage / 100 if abort else 0.0,
    )


def _retry(spec: ep.Retry) -> tuple[ir.Retry, float | None]:
    retry_on = spec.retry_on
    codes: list[int] = []
    grpc_statuses: list[int] = []
    if retry_on is None:
        codes += _DEFAULT_RETRY_CODES
    else:
        for i, trigger in enumerate(retry_on.triggers):
            if trigger in _STATUS_TRIGGERS:
                codes += _STATUS_TRIGGERS[trigger]
            elif trigger in _GRPC_TRIGGERS:
                grpc_statuses.append(_GRPC_TRIGGERS[trigger])
            elif trigger == "retriable-status-codes":
                codes += retry_on.http_status_codes
            elif trigger not in _CONNECTION_TRIGGERS:
                raise Problem(f"spec.retry.retryOn.triggers[{i}]: {trigger} is not implemented")
        if not retry_on.triggers:
            codes += retry_on.http_status_codes
    per = spec.per_retry
    backoff = per.back_off.base_interval if per and per.back_off else None
    retry = ir.Retry(
        codes=tuple(sorted(set(codes))),
        grpc_statuses=tuple(sorted(set(grpc_statuses))),
        attempts=spec.num_retries,
        backoff=_secs(backoff),
    )
    return retry, _secs(per.timeout) if per else None


def _rate_limits(spec: ep.RateLimitSpec) -> tuple[ir.RateLimitRule, ...]:
    assert spec.local is not None
    return tuple(
        ir.RateLimitRule(
            selectors=tuple(
                _selector(f"spec.rateLimit.local.rules[{i}].clientSelectors[{j}]", s)
                for j, s in enumerate(rule.client_selectors)
            ),
            requests=rule.limit.requests,
            seconds=_UNIT_SECONDS[rule.limit.unit],
        )
        for i, rule in enumerate(spec.local.rules)
    )


def _selector(field: str, spec: ep.RateLimitSelectCondition) -> ir.RateLimitSelector:
    headers = []
    for i, h in enumerate(spec.headers):
        if h.type == "RegularExpression":
            _regex(f"{field}.headers[{i}].value", h.value or "")
        headers.append(
            ir.RateLimitHeaderMatch(
                type=h.type, name=h.name.lower(), value=h.value or "", invert=h.invert
            )
        )
    source = spec.source_cidr
    return ir.RateLimitSelector(
        headers=tuple(headers),
        source_cidr=_cidr(f"{field}.sourceCIDR.value", source.value) if source else None,
        source_distinct=source is not None and source.type == "Distinct",
        source_invert=source is not None and source.invert,
    )


def _regex(field: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise Problem(f"{field}: invalid regular expression: {exc}") from None


# --- SecurityPolicy --------------------------------------------------------------------------


@dataclass(frozen=True)
class Security:
    security: ir.SecurityPolicy
    cors: ir.CORSFilter | None


class SecurityConverter:
    """Needs the Index for Secrets and backendRefs."""

    def __init__(self, index: Index, tls_policies: BackendTLSPolicies) -> None:
        self._index = index
        self._tls = tls_policies
        self._jwt = JWTConverter(index, tls_policies)
        self._oidc = OIDCConverter(index, tls_policies, self._secret)

    def __call__(self, policy: ep.SecurityPolicy) -> Security:
        """Raises: Problem."""
        spec = policy.spec
        ns = policy.metadata.namespace or ""
        if (
            (spec.ext_auth or spec.oidc)
            and spec.jwt
            and any(p.recompute_route for p in spec.jwt.providers)
        ):
            raise Problem(  # the JWT check may then run after the asynchronous step
                "spec.jwt.providers.recomputeRoute: not implemented together with extAuth or oidc"
            )
        jwt = self._jwt_auth(ns, spec.jwt) if spec.jwt else None
        security = ir.SecurityPolicy(
            name=f"{ns}/{policy.metadata.name}",
            authorization=_authorization(spec.authorization) if spec.authorization else None,
            basic_auth=self._basic_auth(ns, spec.basic_auth) if spec.basic_auth else None,
            api_key_auth=self._api_keys(ns, spec.api_key_auth) if spec.api_key_auth else None,
            ext_auth=self._ext_auth(ns, spec.ext_auth) if spec.ext_auth else None,
            jwt=jwt,
            oidc=self._oidc_auth(ns, policy.metadata.name, spec.oidc, jwt) if spec.oidc else None,
        )
        return Security(security=security, cors=_cors(spec.cors) if spec.cors else None)

    def _jwt_auth(self, ns: str, spec: JWT) -> ir.JWT:
        try:
            return self._jwt(ns, spec)
        except JWTProblem as exc:
            raise Problem(str(exc)) from None

    def _oidc_auth(self, ns: str, name: str, spec: OIDC, jwt: ir.JWT | None) -> ir.OIDC:
        try:
            return self._oidc(ns, name, spec, jwt)
        except OIDCProblem as exc:
            raise Problem(str(exc)) from None

    def _secret(self, ns: str, ref: SecretObjectReference, field: str) -> api.Secret:
        target_ns = ref.namespace or ns
        if ref.group != "" or ref.kind != "Secret":
            raise Problem(f"{field}: only core Secrets can be referenced")
        source = (ENVOY_GROUP, "SecurityPolicy", ns)
        if not self._index.ref_allowed(source, ("", "Secret", target_ns, ref.name)):
            raise Problem(
                f"{field}: Secret {target_ns}/{ref.name} not permitted by a ReferenceGrant"
            )
        secret = self._index.secrets.get((target_ns, ref.name))
        if secret is None:
            raise Problem(f"{field}: Secret {target_ns}/{ref.name} does not exist")
        return secret

    def _basic_auth(self, ns: str, spec: ep.BasicAuth) -> ir.BasicAuth:
        field = "spec.basicAuth.users"
        secret = self._secret(ns, spec.users, field)
        data = secret.data.get(".htpasswd")
        if data is None:
            raise Problem(f"{field}: Secret {ns}/{spec.users.name} has no .htpasswd key")
        try:
            users = parse_htpasswd(data)
        except ValueError as exc:
            raise Problem(f"{field}: {exc}") from None
        return ir.BasicAuth(users=users, forward_username_header=spec.forward_username_header)

    def _api_keys(self, ns: str, spec: ep.APIKeyAuth) -> ir.APIKeyAuth:
        keys: dict[str, bytes] = {}
        for i, ref in enumerate(spec.credential_refs):
            secret = self._secret(ns, ref, f"spec.apiKeyAuth.credentialRefs[{i}]")
            for client, key in secret.data.items():
                keys.setdefault(client, key.strip())
        return ir.APIKeyAuth(
            keys=tuple(sorted(keys.items())),
            headers=tuple(h.lower() for e in spec.extract_from for h in e.headers),
            params=tuple(p for e in spec.extract_from for p in e.params),
            cookies=tuple(c for e in spec.extract_from for c in e.cookies),
            forward_client_id_header=spec.forward_client_id_header,
            sanitize=spec.sanitize,
        )

    def _ext_auth(self, ns: str, spec: ep.ExtAuth) -> ir.ExtAuth:
        assert spec.http is not None
        ref = spec.http.backend()
        if ref is None:
            raise Problem("spec.extAuth.http.backendRefs: one backendRef is required")
        ctx = BackendContext(
            index=self._index,
            policies=self._tls,
            route_kind="SecurityPolicy",
            route_ns=ns,
            gateways=set(),
        )
        backend, problem = resolve(ctx, ref)
        if problem is not None:
            raise Problem(f"spec.extAuth.http.backendRefs[0]: {problem.message}")
        return ir.ExtAuth(
            backend=backend,
            path=spec.http.path or "",
            headers_to_ext_auth=tuple(h.lower() for h in spec.headers_to_ext_auth),
            headers_to_backend=tuple(h.lower() for h in spec.http.headers_to_backend),
            timeout=float(spec.timeout) if spec.timeout else 10.0,
            fail_open=spec.fail_open,
        )


def _authorization(spec: ep.Authorization) -> ir.Authorization:
    rules = []
    for i, rule in enumerate(spec.rules):
        field = f"spec.authorization.rules[{i}].principal"
        principal = rule.principal
        if not principal.client_cidrs and not principal.headers:
            raise Problem(f"{field}: needs clientCIDRs or headers")
        rules.append(
            ir.AuthorizationRule(
                action=rule.action,
                client_cidrs=tuple(
                    _cidr(f"{field}.clientCIDRs[{j}]", c)
                    for j, c in enumerate(principal.client_cidrs)
                ),
                headers=tuple((h.name.lower(), h.values) for h in principal.headers),
                name=rule.name or f"rule-{i}",
            )
        )
    return ir.Authorization(rules=tuple(rules), default_action=spec.default_action)


def _cors(spec: ep.CORS) -> ir.CORSFilter:
    return ir.CORSFilter(
        allow_origins=spec.allow_origins,
        allow_methods=spec.allow_methods,
        allow_headers=spec.allow_headers,
        expose_headers=spec.expose_headers,
        allow_credentials=spec.allow_credentials,
        max_age=int(spec.max_age) if spec.max_age is not None else 5,
    )
