"""The connection-level parts of Envoy Gateway's traffic policies, and fault injection.

ClientTrafficPolicy ``headers``, ``path``, ``connection``, ``timeout``,
``http1`` and ``http2``, and BackendTrafficPolicy ``faultInjection``; field
names and defaults are Envoy Gateway's (``api/v1alpha1``:
``clienttrafficpolicy_types.go``, ``pathsettings_types.go``,
``connection_types.go``, ``timeout_types.go``, ``shared_types.go``,
``fault_injection.go``). Fields edgegw does not carry out are not modelled,
so ``unimplemented_fields`` names them in the policy's status.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from edgegw.api.envoypolicybase import PolicyModel
from edgegw.api.meta import Duration, Quantity
from edgegw.errors import FieldError

# --- ClientTrafficPolicy headers and path --------------------------------------------------

WithUnderscoresAction = Literal["Allow", "RejectRequest", "DropHeader"]
RequestIDAction = Literal["PreserveOrGenerate", "Preserve", "Generate", "Disable"]
EscapedSlashesAction = Literal[
    "KeepUnchanged", "RejectRequest", "UnescapeAndRedirect", "UnescapeAndForward"
]


_TOKEN = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
_FIELD_VALUE = "^[^\x00-\x08\x0a-\x1f\x7f]*$"  # no control characters but HTAB


class HeaderValue(PolicyModel, kw_only=True, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=_TOKEN)]
    value: Annotated[str, msgspec.Meta(max_length=4096, pattern=_FIELD_VALUE)]


class StringMatch(PolicyModel, kw_only=True, frozen=True):
    type: Literal["Exact", "Prefix", "Suffix", "RegularExpression"] = "Exact"
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class HeaderMutation(PolicyModel, kw_only=True, frozen=True):
    """``earlyRequestHeaders`` and ``lateResponseHeaders``: Envoy Gateway's header filter."""

    set: Annotated[tuple[HeaderValue, ...], msgspec.Meta(max_length=64)] = ()
    add: Annotated[tuple[HeaderValue, ...], msgspec.Meta(max_length=64)] = ()
    remove: Annotated[
        tuple[Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=_TOKEN)], ...],
        msgspec.Meta(max_length=64),
    ] = ()
    remove_on_match: Annotated[tuple[StringMatch, ...], msgspec.Meta(max_length=64)] = ()


XFCCForwardMode = Literal[
    "Sanitize", "ForwardOnly", "AppendForward", "SanitizeSet", "AlwaysForwardOnly"
]


class XForwardedClientCert(PolicyModel, kw_only=True, frozen=True):
    mode: XFCCForwardMode | None = None
    cert_details_to_add: Annotated[
        tuple[Literal["Subject", "Cert", "Chain", "DNS", "URI"], ...], msgspec.Meta(max_length=5)
    ] = ()

    def __post_init__(self) -> None:
        if self.cert_details_to_add and self.mode not in ("AppendForward", "SanitizeSet"):
            raise FieldError(
                "certDetailsToAdd",
                "certDetailsToAdd can only be set when mode is AppendForward or SanitizeSet",
            )


class HeaderSettings(PolicyModel, kw_only=True, frozen=True):
    """``headers``: what happens to request headers before routing."""

    enable_envoy_headers: bool | None = None  # edgegw adds no x-envoy-* headers either way
    disable_rate_limit_headers: bool | None = None
    x_forwarded_client_cert: XForwardedClientCert | None = None
    with_underscores_action: WithUnderscoresAction | None = None
    preserve_x_request_id: bool | None = msgspec.field(default=None, name="preserveXRequestID")
    request_id: RequestIDAction | None = msgspec.field(default=None, name="requestID")
    early_request_headers: HeaderMutation | None = None
    late_response_headers: HeaderMutation | None = None

    def __post_init__(self) -> None:
        if self.preserve_x_request_id is not None and self.request_id is not None:
            raise FieldError("requestID", "preserveXRequestID and requestID cannot be combined")


class PathSettings(PolicyModel, kw_only=True, frozen=True):
    """``path``: escaped slashes and slash merging (normalisation itself is always on)."""

    escaped_slashes_action: EscapedSlashesAction | None = None
    disable_merge_slashes: bool | None = None


# --- connection, timeouts ------------------------------------------------------------------


class ConnectionLimit(PolicyModel, kw_only=True, frozen=True):
    value: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None
    close_delay: Duration | None = None


class ClientConnection(PolicyModel, kw_only=True, frozen=True):
    """``connection``: the connection limit and the per-connection buffer limit."""

    connection_limit: ConnectionLimit | None = None
    buffer_limit: Quantity | None = None


class TCPClientTimeout(PolicyModel, kw_only=True, frozen=True):
    idle_timeout: Duration | None = None


class HTTPClientTimeout(PolicyModel, kw_only=True, frozen=True):
    idle_timeout: Duration | None = None
    request_received_timeout: Duration | None = None


class ClientTimeout(PolicyModel, kw_only=True, frozen=True):
    tcp: TCPClientTimeout | None = None
    http: HTTPClientTimeout | None = None


# --- HTTP/1 and HTTP/2 ---------------------------------------------------------------------


class HTTP10Settings(PolicyModel, kw_only=True, frozen=True):
    use_default_host: bool | None = None


class HTTP1Settings(PolicyModel, kw_only=True, frozen=True):
    """``http1``: trailers, header name case, HTTP/1.0."""

    enable_trailers: bool | None = None
    preserve_header_case: bool | None = None
    http10: HTTP10Settings | None = None


class HTTP2Settings(PolicyModel, kw_only=True, frozen=True):
    """``http2``: our SETTINGS and window sizes, and what a malformed request ends."""

    initial_stream_window_size: Quantity | None = None
    on_invalid_message: Literal["TerminateConnection", "TerminateStream"] | None = None
    initial_connection_window_size: Quantity | None = None
    max_concurrent_streams: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None


# --- BackendTrafficPolicy faultInjection ---------------------------------------------------

Percentage = Annotated[float, msgspec.Meta(ge=0, le=100)]


class FaultInjectionDelay(PolicyModel, kw_only=True, frozen=True):
    fixed_delay: Duration
    percentage: Percentage = 100.0


class FaultInjectionAbort(PolicyModel, kw_only=True, frozen=True):
    http_status: Annotated[int, msgspec.Meta(ge=200, le=600)] | None = None
    grpc_status: Annotated[int, msgspec.Meta(ge=0, le=16)] | None = None
    percentage: Percentage = 100.0

    def __post_init__(self) -> None:
        if (self.http_status is None) == (self.grpc_status is None):
            raise FieldError("httpStatus", "exactly one of httpStatus and grpcStatus")


class FaultInjection(PolicyModel, kw_only=True, frozen=True):
    delay: FaultInjectionDelay | None = None
    abort: FaultInjectionAbort | None = None

    def __post_init__(self) -> None:
        if self.delay is None and self.abort is None:
            raise FieldError("delay", "Delay and abort faults are set at least one.")
