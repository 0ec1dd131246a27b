"""ClientTrafficPolicy ``headers``, ``path``, ``connection``, ``timeout``, ``http1``, ``http2``
and the TLS parameter lists → the fields of ``ir.ClientPolicy`` they set.

Pure. A value edgegw cannot carry out is a ``Problem`` naming the field.

TLS names are taken as Envoy takes them: cipher suites by their OpenSSL names
or IANA aliases, BoringSSL's equal-preference groups ``[A|B]`` flattened in
order (OpenSSL has no such groups); curves and signature algorithms by the
names OpenSSL and BoringSSL share. TLS 1.3 suites are not configurable this
way in Envoy either (``ciphers`` is for TLS 1.0-1.2), so a TLS 1.3 suite name
is refused rather than silently ignored.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from edgegw import ir
from edgegw.api import envoypolicies as ep
from edgegw.api import envoytraffic as et
from edgegw.policy.xfcc import DETAIL_ORDER

_IANA = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
}
_CIPHERS = frozenset(_IANA.values())
_TLS13_SUITES = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)
_CURVES = frozenset({"X25519", "X448", "P-256", "P-384", "P-521"})
_SIGALGS = frozenset(
    {
        "ecdsa_secp256r1_sha256",
        "ecdsa_secp384r1_sha384",
        "ecdsa_secp521r1_sha512",
        "ed25519",
        "ed448",
        "rsa_pss_rsae_sha256",
        "rsa_pss_rsae_sha384",
        "rsa_pss_rsae_sha512",
        "rsa_pss_pss_sha256",
        "rsa_pss_pss_sha384",
        "rsa_pss_pss_sha512",
        "rsa_pkcs1_sha256",
        "rsa_pkcs1_sha384",
        "rsa_pkcs1_sha512",
        "rsa_pkcs1_sha1",
        "ecdsa_sha1",
    }
)


class Problem(Exception):
    """A policy field that cannot be carried out; the message names it."""


def client_fields(spec: ep.ClientTrafficPolicySpec) -> dict[str, Any]:
    """The ``ir.ClientPolicy`` fields of the parts this module handles.

    Raises:
        Problem: a value edgegw cannot honour, naming its field.
    """
    out: dict[str, Any] = {}
    if spec.tls is not None:
        out |= _tls(spec.tls)
    if spec.headers is not None:
        out["headers"] = _headers(spec.headers)
    if spec.path is not None:
        out["path"] = ir.PathOptions(
            escaped_slashes=spec.path.escaped_slashes_action or "KeepUnchanged",
            merge_slashes=not spec.path.disable_merge_slashes,
        )
    if spec.connection is not None:
        limit = spec.connection.connection_limit
        if limit is not None:
            out["connection_limit"] = limit.value
            out["close_delay"] = float(limit.close_delay) if limit.close_delay else None
        if spec.connection.buffer_limit is not None:  # 0: no limit, as in Envoy
            out["buffer_limit"] = _buffer_limit(spec.connection.buffer_limit) or None
    if spec.timeout is not None:
        out |= _timeouts(spec.timeout)
    if spec.http1 is not None:
        out |= _http1(spec.http1)
    if spec.http2 is not None:
        h2 = spec.http2
        _windows(h2)
        out["http2"] = ir.HTTP2Options(
            initial_stream_window_size=_int(h2.initial_stream_window_size),
            initial_connection_window_size=_int(h2.initial_connection_window_size),
            max_concurrent_streams=h2.max_concurrent_streams,
            terminate_connection=h2.on_invalid_message == "TerminateConnection",
        )
    return out


def _buffer_limit(value: int) -> int:
    """``connection.bufferLimit`` in bytes, in the range Envoy Gateway accepts (0 to 2^32-1)."""
    if value > 2**32 - 1:
        raise Problem(
            f"spec.connection.bufferLimit: {value} is out of range, must be between 0 and "
            f"{2**32 - 1}"
        )
    return int(value)


def _int(value: int | None) -> int | None:
    return int(value) if value is not None else None


def _headers(spec: et.HeaderSettings) -> ir.ClientHeaders:
    if spec.disable_rate_limit_headers is False:
        raise Problem(
            "spec.headers.disableRateLimitHeaders: false is not implemented: edgegw sends no "
            "X-RateLimit headers"
        )
    request_id = spec.request_id
    if request_id is None and spec.preserve_x_request_id:  # deprecated spelling
        request_id = "PreserveOrGenerate"
    early, late = spec.early_request_headers, spec.late_response_headers
    xfcc = spec.x_forwarded_client_cert
    return ir.ClientHeaders(
        with_underscores=spec.with_underscores_action or "RejectRequest",
        sanitize_xfcc=_xfcc(xfcc),
        xfcc_forward=_xfcc_forward(xfcc),
        xfcc_details=_xfcc_details(xfcc),
        request_id=request_id,
        early=_early(early) if early is not None else None,
        remove_on_match=(
            _remove_on_match(early.remove_on_match, "earlyRequestHeaders")
            if early is not None
            else ()
        ),
        late=_early(late) if late is not None else None,
        late_remove_on_match=(
            _remove_on_match(late.remove_on_match, "lateResponseHeaders")
            if late is not None
            else ()
        ),
    )


def _http1(spec: et.HTTP1Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.enable_trailers is not None:
        out["http1_trailers"] = spec.enable_trailers
    if spec.preserve_header_case:
        out["preserve_header_case"] = True
    if spec.http10 is not None and spec.http10.use_default_host:
        out["default_host"] = ""  # the listener's hostname, filled in per listener
    return out


def _xfcc(spec: et.XForwardedClientCert | None) -> bool:
    """Whether a client's ``x-forwarded-client-cert`` may be removed (all but AlwaysForwardOnly)."""
    return spec is None or spec.mode != "AlwaysForwardOnly"


def _xfcc_forward(
    spec: et.XForwardedClientCert | None,
) -> Literal["ForwardOnly", "AppendForward", "SanitizeSet"] | None:
    """The modes that keep or write the header on mutual-TLS connections."""
    mode = spec.mode if spec is not None else None
    if mode in ("ForwardOnly", "AppendForward", "SanitizeSet"):
        return mode
    return None


def _xfcc_details(spec: et.XForwardedClientCert | None) -> tuple[str, ...]:
    """``certDetailsToAdd`` in the order Envoy writes them, whatever order they were listed in."""
    wanted = set(spec.cert_details_to_add) if spec is not None else set()
    return tuple(detail for detail in DETAIL_ORDER if detail in wanted)


def _early(spec: et.HeaderMutation) -> ir.HeaderModifier:
    """Set wins by its last value per name; add keeps every value; names lower-case."""
    sets = {h.name.lower(): h.value for h in spec.set}
    return ir.HeaderModifier(
        set=tuple(sets.items()),
        add=tuple((h.name.lower(), h.value) for h in spec.add),
        remove=tuple(dict.fromkeys(name.lower() for name in spec.remove)),
    )


def _remove_on_match(
    matches: tuple[et.StringMatch, ...], where: str
) -> tuple[tuple[str, str], ...]:
    """Header names compare case-insensitively: literal values lower-cased, patterns checked."""
    out: list[tuple[str, str]] = []
    for i, match in enumerate(matches):
        if match.type == "RegularExpression":
            try:
                re.compile(match.value)
            except re.error as exc:
                field = f"spec.headers.{where}.removeOnMatch[{i}].value"
                raise Problem(f"{field}: invalid regular expression: {exc}") from None
            out.append((match.type, match.value))
        else:
            out.append((match.type, match.value.lower()))
    return tuple(out)


def _windows(spec: et.HTTP2Settings) -> None:
    """Envoy's bounds on the HTTP/2 windows, as Envoy Gateway checks them."""
    windows = {
        "initialStreamWindowSize": spec.initial_stream_window_size,
        "initialConnectionWindowSize": spec.initial_connection_window_size,
    }
    for name, value in windows.items():
        if value is not None and not 65535 <= value <= 2**31 - 1:
            raise Problem(
                f"spec.http2.{name}: {value} is out of range, must be between 65535 and 2147483647"
            )


def _timeouts(spec: et.ClientTimeout) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.tcp is not None and spec.tcp.idle_timeout:
        out["tcp_idle_timeout"] = float(spec.tcp.idle_timeout)
    if spec.http is not None and spec.http.request_received_timeout:
        out["request_received_timeout"] = float(spec.http.request_received_timeout)
    return out


def _tls(spec: ep.ClientTLSSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.ciphers:
        if spec.min_version == "1.3":
            raise Problem(
                "spec.tls.ciphers: setting ciphers has no effect if the minimum possible "
                "TLS version is 1.3"
            )
        out["tls_ciphers"] = ":".join(_ciphers(spec.ciphers))
    if spec.ecdh_curves:
        out["tls_curves"] = ":".join(_listed("ecdhCurves", spec.ecdh_curves, _CURVES))
    if spec.signature_algorithms:
        out["tls_signature_algorithms"] = ":".join(
            _listed("signatureAlgorithms", spec.signature_algorithms, _SIGALGS)
        )
    return out


def _ciphers(entries: tuple[str, ...]) -> list[str]:
    names: list[str] = []
    for i, entry in enumerate(entries):
        group = entry[1:-1].split("|") if entry.startswith("[") and entry.endswith("]") else [entry]
        for name in group:
            name = _IANA.get(name.strip(), name.strip())
            if name in _TLS13_SUITES:
                raise Problem(
                    f"spec.tls.ciphers[{i}]: {name} is a TLS 1.3 suite; TLS 1.3 suites are "
                    "not configurable (ciphers applies to TLS 1.0-1.2)"
                )
            if name not in _CIPHERS:
                raise Problem(f"spec.tls.ciphers[{i}]: unsupported cipher suite {name!r}")
            if name not in names:
                names.append(name)
    return names


def _listed(field: str, entries: tuple[str, ...], known: frozenset[str]) -> list[str]:
    for i, name in enumerate(entries):
        if name not in known:
            raise Problem(f"spec.tls.{field}[{i}]: unsupported value {name!r}")
    return list(dict.fromkeys(entries))
