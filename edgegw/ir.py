"""The resolved model: what the data plane serves, produced by ``translate()``.

Theory of operation
-------------------
Gateway API resources are a graph of references (routes → parents → listeners,
backendRefs → Services → EndpointSlices, certificateRefs → Secrets). The
translator walks that graph once per reload and flattens it into this IR, in
which nothing refers to anything by name any more: a listener carries its
certificates as PEM bytes, a rule carries its backends with their endpoints.

The IR is organised the way sockets are: one ``Port`` per bound
``(transport, address, port)``, holding every listener that shares it (several
HTTP listeners with different hostnames, or HTTPS and TLS passthrough on one
port). ``routing.compile`` turns each Port into immutable lookup tables; the
data plane swaps whole tables on reload, so in-flight work keeps the IR it
started with.

Every type here is a frozen msgspec Struct: cheap to build, hashable, safe to
share between tasks, and comparable, which the golden tests rely on.
"""

from __future__ import annotations

from typing import Literal

import msgspec

PathType = Literal["Exact", "PathPrefix", "RegularExpression"]
ValueMatchType = Literal["Exact", "RegularExpression"]
Protocol = Literal["HTTP", "HTTPS", "TLS", "TCP", "UDP"]
AppProtocol = Literal["http1", "h2c", "h2", "ws", "wss"]
Compressor = Literal["gzip", "br", "zstd"]  # Content-Encoding tokens
LoadBalancerType = Literal["RoundRobin", "LeastRequest", "Random"]


class IR(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every IR type: frozen, keyword-only, never subclassed further."""


# --- backends -------------------------------------------------------------------------------


class Endpoint(IR, frozen=True, kw_only=True):
    """One place to send traffic: an IP and port, a DNS name to resolve, or a unix socket."""

    kind: Literal["ip", "fqdn", "unix"] = "ip"
    address: str
    port: int = 0


class BackendTLS(IR, frozen=True, kw_only=True):
    """How to speak TLS to a backend (BackendTLSPolicy plus the Gateway's client certificate)."""

    hostname: str
    ca_pem: bytes | None = None  # None: the system trust store
    subject_alt_names: tuple[str, ...] = ()
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    alpn: tuple[str, ...] = ()


class HealthCheckLog(IR, frozen=True, kw_only=True):
    """``healthCheck.active.healthCheckLog``: Envoy's health check event log, to ``path``.

    ``failures``: every failed probe (else only a first check's); ``success``:
    every successful probe (else only those that make an endpoint healthy).
    """

    path: str = "/dev/stdout"
    failures: bool = True
    success: bool = True


class ActiveHealthCheck(IR, frozen=True, kw_only=True):
    """BackendTrafficPolicy ``healthCheck.active``: probe each endpoint every ``interval``.

    ``kind`` HTTP sends ``method path`` (``host`` as Host) and wants a status
    in ``expected_statuses`` and, if set, ``receive`` in the first 1 KiB of the
    body; TCP connects, sends ``send`` and wants ``receive`` back (empty: a
    connect is enough). GRPC calls ``grpc.health.v1.Health/Check`` over HTTP/2
    for ``grpc_service`` (empty: the whole server) and wants ``SERVING``.
    ``port``: probe this port instead of the endpoint's.
    """

    kind: Literal["HTTP", "TCP", "GRPC"]
    timeout: float = 1.0
    interval: float = 3.0
    initial_jitter: float = 0.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 1
    method: str = "GET"
    path: str = "/"
    host: str = ""  # empty: the endpoint's address
    expected_statuses: tuple[int, ...] = (200,)
    retriable_statuses: tuple[int, ...] = ()
    send: bytes = b""
    receive: bytes = b""
    grpc_service: str = ""
    port: int = 0
    log: HealthCheckLog | None = None


class PassiveHealthCheck(IR, frozen=True, kw_only=True):
    """BackendTrafficPolicy ``healthCheck.passive``: Envoy's outlier detection (0: off)."""

    split_local_origin: bool = False
    interval: float = 3.0
    consecutive_local_origin: int = 5
    consecutive_gateway: int = 0
    consecutive_5xx: int = 5
    base_ejection_time: float = 30.0
    max_ejection_percent: int = 10
    always_eject_one: bool = False
    failure_percentage_threshold: int | None = None  # None: no failure-percentage ejection


class CircuitBreaker(IR, frozen=True, kw_only=True):
    """BackendTrafficPolicy ``circuitBreaker``, Envoy Gateway's defaults.

    As in Envoy, a limit of 0 lets nothing through; ``max_requests_per_connection``
    0 means unlimited. ``per_endpoint_max_connections`` (``perEndpoint``; None:
    no such limit) bounds each endpoint's connections as ``max_connections``
    bounds the cluster's. ``retry_budget_percent`` (``retryBudget``; None: off)
    replaces ``max_parallel_retries`` by that share of the requests in flight
    and pending, never below ``retry_budget_min_concurrency``.
    """

    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_parallel_requests: int = 1024
    max_parallel_retries: int = 1024
    max_requests_per_connection: int = 0
    per_endpoint_max_connections: int | None = None
    retry_budget_percent: float | None = None
    retry_budget_min_concurrency: int = 3


class ClusterPolicy(IR, frozen=True, kw_only=True):
    """Health checks and limits of a rule's backend: Envoy Gateway's per-rule cluster.

    ``cluster`` names the state they share across reloads (passive ejections,
    circuit-breaker counts): ``httproute/namespace/name/rule/N/backend``, plus
    ``@namespace/gateway[/listener]`` when the policy is inherited from there.
    """

    cluster: str
    active: ActiveHealthCheck | None = None
    passive: PassiveHealthCheck | None = None
    panic_threshold: int = 50
    circuit_breaker: CircuitBreaker | None = None


class Backend(IR, frozen=True, kw_only=True):
    """One resolved ``backendRef``: where a share of a rule's traffic goes.

    ``invalid`` is set when the reference did not resolve (missing Service, no
    ReferenceGrant, unsupported kind): the backend keeps its weight, and the
    data plane answers 500 for that share of traffic, as the spec asks.
    """

    name: str  # "namespace/name:port", for logs and metrics
    weight: int = 1
    endpoints: tuple[Endpoint, ...] = ()
    app_protocol: AppProtocol = "http1"
    tls: BackendTLS | None = None
    filters: tuple[HTTPFilter, ...] = ()
    invalid: str | None = None  # why it did not resolve
    proxy_protocol: Literal[0, 1, 2] = 0
    load_balancer: LoadBalancerType | None = None  # None: the pool's default
    cluster: ClusterPolicy | None = None  # BackendTrafficPolicy healthCheck, circuitBreaker


# --- HTTP filters ---------------------------------------------------------------------------


class HeaderModifier(IR, frozen=True, kw_only=True):
    """RequestHeaderModifier / ResponseHeaderModifier. Names are lower-case."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


class PathModifier(IR, frozen=True, kw_only=True):
    """``ReplaceFullPath`` replaces the path; ``ReplacePrefixMatch`` the matched prefix."""

    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    value: str


class RequestHeaderModifierFilter(IR, frozen=True, kw_only=True, tag="RequestHeaderModifier"):
    modifier: HeaderModifier


class ResponseHeaderModifierFilter(IR, frozen=True, kw_only=True, tag="ResponseHeaderModifier"):
    modifier: HeaderModifier


class RequestRedirectFilter(IR, frozen=True, kw_only=True, tag="RequestRedirect"):
    scheme: str | None = None
    hostname: str | None = None
    path: PathModifier | None = None
    port: int | None = None
    status_code: int = 302


class URLRewriteFilter(IR, frozen=True, kw_only=True, tag="URLRewrite"):
    hostname: str | None = None
    path: PathModifier | None = None


class RequestMirrorFilter(IR, frozen=True, kw_only=True, tag="RequestMirror"):
    backend: Backend
    fraction: float = 1.0  # 0.0 .. 1.0, from percent or fraction


class CORSFilter(IR, frozen=True, kw_only=True, tag="CORS"):
    allow_origins: tuple[str, ...] = ()  # may contain "*" and "https://*.example.com"
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int = 5


HTTPFilter = (
    RequestHeaderModifierFilter
    | ResponseHeaderModifierFilter
    | RequestRedirectFilter
    | URLRewriteFilter
    | RequestMirrorFilter
    | CORSFilter
)


# --- Envoy Gateway policies (resolved: the one that applies to a rule or a listener) --------


class AuthorizationRule(IR, frozen=True, kw_only=True):
    """A SecurityPolicy ``authorization`` rule: every present principal part must match."""

    action: Literal["Allow", "Deny"]
    client_cidrs: tuple[str, ...] = ()
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()  # lower-case name, accepted values
    name: str = ""


class Authorization(IR, frozen=True, kw_only=True):
    rules: tuple[AuthorizationRule, ...] = ()
    default_action: Literal["Allow", "Deny"] = "Deny"


class BasicAuth(IR, frozen=True, kw_only=True):
    """``.htpasswd`` lines, parsed: user and hash. Secret data: never logged or shown."""

    users: tuple[tuple[str, bytes], ...] = ()
    forward_username_header: str | None = None


class APIKeyAuth(IR, frozen=True, kw_only=True):
    """Client id → key, from the Secrets' data; where to look for the key."""

    keys: tuple[tuple[str, bytes], ...] = ()
    headers: tuple[str, ...] = ()  # lower-case
    params: tuple[str, ...] = ()
    cookies: tuple[str, ...] = ()
    forward_client_id_header: str | None = None
    sanitize: bool = False


class ExtAuth(IR, frozen=True, kw_only=True):
    """Forward auth over HTTP: the request's head goes to ``backend`` first."""

    backend: Backend
    path: str = ""
    headers_to_ext_auth: tuple[str, ...] = ()  # lower-case; empty: every header
    headers_to_backend: tuple[str, ...] = ()  # lower-case
    timeout: float = 10.0
    fail_open: bool = False


class RemoteJWKS(IR, frozen=True, kw_only=True):
    """Where a JWT provider's keys are fetched from, off the request path (``net/jwks.py``).

    ``backend`` is the URI's host and port (TLS with the system trust store for
    https), or the ``backendRefs`` one; ``target`` the URI's path and query.
    """

    uri: str
    backend: Backend
    host: str  # the Host header of the fetch
    target: str
    cache_duration: float = 300.0
    failed_refetch: float = 1.0
    timeout: float = 10.0


class JWTProvider(IR, frozen=True, kw_only=True):
    """One ``jwt.providers[]`` entry; the default token locations already filled in."""

    name: str
    issuer: str = ""  # empty: any issuer
    audiences: tuple[str, ...] = ()  # empty: any audience
    local_jwks: bytes | None = None  # a JWKS document; oct keys are secrets: bytes, redacted
    remote_jwks: RemoteJWKS | None = None
    claim_to_headers: tuple[tuple[str, str], ...] = ()  # (lower-case header, claim.path)
    headers: tuple[tuple[str, str], ...] = (("authorization", "Bearer "),)  # (name, prefix)
    params: tuple[str, ...] = ("access_token",)
    cookies: tuple[str, ...] = ()
    recompute_route: bool = False  # route again once its claims are headers


class JWT(IR, frozen=True, kw_only=True):
    """SecurityPolicy ``jwt``: any provider that verifies the token admits the request."""

    providers: tuple[JWTProvider, ...]
    optional: bool = False  # a missing token is admitted (an invalid one is not)
    fail_open: bool = False  # a missing or invalid token is admitted


class OIDCProvider(IR, frozen=True, kw_only=True):
    """Where the provider is; an endpoint left empty is discovered (``net/oidc.py``).

    ``backend`` is the ``backendRefs`` one, which then carries every request to
    the provider (discovery, token, JWKS); None: each URL's own host and port.
    """

    issuer: str
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    end_session_endpoint: str = ""
    backend: Backend | None = None
    timeout: float = 5.0  # each request to the provider


class OIDC(IR, frozen=True, kw_only=True):
    """SecurityPolicy ``oidc``: the authorization code flow, sessions in signed cookies.

    ``client_secret`` is Secret data: bytes, so admin answers redact it. The
    per-policy HMAC key is not here: the data plane derives it from the key
    edgegw keeps in its state directory and ``name``.
    """

    name: str  # "namespace/name" of the policy; keys the HMAC key
    provider: OIDCProvider
    client_id: str
    client_secret: bytes
    scopes: tuple[str, ...] = ("openid",)
    resources: tuple[str, ...] = ()
    redirect_url: str = "%REQ(x-forwarded-proto)%://%REQ(:authority)%/oauth2/callback"
    redirect_path: str = "/oauth2/callback"
    logout_path: str = "/logout"
    forward_access_token: bool = False
    forward_id_token_header: str = ""  # lower-case; empty: not forwarded
    refresh_token: bool = True
    cookie_suffix: str = ""
    access_token_cookie: str = ""
    id_token_cookie: str = ""
    cookie_domain: str = ""
    same_site: str = ""  # "Lax", "Strict", "None" or "" (no attribute)
    default_token_ttl: float = 0.0  # 0: the provider must send expires_in
    default_refresh_token_ttl: float = 604800.0
    csrf_token_ttl: float = 600.0
    encrypt_tokens: bool = True
    pass_through: tuple[tuple[str, str], ...] = ()  # (lower-case header, value prefix)
    deny_redirect: tuple[tuple[str, str, str], ...] = ()  # (lower-case header, type, value)


class SecurityPolicy(IR, frozen=True, kw_only=True):
    """The SecurityPolicy a rule is under, in the order its checks run."""

    name: str  # "namespace/name"
    authorization: Authorization | None = None
    basic_auth: BasicAuth | None = None
    api_key_auth: APIKeyAuth | None = None
    ext_auth: ExtAuth | None = None
    jwt: JWT | None = None
    oidc: OIDC | None = None


class RateLimitHeaderMatch(IR, frozen=True, kw_only=True):
    type: Literal["Exact", "RegularExpression", "Distinct"] = "Exact"
    name: str  # lower-case
    value: str = ""
    invert: bool = False


class RateLimitSelector(IR, frozen=True, kw_only=True):
    headers: tuple[RateLimitHeaderMatch, ...] = ()
    source_cidr: str | None = None
    source_distinct: bool = False
    source_invert: bool = False


class RateLimitRule(IR, frozen=True, kw_only=True):
    """``requests`` per ``seconds``; selectors empty: every request of the rule."""

    selectors: tuple[RateLimitSelector, ...] = ()
    requests: int
    seconds: float


class FaultInjection(IR, frozen=True, kw_only=True):
    """BackendTrafficPolicy ``faultInjection``: fractions are 0.0 .. 1.0 of requests."""

    delay: float | None = None  # seconds
    delay_fraction: float = 1.0
    abort_status: int | None = None  # an HTTP status
    abort_grpc_status: int | None = None  # a gRPC status, answered as HTTP 200
    abort_fraction: float = 1.0


class TrafficPolicy(IR, frozen=True, kw_only=True):
    """The BackendTrafficPolicy parts enforced per request (timeouts and retries go to the rule)."""

    name: str  # "namespace/name"
    fault: FaultInjection | None = None
    compression: tuple[Compressor, ...] = ()  # server preference order
    rate_limits: tuple[RateLimitRule, ...] = ()
    hash_on: tuple[Literal["SourceIP", "Header", "Cookie"], str] | None = None  # ConsistentHash


class ClientIPDetection(IR, frozen=True, kw_only=True):
    num_trusted_hops: int = 0
    trusted_cidrs: tuple[str, ...] = ()
    custom_header: str | None = None  # lower-case
    fail_closed: bool = False


class TCPKeepalive(IR, frozen=True, kw_only=True):
    probes: int | None = None
    idle_time: float | None = None
    interval: float | None = None


class ClientHeaders(IR, frozen=True, kw_only=True):
    """ClientTrafficPolicy ``headers``, as they act on each request before routing."""

    with_underscores: Literal["Allow", "RejectRequest", "DropHeader"] = "Allow"
    request_id: Literal["PreserveOrGenerate", "Preserve", "Generate", "Disable"] | None = None
    early: HeaderModifier | None = None  # earlyRequestHeaders
    # earlyRequestHeaders.removeOnMatch: (Exact | Prefix | Suffix | RegularExpression, value)
    remove_on_match: tuple[tuple[str, str], ...] = ()
    sanitize_xfcc: bool = True  # xForwardedClientCert Sanitize: the client's XFCC is removed
    # xForwardedClientCert modes that depend on a client certificate (None: Sanitize or
    # AlwaysForwardOnly, as ``sanitize_xfcc`` says); without one the client's XFCC is removed
    xfcc_forward: Literal["ForwardOnly", "AppendForward", "SanitizeSet"] | None = None
    xfcc_details: tuple[str, ...] = ()  # certDetailsToAdd, in Envoy's order
    late: HeaderModifier | None = None  # lateResponseHeaders, on every forwarded response
    late_remove_on_match: tuple[tuple[str, str], ...] = ()  # its removeOnMatch, as above


class PathOptions(IR, frozen=True, kw_only=True):
    """ClientTrafficPolicy ``path``: what normalisation does beyond its fixed steps."""

    escaped_slashes: Literal[
        "KeepUnchanged", "RejectRequest", "UnescapeAndRedirect", "UnescapeAndForward"
    ] = "KeepUnchanged"
    merge_slashes: bool = True


class HTTP2Options(IR, frozen=True, kw_only=True):
    """ClientTrafficPolicy ``http2``: our SETTINGS; None keeps edgegw's default."""

    initial_stream_window_size: int | None = None
    initial_connection_window_size: int | None = None
    max_concurrent_streams: int | None = None
    terminate_connection: bool = False  # onInvalidMessage: a malformed request ends the connection


class ClientPolicy(IR, frozen=True, kw_only=True):
    """The ClientTrafficPolicy of a listener."""

    name: str  # "namespace/name"
    client_ip: ClientIPDetection | None = None
    tcp_keepalive: TCPKeepalive | None = None
    tls_min_version: str | None = None  # "1.0" .. "1.3"
    tls_max_version: str | None = None
    alpn: tuple[str, ...] = ()
    idle_timeout: float | None = None  # keep-alive idle time of client connections
    proxy_protocol: bool = False
    http3: bool = False  # HTTPS listeners also serve HTTP/3 over QUIC on their port
    tls_ciphers: str | None = None  # an OpenSSL cipher list, TLS 1.2 and below
    tls_curves: str | None = None  # an OpenSSL groups list ("X25519:P-256")
    tls_signature_algorithms: str | None = None  # an OpenSSL sigalgs list
    headers: ClientHeaders | None = None
    path: PathOptions | None = None
    connection_limit: int | None = None
    close_delay: float | None = None
    buffer_limit: int | None = None  # connection.bufferLimit: bytes held per client connection
    tcp_idle_timeout: float | None = None  # TCP and TLS listeners
    request_received_timeout: float | None = None  # head and body of a request by then
    default_host: str | None = None  # http1.http10.useDefaultHost: the listener's hostname
    http1_trailers: bool | None = None  # http1.enableTrailers; None: edgegw's default (on)
    preserve_header_case: bool = False  # http1.preserveHeaderCase: names as received, HTTP/1.1
    http2: HTTP2Options | None = None


# --- HTTP routes ----------------------------------------------------------------------------


class ValueMatch(IR, frozen=True, kw_only=True):
    """A header or query parameter match. Header names are lower-case."""

    type: ValueMatchType = "Exact"
    name: str
    value: str


class HTTPMatch(IR, frozen=True, kw_only=True):
    """One ``HTTPRouteMatch``; every present part must match (AND)."""

    path_type: PathType = "PathPrefix"
    path: str = "/"
    headers: tuple[ValueMatch, ...] = ()
    query: tuple[ValueMatch, ...] = ()
    method: str | None = None


class Retry(IR, frozen=True, kw_only=True):
    codes: tuple[int, ...] = ()
    grpc_statuses: tuple[int, ...] = ()  # grpc-status of a trailers-only answer that retries
    attempts: int = 0
    backoff: float | None = None  # seconds


class SessionPersistence(IR, frozen=True, kw_only=True):
    name: str
    type: Literal["Cookie", "Header"] = "Cookie"
    absolute_timeout: float | None = None
    idle_timeout: float | None = None
    permanent_cookie: bool = False


class HTTPRouteRule(IR, frozen=True, kw_only=True):
    """A rule with everything it needs to serve a request, references resolved.

    ``invalid`` carries a reason when the rule cannot be served (an unsupported
    filter, say); such a rule still matches and answers 500.
    """

    index: int
    name: str | None = None
    matches: tuple[HTTPMatch, ...] = (HTTPMatch(),)
    filters: tuple[HTTPFilter, ...] = ()
    backends: tuple[Backend, ...] = ()
    request_timeout: float | None = None
    backend_request_timeout: float | None = None
    retry: Retry | None = None
    session_persistence: SessionPersistence | None = None
    invalid: str | None = None
    grpc: bool = False  # a GRPCRoute rule: errors are answered as gRPC statuses
    security: SecurityPolicy | None = None
    traffic: TrafficPolicy | None = None


class HTTPRoute(IR, frozen=True, kw_only=True):
    """An HTTPRoute (or GRPCRoute) as attached to one listener.

    ``hostnames`` is already the intersection of the route's hostnames with the
    listener's hostname; empty means "any host the listener accepts".
    ``precedence`` orders routes for the spec's tie-breaks: creation time, then
    namespace/name.
    """

    namespace: str
    name: str
    kind: Literal["HTTPRoute", "GRPCRoute"] = "HTTPRoute"
    hostnames: tuple[str, ...] = ()
    rules: tuple[HTTPRouteRule, ...] = ()
    precedence: tuple[float, str, str] = (0.0, "", "")


# --- L4 routes ------------------------------------------------------------------------------


class L4Route(IR, frozen=True, kw_only=True):
    """A TLSRoute, TCPRoute or UDPRoute as attached to one listener.

    For TLSRoute, ``hostnames`` is intersected with the listener hostname and is
    matched against the ClientHello's SNI.
    """

    namespace: str
    name: str
    kind: Literal["TLSRoute", "TCPRoute", "UDPRoute"]
    hostnames: tuple[str, ...] = ()
    backends: tuple[Backend, ...] = ()
    precedence: tuple[float, str, str] = (0.0, "", "")


# --- listeners and ports --------------------------------------------------------------------


class Certificate(IR, frozen=True, kw_only=True):
    """A certificate chain and key (PEM), and the names it is valid for (SAN DNS names)."""

    chain_pem: bytes
    key_pem: bytes
    names: tuple[str, ...] = ()
    source: str = ""  # "namespace/secret", for logs; never the key


class FrontendValidation(IR, frozen=True, kw_only=True):
    """Client certificate validation on an HTTPS listener (Gateway spec.tls.frontend)."""

    ca_pem: bytes
    mode: Literal["AllowValidOnly", "AllowInsecureFallback"] = "AllowValidOnly"


class ListenerTLS(IR, frozen=True, kw_only=True):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificates: tuple[Certificate, ...] = ()
    frontend_validation: FrontendValidation | None = None


class Listener(IR, frozen=True, kw_only=True):
    """One programmed Gateway listener and every route attached to it."""

    gateway_namespace: str
    gateway_name: str
    name: str
    protocol: Protocol
    port: int
    hostname: str | None = None
    listener_set: str | None = None  # "namespace/name" of the ListenerSet that adds it
    tls: ListenerTLS | None = None
    http_routes: tuple[HTTPRoute, ...] = ()
    l4_routes: tuple[L4Route, ...] = ()
    proxy_protocol_accept: bool = False
    client_policy: ClientPolicy | None = None

    @property
    def key(self) -> str:
        """Unique per Gateway: a ListenerSet's listener names may repeat the Gateway's."""
        owner = f"{self.gateway_namespace}/{self.gateway_name}"
        if self.listener_set is not None:
            owner += f"/ListenerSet/{self.listener_set}"
        return f"{owner}/{self.name}"


class Port(IR, frozen=True, kw_only=True):
    """A bound socket and the listeners that share it.

    ``transport`` is "udp" only for UDP listeners. Listeners on one TCP port
    are all HTTP, or a mix of HTTPS and TLS.
    """

    transport: Literal["tcp", "udp"] = "tcp"
    address: str
    port: int
    listeners: tuple[Listener, ...] = ()

    @property
    def bind_key(self) -> tuple[str, str, int]:
        return (self.transport, self.address, self.port)


class Model(IR, frozen=True, kw_only=True):
    """Everything the data plane serves, one generation."""

    generation: int = 0
    ports: tuple[Port, ...] = ()
