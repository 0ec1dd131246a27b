"""HTTPRoute, GRPCRoute, TLSRoute, TCPRoute and UDPRoute.

One model per kind serves every version: the versions differ only in limits
(v1 TLS/TCP/UDPRoute allow one rule and TLSRoute v1 requires hostnames), and
those are checked by ``config.decode`` per version. Defaults follow the CRDs:
an HTTPRoute without rules has one rule matching ``PathPrefix /``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from edgegw.api.filters import (
    GRPCRouteFilter,
    HTTPRouteFilter,
    check_filter_list,
)
from edgegw.api.meta import (
    BackendRef,
    Duration,
    HeaderName,
    Hostname,
    Model,
    Object,
    ParentReference,
    SectionName,
    check_hostnames,
    check_parent_refs,
    check_unique,
)
from edgegw.errors import FieldError

_VALID_PATH = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")


# --- shared by all routes -------------------------------------------------------------------


class CommonRouteSpec(Model, kw_only=True, frozen=True):
    parent_refs: Annotated[tuple[ParentReference, ...], msgspec.Meta(max_length=32)] = ()
    use_default_gateways: Literal["All", "None"] | None = None

    def _check_common(self) -> None:
        check_parent_refs(self.parent_refs)


def _check_rule_names(rules: tuple[object, ...]) -> None:
    names = [getattr(r, "name", None) for r in rules]
    for i, name in enumerate(names):
        if name is not None and name in names[:i]:
            raise FieldError(f"rules[{i}].name", "rule name must be unique within the route")


class CookieConfig(Model, kw_only=True, frozen=True):
    name: HeaderName | None = None
    path: Annotated[str, msgspec.Meta(max_length=1024)] = "/"
    lifetime_type: Literal["Permanent", "Session"] = "Session"


class HeaderConfig(Model, kw_only=True, frozen=True):
    name: HeaderName


class SessionPersistence(Model, kw_only=True, frozen=True):
    absolute_timeout: Duration | None = None
    type: Literal["Cookie", "Header"] = "Cookie"
    cookie: CookieConfig | None = None
    header: HeaderConfig | None = None

    def __post_init__(self) -> None:
        if self.type != "Cookie" and self.cookie is not None:
            raise FieldError("cookie", "cookie must be nil if type is not Cookie")
        if self.type == "Cookie" and self.cookie is None:
            raise FieldError("cookie", "cookie must be specified for Cookie type")
        if self.type != "Header" and self.header is not None:
            raise FieldError("header", "header must be nil if type is not Header")
        if self.type == "Header" and self.header is None:
            raise FieldError("header", "header must be specified for Header type")
        permanent = self.cookie is not None and self.cookie.lifetime_type == "Permanent"
        if permanent and self.absolute_timeout is None:
            raise FieldError(
                "absoluteTimeout",
                "absoluteTimeout must be specified when cookie lifetimeType is Permanent",
            )


# --- HTTPRoute ------------------------------------------------------------------------------


class HTTPPathMatch(Model, kw_only=True, frozen=True):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: Annotated[str, msgspec.Meta(max_length=1024)] = "/"

    def __post_init__(self) -> None:
        if self.type == "RegularExpression":
            return
        value = self.value
        if not value.startswith("/"):
            raise FieldError("value", 'must be an absolute path and start with "/"')
        for bad in ("//", "/./", "/../", "%2f", "%2F", "#"):
            if bad in value:
                raise FieldError("value", f"must not contain {bad!r}")
        for bad in ("/..", "/."):
            if value.endswith(bad):
                raise FieldError("value", f"must not end with {bad!r}")
        if not _VALID_PATH.match(value):
            raise FieldError("value", "must only contain valid path characters")


class HTTPHeaderMatch(Model, kw_only=True, frozen=True):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class HTTPQueryParamMatch(Model, kw_only=True, frozen=True):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class HTTPRouteMatch(Model, kw_only=True, frozen=True):
    path: HTTPPathMatch = HTTPPathMatch()
    headers: Annotated[tuple[HTTPHeaderMatch, ...], msgspec.Meta(max_length=16)] = ()
    query_params: Annotated[tuple[HTTPQueryParamMatch, ...], msgspec.Meta(max_length=16)] = ()
    method: (
        Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
        | None
    ) = None

    def __post_init__(self) -> None:
        check_unique("headers", (h.name.lower() for h in self.headers), "header name")
        check_unique("queryParams", (q.name for q in self.query_params), "query param name")


class HTTPBackendRef(BackendRef, kw_only=True, frozen=True):
    filters: Annotated[tuple[HTTPRouteFilter, ...], msgspec.Meta(max_length=16)] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_filter_list(self.filters)


class HTTPRouteTimeouts(Model, kw_only=True, frozen=True):
    request: Duration | None = None
    backend_request: Duration | None = None

    def __post_init__(self) -> None:
        request, backend = self.request, self.backend_request
        if request and backend is not None and backend > request:
            raise FieldError(
                "backendRequest", "backendRequest timeout cannot be longer than request timeout"
            )


class HTTPRouteRetry(Model, kw_only=True, frozen=True):
    codes: tuple[Annotated[int, msgspec.Meta(ge=400, le=599)], ...] = ()
    attempts: Annotated[int, msgspec.Meta(ge=1)] | None = None
    backoff: Duration | None = None


def _replaces_prefix(filters: tuple[HTTPRouteFilter, ...]) -> bool:
    for f in filters:
        config = f.request_redirect or f.url_rewrite
        if config is not None and config.path and config.path.type == "ReplacePrefixMatch":
            return True
    return False


class HTTPRouteRule(Model, kw_only=True, frozen=True):
    name: SectionName | None = None
    matches: Annotated[tuple[HTTPRouteMatch, ...], msgspec.Meta(max_length=64)] = (
        HTTPRouteMatch(),
    )
    filters: Annotated[tuple[HTTPRouteFilter, ...], msgspec.Meta(max_length=16)] = ()
    backend_refs: Annotated[tuple[HTTPBackendRef, ...], msgspec.Meta(max_length=16)] = ()
    timeouts: HTTPRouteTimeouts | None = None
    retry: HTTPRouteRetry | None = None
    session_persistence: SessionPersistence | None = None

    def __post_init__(self) -> None:
        check_filter_list(self.filters)
        types = [f.type for f in self.filters]
        if self.backend_refs and "RequestRedirect" in types:
            raise FieldError(
                f"filters[{types.index('RequestRedirect')}]",
                "RequestRedirect filter must not be used together with backendRefs",
            )
        uses_prefix = _replaces_prefix(self.filters) or any(
            _replaces_prefix(b.filters) for b in self.backend_refs
        )
        one_prefix = len(self.matches) == 1 and self.matches[0].path.type == "PathPrefix"
        if uses_prefix and not one_prefix:
            raise FieldError(
                "matches",
                "when using ReplacePrefixMatch, exactly one PathPrefix match must be specified",
            )


class HTTPRouteSpec(CommonRouteSpec, kw_only=True, frozen=True):
    hostnames: Annotated[tuple[Hostname, ...], msgspec.Meta(max_length=16)] = ()
    rules: Annotated[tuple[HTTPRouteRule, ...], msgspec.Meta(min_length=1, max_length=16)] = (
        HTTPRouteRule(),
    )

    def __post_init__(self) -> None:
        self._check_common()
        check_hostnames("hostnames", self.hostnames)
        _check_rule_names(self.rules)
        if sum(len(r.matches) for r in self.rules) > 128:
            raise FieldError("rules", "the total number of matches across all rules must be ≤ 128")


class HTTPRoute(Object, kw_only=True, frozen=True):
    spec: HTTPRouteSpec


# --- GRPCRoute ------------------------------------------------------------------------------

_GRPC_SERVICE = re.compile(r"^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$", re.IGNORECASE)
_GRPC_METHOD = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")


class GRPCMethodMatch(Model, kw_only=True, frozen=True):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    service: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    method: Annotated[str, msgspec.Meta(max_length=1024)] | None = None

    def __post_init__(self) -> None:
        if self.service is None and self.method is None:
            raise FieldError("service", "one or both of 'service' or 'method' must be specified")
        if self.type != "Exact":
            return
        if self.service is not None and not _GRPC_SERVICE.match(self.service):
            raise FieldError("service", f"{self.service!r} is not a valid gRPC service name")
        if self.method is not None and not _GRPC_METHOD.match(self.method):
            raise FieldError("method", f"{self.method!r} is not a valid gRPC method name")


class GRPCHeaderMatch(Model, kw_only=True, frozen=True):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class GRPCRouteMatch(Model, kw_only=True, frozen=True):
    method: GRPCMethodMatch | None = None
    headers: Annotated[tuple[GRPCHeaderMatch, ...], msgspec.Meta(max_length=16)] = ()

    def __post_init__(self) -> None:
        check_unique("headers", (h.name.lower() for h in self.headers), "header name")


class GRPCBackendRef(BackendRef, kw_only=True, frozen=True):
    filters: Annotated[tuple[GRPCRouteFilter, ...], msgspec.Meta(max_length=16)] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_filter_list(self.filters)


class GRPCRouteRule(Model, kw_only=True, frozen=True):
    name: SectionName | None = None
    matches: Annotated[tuple[GRPCRouteMatch, ...], msgspec.Meta(max_length=64)] = ()
    filters: Annotated[tuple[GRPCRouteFilter, ...], msgspec.Meta(max_length=16)] = ()
    backend_refs: Annotated[tuple[GRPCBackendRef, ...], msgspec.Meta(max_length=16)] = ()
    session_persistence: SessionPersistence | None = None

    def __post_init__(self) -> None:
        check_filter_list(self.filters)


class GRPCRouteSpec(CommonRouteSpec, kw_only=True, frozen=True):
    hostnames: Annotated[tuple[Hostname, ...], msgspec.Meta(max_length=16)] = ()
    rules: Annotated[tuple[GRPCRouteRule, ...], msgspec.Meta(max_length=16)] = ()

    def __post_init__(self) -> None:
        self._check_common()
        check_hostnames("hostnames", self.hostnames)
        _check_rule_names(self.rules)
        if sum(len(r.matches) for r in self.rules) > 128:
            raise FieldError("rules", "the total number of matches across all rules must be ≤ 128")


class GRPCRoute(Object, kw_only=True, frozen=True):
    spec: GRPCRouteSpec


# --- TLSRoute, TCPRoute, UDPRoute -----------------------------------------------------------


class L4RouteRule(Model, kw_only=True, frozen=True):
    """TLSRouteRule, TCPRouteRule and UDPRouteRule have the same shape."""

    name: SectionName | None = None
    backend_refs: Annotated[tuple[BackendRef, ...], msgspec.Meta(min_length=1, max_length=16)]


TLSRouteRule = TCPRouteRule = UDPRouteRule = L4RouteRule
_L4Rules = Annotated[tuple[L4RouteRule, ...], msgspec.Meta(min_length=1, max_length=16)]


class TLSRouteSpec(CommonRouteSpec, kw_only=True, frozen=True):
    hostnames: Annotated[tuple[Hostname, ...], msgspec.Meta(max_length=1024)] = ()
    rules: _L4Rules

    def __post_init__(self) -> None:
        self._check_common()
        check_hostnames("hostnames", self.hostnames)
        _check_rule_names(self.rules)


class TCPRouteSpec(CommonRouteSpec, kw_only=True, frozen=True):
    rules: _L4Rules

    def __post_init__(self) -> None:
        self._check_common()
        _check_rule_names(self.rules)


class UDPRouteSpec(TCPRouteSpec, kw_only=True, frozen=True):
    pass


class TLSRoute(Object, kw_only=True, frozen=True):
    spec: TLSRouteSpec


class TCPRoute(Object, kw_only=True, frozen=True):
    spec: TCPRouteSpec


class UDPRoute(Object, kw_only=True, frozen=True):
    spec: UDPRouteSpec
