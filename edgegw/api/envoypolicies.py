"""Envoy Gateway's ClientTrafficPolicy, BackendTrafficPolicy and SecurityPolicy.

Field names are Envoy Gateway's (``gateway.envoyproxy.io/v1alpha1``,
``api/v1alpha1/*_types.go``); only the fields edgegw enforces are modelled.
The policy models do not reject unknown fields at decode time: a field
Envoy Gateway has and edgegw does not implement (or a typo) must not make the
file unreadable, but it must not be ignored either. ``unimplemented_fields``
lists every such field of a decoded document, and the translator turns that
list into ``Accepted=False`` naming them (the contract's "never silently
ignored").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from edgegw.api.envoyjwt import JWT
from edgegw.api.envoyoidc import OIDC
from edgegw.api.envoypolicybase import PolicyModel
from edgegw.api.envoytraffic import (
    ClientConnection,
    ClientTimeout,
    FaultInjection,
    HeaderSettings,
    HTTP1Settings,
    HTTP2Settings,
    PathSettings,
)
from edgegw.api.meta import (
    BackendObjectReference,
    Duration,
    Group,
    Kind,
    LabelSelector,
    LabelSelectorRequirement,
    LocalPolicyTargetReferenceWithSectionName,
    Object,
    SecretObjectReference,
)
from edgegw.errors import FieldError

CIDR = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


# --- targets (policy_helpers.go) ------------------------------------------------------------


class TargetSelectorNamespaces(PolicyModel, kw_only=True, frozen=True):
    """Where a selector looks: the policy's namespace, all, or those a label selector picks."""

    from_: Literal["Same", "All", "Selector"] = msgspec.field(default="Same", name="from")
    selector: LabelSelector | None = None

    def __post_init__(self) -> None:
        if self.from_ == "Selector" and self.selector is None:
            raise FieldError("selector", "selector must be specified when from is Selector")


class TargetSelector(PolicyModel, kw_only=True, frozen=True):
    """Targets by label; across namespaces only where a ReferenceGrant there allows it."""

    group: Group = "gateway.networking.k8s.io"
    kind: Kind
    namespaces: TargetSelectorNamespaces | None = None
    match_labels: dict[str, str] = {}
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()


class PolicyTargets(PolicyModel, kw_only=True, frozen=True):
    """``targetRef`` (deprecated), ``targetRefs`` and ``targetSelectors``."""

    target_ref: LocalPolicyTargetReferenceWithSectionName | None = None
    target_refs: Annotated[
        tuple[LocalPolicyTargetReferenceWithSectionName, ...], msgspec.Meta(max_length=16)
    ] = ()
    target_selectors: Annotated[tuple[TargetSelector, ...], msgspec.Meta(max_length=16)] = ()

    def refs(self) -> tuple[LocalPolicyTargetReferenceWithSectionName, ...]:
        """The explicit targets: ``targetRef`` wins over ``targetRefs`` as in Envoy Gateway."""
        return (self.target_ref,) if self.target_ref is not None else self.target_refs

    def check_targets(self) -> None:
        if self.target_ref is None and not self.target_refs and not self.target_selectors:
            raise FieldError("targetRefs", "either targetRef, targetRefs or targetSelectors")

    def check_merge(self, merge_type: str | None, kinds: tuple[str, ...]) -> None:
        """``mergeType`` only on policies that target routes (Envoy Gateway's CEL rule)."""
        targets = [*(r.kind for r in self.refs()), *(s.kind for s in self.target_selectors)]
        if merge_type is not None and any(kind not in kinds for kind in targets):
            raise FieldError("mergeType", "mergeType can only be used with xRoute targets")


# --- ClientTrafficPolicy ----------------------------------------------------------------------


class XForwardedForSettings(PolicyModel, kw_only=True, frozen=True):
    num_trusted_hops: Annotated[int, msgspec.Meta(ge=0, le=64)] | None = None
    trusted_cidrs: Annotated[tuple[CIDR, ...], msgspec.Meta(max_length=64)] = msgspec.field(
        default=(), name="trustedCIDRs"
    )

    def __post_init__(self) -> None:
        if self.num_trusted_hops is not None and self.trusted_cidrs:
            raise FieldError("numTrustedHops", "only one of numTrustedHops and trustedCIDRs")


class CustomHeaderSettings(PolicyModel, kw_only=True, frozen=True):
    name: _Name
    fail_closed: bool = False


class ClientIPDetection(PolicyModel, kw_only=True, frozen=True):
    x_forwarded_for: XForwardedForSettings | None = None
    custom_header: CustomHeaderSettings | None = None

    def __post_init__(self) -> None:
        if self.x_forwarded_for is not None and self.custom_header is not None:
            raise FieldError("customHeader", "only one of xForwardedFor and customHeader")


class TCPKeepalive(PolicyModel, kw_only=True, frozen=True):
    probes: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    idle_time: Duration | None = None
    interval: Duration | None = None


TLSVersion = Literal["Auto", "1.0", "1.1", "1.2", "1.3"]
ALPNProtocol = Literal["http/1.0", "http/1.1", "h2"]


_TLSName = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern="^[A-Za-z0-9_.+-]+$")]
_TLSNames = Annotated[tuple[_TLSName, ...], msgspec.Meta(max_length=64)]


class ClientTLSSettings(PolicyModel, kw_only=True, frozen=True):
    min_version: TLSVersion | None = None
    max_version: TLSVersion | None = None
    ciphers: Annotated[
        tuple[Annotated[str, msgspec.Meta(min_length=1, max_length=256)], ...],
        msgspec.Meta(max_length=64),
    ] = ()
    ecdh_curves: _TLSNames = msgspec.field(default=(), name="ecdhCurves")
    signature_algorithms: _TLSNames = ()
    alpn_protocols: tuple[ALPNProtocol, ...] = msgspec.field(default=(), name="alpnProtocols")


class ProxyProtocolSettings(PolicyModel, kw_only=True, frozen=True):
    """``proxyProtocol: {}``: a PROXY header (v1 or v2) is required (``optional`` is not)."""


class HTTP3Settings(PolicyModel, kw_only=True, frozen=True):
    """``http3: {}``: the HTTPS listener's port also serves HTTP/3 over QUIC (UDP).

    Envoy Gateway's ``HTTP3Settings`` has no fields; its presence turns HTTP/3
    on, and responses over TCP then advertise it with ``alt-svc``.
    """


class ClientTrafficPolicySpec(PolicyTargets, kw_only=True, frozen=True):
    client_ip_detection: ClientIPDetection | None = msgspec.field(
        default=None, name="clientIPDetection"
    )
    tcp_keepalive: TCPKeepalive | None = None
    tls: ClientTLSSettings | None = None
    timeout: ClientTimeout | None = None
    enable_proxy_protocol: bool = False
    proxy_protocol: ProxyProtocolSettings | None = None
    http3: HTTP3Settings | None = None
    headers: HeaderSettings | None = None
    path: PathSettings | None = None
    connection: ClientConnection | None = None
    http1: HTTP1Settings | None = None
    http2: HTTP2Settings | None = None

    def __post_init__(self) -> None:
        self.check_targets()


# --- BackendTrafficPolicy --------------------------------------------------------------------


class CompressorConfig(PolicyModel, kw_only=True, frozen=True):
    """``gzip: {}``, ``brotli: {}``, ``zstd: {}``: Envoy Gateway has no fields in them yet."""


class Compression(PolicyModel, kw_only=True, frozen=True):
    type: Literal["Gzip", "Brotli", "Zstd"]
    gzip: CompressorConfig | None = None
    brotli: CompressorConfig | None = None
    zstd: CompressorConfig | None = None


class HTTPTimeout(PolicyModel, kw_only=True, frozen=True):
    request_timeout: Duration | None = None


class Timeout(PolicyModel, kw_only=True, frozen=True):
    http: HTTPTimeout | None = None


RetryTrigger = Literal[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
]


class RetryOn(PolicyModel, kw_only=True, frozen=True):
    triggers: tuple[RetryTrigger, ...] = ()
    http_status_codes: Annotated[
        tuple[Annotated[int, msgspec.Meta(ge=100, le=599)], ...], msgspec.Meta(max_length=64)
    ] = msgspec.field(default=(), name="httpStatusCodes")


class BackOffPolicy(PolicyModel, kw_only=True, frozen=True):
    base_interval: Duration | None = None


class PerRetryPolicy(PolicyModel, kw_only=True, frozen=True):
    timeout: Duration | None = None
    back_off: BackOffPolicy | None = None


class Retry(PolicyModel, kw_only=True, frozen=True):
    num_retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 2
    retry_on: RetryOn | None = None
    per_retry: PerRetryPolicy | None = None


class HeaderMatch(PolicyModel, kw_only=True, frozen=True):
    type: Literal["Exact", "RegularExpression", "Distinct"] = "Exact"
    name: _Name
    value: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    invert: bool = False

    def __post_init__(self) -> None:
        if self.type == "Distinct" and (self.value is not None or self.invert):
            raise FieldError("value", "a Distinct match takes no value and no invert")
        if self.type != "Distinct" and self.value is None:
            raise FieldError("value", f"a {self.type} match needs a value")


class SourceMatch(PolicyModel, kw_only=True, frozen=True):
    type: Literal["Exact", "Distinct"] = "Exact"
    value: CIDR
    invert: bool = False


class RateLimitSelectCondition(PolicyModel, kw_only=True, frozen=True):
    headers: Annotated[tuple[HeaderMatch, ...], msgspec.Meta(max_length=16)] = ()
    source_cidr: SourceMatch | None = msgspec.field(default=None, name="sourceCIDR")


class RateLimitValue(PolicyModel, kw_only=True, frozen=True):
    requests: Annotated[int, msgspec.Meta(ge=1, le=2**32 - 1)]
    unit: Literal["Second", "Minute", "Hour", "Day"]


class RateLimitRule(PolicyModel, kw_only=True, frozen=True):
    client_selectors: Annotated[
        tuple[RateLimitSelectCondition, ...], msgspec.Meta(max_length=8)
    ] = ()
    limit: RateLimitValue


class LocalRateLimit(PolicyModel, kw_only=True, frozen=True):
    rules: Annotated[tuple[RateLimitRule, ...], msgspec.Meta(max_length=16)] = ()


class RateLimitSpec(PolicyModel, kw_only=True, frozen=True):
    type: Literal["Local"] = "Local"
    local: LocalRateLimit | None = None

    def __post_init__(self) -> None:
        if self.local is None:
            raise FieldError("local", "type Local needs local")


class HashOn(PolicyModel, kw_only=True, frozen=True):
    name: _Name


class ConsistentHash(PolicyModel, kw_only=True, frozen=True):
    type: Literal["SourceIP", "Header", "Cookie"]
    header: HashOn | None = None
    cookie: HashOn | None = None

    def __post_init__(self) -> None:
        if self.type == "Header" and self.header is None:
            raise FieldError("header", "type Header needs header")
        if self.type == "Cookie" and self.cookie is None:
            raise FieldError("cookie", "type Cookie needs cookie")


class LoadBalancer(PolicyModel, kw_only=True, frozen=True):
    type: Literal["RoundRobin", "LeastRequest", "Random", "ConsistentHash"]
    consistent_hash: ConsistentHash | None = None

    def __post_init__(self) -> None:
        if (self.type == "ConsistentHash") != (self.consistent_hash is not None):
            raise FieldError("consistentHash", "set exactly when type is ConsistentHash")


_Count = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]  # uint32 in Envoy Gateway
_Threshold = Annotated[int, msgspec.Meta(ge=1, le=2**32 - 1)]


class ActiveHealthCheckPayload(PolicyModel, kw_only=True, frozen=True):
    """Bytes to send or expect: ``text``, or ``binary`` (base64 in YAML)."""

    type: Literal["Text", "Binary"]
    text: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    binary: Annotated[bytes, msgspec.Meta(max_length=1024)] | None = None

    def __post_init__(self) -> None:
        if (self.type == "Text") != (self.text is not None):
            raise FieldError("text", "If payload type is Text, text field needs to be set.")
        if (self.type == "Binary") != (self.binary is not None):
            raise FieldError("binary", "If payload type is Binary, binary field needs to be set.")

    def payload(self) -> bytes:
        return self.text.encode() if self.text is not None else self.binary or b""


HTTPStatus = Annotated[int, msgspec.Meta(ge=100, le=599)]


class HTTPActiveHealthChecker(PolicyModel, kw_only=True, frozen=True):
    hostname: Annotated[str, msgspec.Meta(min_length=1, max_length=253)] | None = None
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    method: Annotated[str, msgspec.Meta(max_length=16)] | None = None
    expected_statuses: Annotated[tuple[HTTPStatus, ...], msgspec.Meta(max_length=64)] = ()
    retriable_statuses: Annotated[tuple[HTTPStatus, ...], msgspec.Meta(max_length=64)] = ()
    expected_response: ActiveHealthCheckPayload | None = None
    request_body: ActiveHealthCheckPayload | None = None


class TCPActiveHealthChecker(PolicyModel, kw_only=True, frozen=True):
    send: ActiveHealthCheckPayload | None = None
    receive: ActiveHealthCheckPayload | None = None


class GRPCActiveHealthChecker(PolicyModel, kw_only=True, frozen=True):
    """``grpc``: the service to ask about (unset: the server as a whole)."""

    service: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class HealthCheckLogFile(PolicyModel, kw_only=True, frozen=True):
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class HealthCheckLogSink(PolicyModel, kw_only=True, frozen=True):
    """``healthCheckLog.sinks[]``: only ``type: File`` exists."""

    type: Literal["File"]
    file: HealthCheckLogFile | None = None

    def __post_init__(self) -> None:
        if self.file is None:
            raise FieldError(
                "file", "If ProxyHealthCheckLogSink type is File, file field needs to be set."
            )


HealthCheckLogEvent = Literal["Failure", "FailureSeriesStart", "Success", "HealthyTransition"]


class HealthCheckLog(PolicyModel, kw_only=True, frozen=True):
    """``healthCheckLog``: probe outcomes as JSON lines, Envoy's health check event log."""

    sinks: Annotated[tuple[HealthCheckLogSink, ...], msgspec.Meta(max_length=1)] = ()
    matches: Annotated[tuple[HealthCheckLogEvent, ...], msgspec.Meta(max_length=4)] = ()

    def __post_init__(self) -> None:
        if len(set(self.matches)) != len(self.matches):
            raise FieldError("matches", "each value must be unique")
        failure = any(m in ("Failure", "FailureSeriesStart") for m in self.matches)
        success = any(m in ("Success", "HealthyTransition") for m in self.matches)
        if failure != success:
            raise FieldError(
                "matches", "a failure type and a success type must both be specified together"
            )


class HealthCheckOverrides(PolicyModel, kw_only=True, frozen=True):
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None


class ActiveHealthCheck(PolicyModel, kw_only=True, frozen=True):
    """Envoy Gateway's defaults: timeout 1s, interval 3s, unhealthy 3, healthy 1."""

    timeout: Duration | None = None
    interval: Duration | None = None
    initial_jitter: Duration | None = None
    unhealthy_threshold: _Threshold = 3
    healthy_threshold: _Threshold = 1
    type: Literal["HTTP", "TCP", "GRPC"]
    http: HTTPActiveHealthChecker | None = None
    tcp: TCPActiveHealthChecker | None = None
    grpc: GRPCActiveHealthChecker | None = None
    overrides: HealthCheckOverrides | None = None
    health_check_log: HealthCheckLog | None = None

    def __post_init__(self) -> None:
        if (self.type == "HTTP") != (self.http is not None):
            raise FieldError("http", "If Health Checker type is HTTP, http field needs to be set.")
        if (self.type == "TCP") != (self.tcp is not None):
            raise FieldError("tcp", "If Health Checker type is TCP, tcp field needs to be set.")
        if self.grpc is not None and self.type != "GRPC":
            raise FieldError(
                "grpc", "The grpc field can only be set if the Health Checker type is GRPC."
            )


class PassiveHealthCheck(PolicyModel, kw_only=True, frozen=True):
    """Outlier detection; Envoy Gateway's defaults (``consecutiveGatewayErrors`` unset: off)."""

    split_external_local_origin_errors: bool = False
    interval: Duration | None = None
    consecutive_local_origin_failures: _Count = 5
    consecutive_gateway_errors: _Count | None = None
    consecutive5xx_errors: _Count = msgspec.field(default=5, name="consecutive5XxErrors")
    base_ejection_time: Duration | None = None
    max_ejection_percent: Annotated[int, msgspec.Meta(ge=0, le=100)] = 10
    failure_percentage_threshold: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    always_eject_one_endpoint: bool = False


class HealthCheck(PolicyModel, kw_only=True, frozen=True):
    active: ActiveHealthCheck | None = None
    passive: PassiveHealthCheck | None = None
    panic_threshold: Annotated[int, msgspec.Meta(ge=0, le=100)] = 50


class PerEndpointCircuitBreakers(PolicyModel, kw_only=True, frozen=True):
    """``perEndpoint``: limits that apply to each endpoint of the rule backend."""

    max_connections: int | None = None


class Fraction(PolicyModel, kw_only=True, frozen=True):
    """Gateway API's ``Fraction``: ``numerator / denominator`` (denominator 100 by default)."""

    numerator: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    denominator: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] = 100

    def __post_init__(self) -> None:
        if self.numerator > self.denominator:
            raise FieldError("numerator", "numerator must be less than or equal to denominator")


class RetryBudget(PolicyModel, kw_only=True, frozen=True):
    """``retryBudget``: retries in flight as a share of the requests (Envoy's retry_budget)."""

    percent: Fraction
    min_retry_concurrency: Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)] = 3


class CircuitBreaker(PolicyModel, kw_only=True, frozen=True):
    """Limits per rule backend; plain ints, so a negative one gets Envoy Gateway's message."""

    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_parallel_requests: int | None = None
    max_parallel_retries: int | None = None
    max_requests_per_connection: int | None = None
    per_endpoint: PerEndpointCircuitBreakers | None = None
    retry_budget: RetryBudget | None = None


MergeType = Literal["StrategicMerge", "JSONMerge"]


class BackendTrafficPolicySpec(PolicyTargets, kw_only=True, frozen=True):
    merge_type: MergeType | None = None
    fault_injection: FaultInjection | None = None
    load_balancer: LoadBalancer | None = None
    compression: Annotated[tuple[Compression, ...], msgspec.Meta(max_length=3)] = ()
    compressor: Annotated[tuple[Compression, ...], msgspec.Meta(max_length=3)] = ()
    timeout: Timeout | None = None
    retry: Retry | None = None
    rate_limit: RateLimitSpec | None = None
    health_check: HealthCheck | None = None
    circuit_breaker: CircuitBreaker | None = None

    def __post_init__(self) -> None:
        self.check_targets()
        self.check_merge(self.merge_type, ("HTTPRoute", "GRPCRoute"))


# --- SecurityPolicy --------------------------------------------------------------------------


class BasicAuth(PolicyModel, kw_only=True, frozen=True):
    users: SecretObjectReference
    forward_username_header: _Name | None = None


class ExtractFrom(PolicyModel, kw_only=True, frozen=True):
    headers: Annotated[tuple[_Name, ...], msgspec.Meta(max_length=16)] = ()
    params: Annotated[tuple[_Name, ...], msgspec.Meta(max_length=16)] = ()
    cookies: Annotated[tuple[_Name, ...], msgspec.Meta(max_length=16)] = ()


class APIKeyAuth(PolicyModel, kw_only=True, frozen=True):
    credential_refs: Annotated[
        tuple[SecretObjectReference, ...], msgspec.Meta(min_length=1, max_length=16)
    ]
    extract_from: Annotated[tuple[ExtractFrom, ...], msgspec.Meta(min_length=1, max_length=16)]
    forward_client_id_header: _Name | None = msgspec.field(
        default=None, name="forwardClientIDHeader"
    )
    sanitize: bool = False


class HTTPExtAuthService(PolicyModel, kw_only=True, frozen=True):
    backend_ref: BackendObjectReference | None = None
    backend_refs: Annotated[tuple[BackendObjectReference, ...], msgspec.Meta(max_length=1)] = ()
    path: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    headers_to_backend: Annotated[tuple[_Name, ...], msgspec.Meta(max_length=64)] = ()

    def backend(self) -> BackendObjectReference | None:
        return self.backend_refs[0] if self.backend_refs else self.backend_ref


class ExtAuth(PolicyModel, kw_only=True, frozen=True):
    http: HTTPExtAuthService | None = None
    headers_to_ext_auth: Annotated[tuple[_Name, ...], msgspec.Meta(max_length=64)] = ()
    timeout: Duration | None = None
    fail_open: bool = False

    def __post_init__(self) -> None:
        if self.http is None:
            raise FieldError("http", "extAuth needs http (grpc is not implemented)")


class AuthorizationHeaderMatch(PolicyModel, kw_only=True, frozen=True):
    name: _Name
    values: Annotated[tuple[str, ...], msgspec.Meta(min_length=1, max_length=16)]


class Principal(PolicyModel, kw_only=True, frozen=True):
    client_cidrs: Annotated[tuple[CIDR, ...], msgspec.Meta(max_length=256)] = msgspec.field(
        default=(), name="clientCIDRs"
    )
    headers: Annotated[tuple[AuthorizationHeaderMatch, ...], msgspec.Meta(max_length=16)] = ()


class AuthorizationRule(PolicyModel, kw_only=True, frozen=True):
    name: _Name | None = None
    action: Literal["Allow", "Deny"]
    principal: Principal


class Authorization(PolicyModel, kw_only=True, frozen=True):
    rules: Annotated[tuple[AuthorizationRule, ...], msgspec.Meta(max_length=256)] = ()
    default_action: Literal["Allow", "Deny"] = "Deny"


class CORS(PolicyModel, kw_only=True, frozen=True):
    allow_origins: Annotated[tuple[_Name, ...], msgspec.Meta(max_length=64)] = ()
    allow_methods: Annotated[tuple[_Name, ...], msgspec.Meta(max_length=16)] = ()
    allow_headers: Annotated[tuple[_Name, ...], msgspec.Meta(max_length=64)] = ()
    expose_headers: Annotated[tuple[_Name, ...], msgspec.Meta(max_length=64)] = ()
    max_age: Duration | None = None
    allow_credentials: bool = False


class SecurityPolicySpec(PolicyTargets, kw_only=True, frozen=True):
    merge_type: MergeType | None = None
    cors: CORS | None = None
    basic_auth: BasicAuth | None = None
    api_key_auth: APIKeyAuth | None = None
    ext_auth: ExtAuth | None = None
    authorization: Authorization | None = None
    jwt: JWT | None = None
    oidc: OIDC | None = None

    def __post_init__(self) -> None:
        self.check_targets()
        self.check_merge(self.merge_type, ("HTTPRoute", "GRPCRoute"))


# --- the kinds -------------------------------------------------------------------------------


class ClientTrafficPolicy(Object, kw_only=True, frozen=True):
    spec: ClientTrafficPolicySpec
    unimplemented: tuple[str, ...] = ()  # filled by the loader, never read from YAML
    raw_spec: dict[str, Any] = {}  # the spec as written, for mergeType; filled by the loader


class BackendTrafficPolicy(Object, kw_only=True, frozen=True):
    spec: BackendTrafficPolicySpec
    unimplemented: tuple[str, ...] = ()
    raw_spec: dict[str, Any] = {}


class SecurityPolicy(Object, kw_only=True, frozen=True):
    spec: SecurityPolicySpec
    unimplemented: tuple[str, ...] = ()
    raw_spec: dict[str, Any] = {}


EnvoyPolicy = ClientTrafficPolicy | BackendTrafficPolicy | SecurityPolicy


def unimplemented_fields(raw: Any, model: Any, path: str = "spec") -> list[str]:
    """Every key of ``raw`` that ``model`` does not declare, as ``spec.a.b[0].c`` paths.

    ``model`` is a Struct type (or a type msgspec can inspect); lists, tuples,
    optionals and dicts are followed. At most 32 paths are returned, enough to
    name the problem without letting a huge document make a huge status.
    """
    found: list[str] = []
    _walk(raw, msgspec.inspect.type_info(model), path, found)
    return found[:32]


def _walk(raw: Any, info: msgspec.inspect.Type, path: str, found: list[str]) -> None:
    if len(found) >= 32:
        return
    if isinstance(info, msgspec.inspect.UnionType):
        for member in info.types:
            if not isinstance(member, msgspec.inspect.NoneType):
                _walk(raw, member, path, found)
    elif isinstance(info, msgspec.inspect.StructType) and isinstance(raw, dict):
        fields = {f.encode_name: f.type for f in info.fields}
        for key, value in raw.items():
            where = f"{path}.{key}"
            if key not in fields:
                found.append(where)
            else:
                _walk(value, fields[key], where, found)
    elif isinstance(info, msgspec.inspect.CollectionType) and (isinstance(raw, list)):
        for i, item in enumerate(raw):
            _walk(item, info.item_type, f"{path}[{i}]", found)
    elif isinstance(info, msgspec.inspect.Metadata):
        _walk(raw, info.type, path, found)
