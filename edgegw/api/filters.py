"""HTTPRoute and GRPCRoute filters (apis/v1/httproute_types.go, grpcroute_types.go).

A filter is a union in the Kubernetes style: ``type`` names which one of the
config fields is set. The CRD checks that pairing with CEL; here
``_check_union`` does, and ``check_filter_list`` applies the list rules
(RequestRedirect and URLRewrite exclude each other, core filters at most once).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Literal

import msgspec

from edgegw.api.meta import (
    BackendObjectReference,
    HeaderName,
    LocalObjectReference,
    Model,
    PortNumber,
    PreciseHostname,
)
from edgegw.errors import FieldError

HeaderValue = Annotated[
    str, msgspec.Meta(min_length=1, max_length=4096, pattern=r"^[!-~]+([\t ]?[!-~]+)*$")
]
HTTPMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
CORSOrigin = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=253,
        pattern=r"(^\*$)|(^(http(s)?):\/\/(((\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)"
        r"(:([0-9]{1,5}))?)$)",
    ),
]
_Path = Annotated[str, msgspec.Meta(max_length=1024)]


class HTTPHeader(Model, kw_only=True, frozen=True):
    name: HeaderName
    value: HeaderValue


class HTTPHeaderFilter(Model, kw_only=True, frozen=True):
    set: Annotated[tuple[HTTPHeader, ...], msgspec.Meta(max_length=16)] = ()
    add: Annotated[tuple[HTTPHeader, ...], msgspec.Meta(max_length=16)] = ()
    remove: Annotated[tuple[str, ...], msgspec.Meta(max_length=16)] = ()

    def __post_init__(self) -> None:
        for field in ("set", "add"):
            headers: tuple[HTTPHeader, ...] = getattr(self, field)
            _unique_names(field, (h.name for h in headers))
        _unique_names("remove", self.remove)


def _unique_names(field: str, names: Iterable[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name.lower() in seen:
            raise FieldError(f"{field}[{i}]", f"header name {name!r} is repeated")
        seen.add(name.lower())


class HTTPPathModifier(Model, kw_only=True, frozen=True):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: _Path | None = None
    replace_prefix_match: _Path | None = None

    def __post_init__(self) -> None:
        for kind, field, value in (
            ("ReplaceFullPath", "replaceFullPath", self.replace_full_path),
            ("ReplacePrefixMatch", "replacePrefixMatch", self.replace_prefix_match),
        ):
            if self.type == kind and value is None:
                raise FieldError(field, f"{field} must be specified when type is set to '{kind}'")
            if self.type != kind and value is not None:
                raise FieldError("type", f"type must be '{kind}' when {field} is set")


class HTTPRequestRedirectFilter(Model, kw_only=True, frozen=True):
    scheme: Literal["http", "https"] | None = None
    hostname: PreciseHostname | None = None
    path: HTTPPathModifier | None = None
    port: PortNumber | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


class HTTPURLRewriteFilter(Model, kw_only=True, frozen=True):
    hostname: PreciseHostname | None = None
    path: HTTPPathModifier | None = None


class Fraction(Model, kw_only=True, frozen=True):
    numerator: Annotated[int, msgspec.Meta(ge=0)]
    denominator: Annotated[int, msgspec.Meta(ge=1)] = 100

    def __post_init__(self) -> None:
        if self.numerator > self.denominator:
            raise FieldError("numerator", "numerator must be less than or equal to denominator")


class HTTPRequestMirrorFilter(Model, kw_only=True, frozen=True):
    backend_ref: BackendObjectReference
    percent: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    fraction: Fraction | None = None

    def __post_init__(self) -> None:
        if self.percent is not None and self.fraction is not None:
            raise FieldError("fraction", "only one of percent or fraction may be specified")


def _wildcard_alone(field: str, values: tuple[str, ...]) -> None:
    if "*" in values and len(values) > 1:
        raise FieldError(field, f"{field} cannot contain '*' alongside other values")


class HTTPCORSFilter(Model, kw_only=True, frozen=True):
    allow_origins: Annotated[tuple[CORSOrigin, ...], msgspec.Meta(max_length=64)] = ()
    allow_credentials: bool | None = None
    allow_methods: Annotated[tuple[HTTPMethod | Literal["*"], ...], msgspec.Meta(max_length=9)] = ()
    allow_headers: Annotated[tuple[HeaderName, ...], msgspec.Meta(max_length=64)] = ()
    expose_headers: Annotated[tuple[HeaderName, ...], msgspec.Meta(max_length=64)] = ()
    max_age: Annotated[int, msgspec.Meta(ge=1)] = 5

    def __post_init__(self) -> None:
        _wildcard_alone("allowOrigins", self.allow_origins)
        _wildcard_alone("allowMethods", self.allow_methods)
        _wildcard_alone("allowHeaders", self.allow_headers)


class GRPCAuthConfig(Model, kw_only=True, frozen=True):
    allowed_headers: Annotated[tuple[str, ...], msgspec.Meta(max_length=64)] = ()


class HTTPAuthConfig(Model, kw_only=True, frozen=True):
    path: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=1024, pattern=r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$"
            ),
        ]
        | None
    ) = None
    allowed_headers: Annotated[tuple[str, ...], msgspec.Meta(max_length=64)] = ()
    allowed_response_headers: Annotated[tuple[str, ...], msgspec.Meta(max_length=64)] = ()


class ForwardBodyConfig(Model, kw_only=True, frozen=True):
    max_size: Annotated[int, msgspec.Meta(ge=0)] = 0


class HTTPExternalAuthFilter(Model, kw_only=True, frozen=True):
    protocol: Literal["HTTP", "GRPC"]
    backend_ref: BackendObjectReference
    grpc: GRPCAuthConfig | None = None
    http: HTTPAuthConfig | None = None
    forward_body: ForwardBodyConfig | None = None

    def __post_init__(self) -> None:
        if self.protocol == "GRPC" and self.http is not None:
            raise FieldError("http", "protocol must be 'HTTP' when http is set")
        if self.protocol == "HTTP" and self.grpc is not None:
            raise FieldError("grpc", "protocol must be 'GRPC' when grpc is set")


HTTPRouteFilterType = Literal[
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "RequestRedirect",
    "URLRewrite",
    "ExtensionRef",
    "CORS",
    "ExternalAuth",
]
# filter type → its config field (JSON name), for the union check
_UNION_FIELDS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "ExtensionRef": "extensionRef",
    "CORS": "cors",
    "ExternalAuth": "externalAuth",
}
_ATTRS = {
    "requestHeaderModifier": "request_header_modifier",
    "responseHeaderModifier": "response_header_modifier",
    "requestMirror": "request_mirror",
    "requestRedirect": "request_redirect",
    "urlRewrite": "url_rewrite",
    "extensionRef": "extension_ref",
    "cors": "cors",
    "externalAuth": "external_auth",
}


def _check_union(model: Model, filter_type: str) -> None:
    """Exactly the config field that ``type`` names must be set."""
    wanted = _UNION_FIELDS[filter_type]
    for field, attr in _ATTRS.items():
        if not hasattr(model, attr):
            continue
        present = getattr(model, attr) is not None
        if field == wanted and not present:
            raise FieldError(
                field, f"filter.{field} must be specified for {filter_type} filter.type"
            )
        if field != wanted and present:
            raise FieldError(
                field, f"filter.{field} must be nil if the filter.type is not {filter_type}"
            )


class HTTPRouteFilter(Model, kw_only=True, frozen=True):
    type: HTTPRouteFilterType
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    request_redirect: HTTPRequestRedirectFilter | None = None
    url_rewrite: HTTPURLRewriteFilter | None = None
    cors: HTTPCORSFilter | None = None
    external_auth: HTTPExternalAuthFilter | None = None
    extension_ref: LocalObjectReference | None = None

    def __post_init__(self) -> None:
        _check_union(self, self.type)


class GRPCRouteFilter(Model, kw_only=True, frozen=True):
    type: Literal[
        "ResponseHeaderModifier", "RequestHeaderModifier", "RequestMirror", "ExtensionRef"
    ]
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    extension_ref: LocalObjectReference | None = None

    def __post_init__(self) -> None:
        _check_union(self, self.type)


_AT_MOST_ONCE = (
    "CORS",
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestRedirect",
    "URLRewrite",
)


def check_filter_list(filters: Sequence[HTTPRouteFilter | GRPCRouteFilter]) -> None:
    """The list rules of ``filters`` (both route rules and backendRefs carry one)."""
    types: list[str] = [f.type for f in filters]
    if "RequestRedirect" in types and "URLRewrite" in types:
        raise FieldError(
            f"filters[{types.index('URLRewrite')}]",
            "may specify either RequestRedirect or URLRewrite, but not both",
        )
    for once in _AT_MOST_ONCE:
        if types.count(once) > 1:
            second = types.index(once, types.index(once) + 1)
            raise FieldError(f"filters[{second}]", f"{once} filter cannot be repeated")
