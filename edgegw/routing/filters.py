"""The pure part of each HTTPRoute filter: request data in, decisions out.

The data plane owns the I/O (sending the redirect, forwarding the mirror,
sleeping between retries); these functions only say what to do, so every
spec rule about status codes, ports, slashes and header names is decided, and
tested, here. Randomness comes in as an argument (``rand`` in [0, 1)).

Headers are ``(name, value)`` pairs of bytes, names lower-case, as the
protocol layer delivers them.

CORS lives in ``routing.cors`` and is re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from edgegw import ir
from edgegw.proto.events import HeaderList
from edgegw.routing.cors import cors_preflight, cors_response_headers, is_cors_preflight
from edgegw.routing.matchers import normalize_prefix

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_RETRY_ATTEMPTS",
    "apply_header_modifier",
    "backoff_delay",
    "cors_preflight",
    "cors_response_headers",
    "is_cors_preflight",
    "mirror_wanted",
    "redirect_location",
    "replace_prefix",
    "rewrite",
    "should_retry",
]


DEFAULT_PORTS = {"http": 80, "https": 443}
DEFAULT_RETRY_ATTEMPTS = 1  # when a retry block leaves attempts unset
DEFAULT_BACKOFF = 0.025  # seconds, when a retry block leaves backoff unset
BACKOFF_CAP_FACTOR = 10  # backoff grows exponentially up to this many times the minimum


# --- header modifiers -----------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _encoded(
    modifier: ir.HeaderModifier,
) -> tuple[frozenset[bytes], HeaderList, HeaderList]:
    """Drop set, then ``set`` and ``add`` pairs, as bytes; computed once per modifier."""

    def pairs(entries: tuple[tuple[str, str], ...]) -> HeaderList:
        return [(name.lower().encode(), value.encode()) for name, value in entries]

    set_pairs = pairs(modifier.set)
    dropped = {name for name, _ in set_pairs} | {name.lower().encode() for name in modifier.remove}
    return frozenset(dropped), set_pairs, pairs(modifier.add)


def apply_header_modifier(
    headers: Sequence[tuple[bytes, bytes]], modifier: ir.HeaderModifier
) -> HeaderList:
    """Headers after a Request- or ResponseHeaderModifier.

    ``set`` replaces every value of a header, ``add`` appends a value after
    those already present, ``remove`` drops every value. Names compare
    case-insensitively.

    Args:
        headers: the request or response headers.
        modifier: the filter's modifier.

    Returns:
        A new list; ``headers`` is left as it was.
    """
    dropped, set_pairs, add_pairs = _encoded(modifier)
    kept = [(name, value) for name, value in headers if name.lower() not in dropped]
    return kept + set_pairs + add_pairs


# --- paths ----------------------------------------------------------------------------------


def replace_prefix(path: str, prefix: str, replacement: str) -> str:
    """``path`` with its matched ``prefix`` replaced, by the spec's table.

    Both ``prefix`` and ``replacement`` ignore a trailing ``/``; what followed
    the prefix keeps its leading ``/``; an empty result is ``/``. So with
    prefix ``/foo``: ``/foo/bar`` → ``/xyz/bar``, ``/foo/`` → ``/xyz/``,
    and with an empty or ``/`` replacement ``/foo`` → ``/``.
    A path that the prefix does not take is returned unchanged.
    """
    base = normalize_prefix(prefix)
    rest = path[len(base) :]
    if not path.startswith(base) or (rest and not rest.startswith("/")):
        return path
    result = normalize_prefix(replacement) + rest
    if not result.startswith("/"):
        result = "/" + result
    return result


def _modified_path(modifier: ir.PathModifier | None, path: str, match: ir.HTTPMatch | None) -> str:
    if modifier is None:
        return path
    if modifier.type == "ReplaceFullPath":
        return modifier.value
    prefix = match.path if match is not None and match.path_type == "PathPrefix" else "/"
    return replace_prefix(path, prefix, modifier.value)


# --- RequestRedirect ------------------------------------------------------------------------


def _authority(host: str, port: int, scheme: str) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    if DEFAULT_PORTS.get(scheme) == port:
        return host
    return f"{host}:{port}"


def redirect_location(
    redirect: ir.RequestRedirectFilter,
    scheme: str,
    host: str,
    port: int,
    path: str,
    query: str,
    match: ir.HTTPMatch | None,
) -> tuple[int, str]:
    """The status and ``Location`` of a RequestRedirect.

    The port follows the spec: the filter's port if set; else the default
    port of the filter's scheme if it changes the scheme; else the
    listener's port. It is left out when it is the default for the scheme.

    Args:
        redirect: the filter.
        scheme: the request's scheme ("http" or "https").
        host: the request's host, without port.
        port: the listener's port.
        path: the request path, without query.
        query: the raw query without ``?`` (kept in the Location), or "".
        match: the match that took the request (for ReplacePrefixMatch).

    Returns:
        ``(status code, absolute Location URL)``.
    """
    new_scheme = redirect.scheme or scheme
    if redirect.port is not None:
        new_port = redirect.port
    elif redirect.scheme:
        new_port = DEFAULT_PORTS.get(redirect.scheme, port)
    else:
        new_port = port
    authority = _authority(redirect.hostname or host, new_port, new_scheme)
    location = f"{new_scheme}://{authority}{_modified_path(redirect.path, path, match)}"
    if query:
        location = f"{location}?{query}"
    return redirect.status_code, location


# --- URLRewrite -----------------------------------------------------------------------------


def rewrite(
    url_rewrite: ir.URLRewriteFilter, host: str, path: str, match: ir.HTTPMatch | None
) -> tuple[str, str]:
    """The Host and path to forward after a URLRewrite (the query is untouched).

    Args:
        url_rewrite: the filter.
        host: the request's Host header value.
        path: the request path, without query.
        match: the match that took the request (for ReplacePrefixMatch).

    Returns:
        ``(host, path)``.
    """
    new_host = url_rewrite.hostname or host
    return new_host, _modified_path(url_rewrite.path, path, match)


# --- RequestMirror --------------------------------------------------------------------------


def mirror_wanted(mirror: ir.RequestMirrorFilter, rand: float) -> bool:
    """Whether this request is one of the mirrored fraction (``rand`` in [0, 1))."""
    return rand < mirror.fraction


# --- retries --------------------------------------------------------------------------------


def should_retry(
    retry: ir.Retry | None, status: int | None, attempt: int, grpc_status: int | None = None
) -> bool:
    """Whether to send the request to a backend again.

    A connection error (``status`` None) is retried whenever the rule has a
    retry block; a response only when its status is one of ``codes``, or its
    ``grpc_status`` (of a trailers-only gRPC answer) one of ``grpc_statuses``.
    ``attempts`` counts retries, on top of the first try; unset (0), it is
    ``DEFAULT_RETRY_ATTEMPTS``.

    Args:
        retry: the rule's retry block; None never retries.
        status: the backend's status, or None when no response came.
        attempt: which try just failed, the first being 1.
        grpc_status: the grpc-status in the response's headers, if any.
    """
    if retry is None:
        return False
    if status is not None and status not in retry.codes and grpc_status not in retry.grpc_statuses:
        return False
    attempts = retry.attempts if retry.attempts > 0 else DEFAULT_RETRY_ATTEMPTS
    return attempt <= attempts


def backoff_delay(retry: ir.Retry, attempt: int, rand: float = 0.0) -> float:
    """Seconds to wait before the retry that follows try number ``attempt``.

    Exponential from the configured minimum (never less, as the spec
    requires), capped at ``BACKOFF_CAP_FACTOR`` times it, plus up to 50%
    jitter from ``rand`` in [0, 1) so retries of many requests spread out.
    """
    base = retry.backoff if retry.backoff is not None else DEFAULT_BACKOFF
    growth = min(1 << min(max(attempt - 1, 0), 16), BACKOFF_CAP_FACTOR)
    return base * growth * (1.0 + rand / 2)
