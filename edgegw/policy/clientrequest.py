"""A listener's ClientTrafficPolicy ``path`` and ``headers``, applied before routing.

Envoy applies these in its HTTP connection manager, before any filter or
route sees the request; ``net/decide.py`` calls ``ClientRequestRules.apply``
right after it picked the listener, for every request kind alike, in place of
the plain ``normalize_path``. In order:

1. the path: escaped slashes (``path.escapedSlashesAction``: kept, 400,
   unescaped and forwarded, or unescaped and answered with a 307 to the
   unescaped path), then the usual normalisation, slash merging unless
   ``path.disableMergeSlashes``;
2. header names with an underscore (``headers.withUnderscoresAction``):
   allowed, the request refused with 400 (Envoy resets an HTTP/2 stream
   instead; edgegw answers every request kind the same way), or dropped;
3. ``x-forwarded-client-cert`` (``xForwardedClientCert``): Sanitize, Envoy's
   default, removes it; AlwaysForwardOnly keeps it; on a connection without a
   client certificate the other modes remove it, and with one ForwardOnly
   keeps it, AppendForward appends this hop's element (``policy/xfcc.py``)
   and SanitizeSet replaces it with that element; then
   ``headers.earlyRequestHeaders`` (set, add, remove, ``removeOnMatch`` by
   name), before routing, so route matches see the result;
4. ``X-Request-ID`` (``headers.requestID``): Generate replaces what the client
   sent with a new UUID4, PreserveOrGenerate keeps it or makes one, Preserve
   keeps it and makes none, Disable removes it.

``LateResponse`` is ``headers.lateResponseHeaders``: the same set / add /
remove / ``removeOnMatch`` on every response the listener forwards, after the
route's own response header modifiers (``net/decide.response_fields``).

Pure: no I/O.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from edgegw import ir
from edgegw.policy.xfcc import PeerCertificate
from edgegw.proto.events import HeaderList
from edgegw.proto.target import normalize_path, normalize_path_with

_REQUEST_ID = b"x-request-id"
_XFCC = b"x-forwarded-client-cert"
# ``routing.filters.apply_header_modifier``, handed in by the routing table (no import cycle)
Modify = Callable[[HeaderList, ir.HeaderModifier], HeaderList]


def _unmodified(headers: HeaderList, _modifier: ir.HeaderModifier) -> HeaderList:
    return headers


@dataclass(frozen=True, slots=True)
class Refusal:
    """What the client gets instead: 400, or a 307 to ``location``."""

    status: int
    location: str = ""


class ClientRequestRules:
    """The pre-routing rules of one listener's ClientTrafficPolicy."""

    __slots__ = (
        "_early",
        "_escaped",
        "_merge",
        "_modify",
        "_removes",
        "_request_id",
        "_underscores",
        "_xfcc",
        "_xfcc_details",
        "_xfcc_forward",
        "late_response",
    )

    def __init__(
        self,
        path: ir.PathOptions | None,
        headers: ir.ClientHeaders | None,
        modify: Modify = _unmodified,
    ) -> None:
        self._modify = modify
        path = path or ir.PathOptions()
        self._escaped = path.escaped_slashes
        self._merge = path.merge_slashes
        self._underscores = headers.with_underscores if headers else "Allow"
        self._early = headers.early if headers else None
        self._request_id = headers.request_id if headers else None
        self._xfcc = headers is not None and headers.sanitize_xfcc
        self._xfcc_forward = headers.xfcc_forward if headers else None
        self._xfcc_details = headers.xfcc_details if headers else ()
        removes = _NameMatcher(headers.remove_on_match) if headers else None
        self._removes = removes if removes else None
        late = headers.late if headers else None
        late_removes = headers.late_remove_on_match if headers else ()
        self.late_response = (
            LateResponse(late, late_removes, modify) if late is not None or late_removes else None
        )

    def path(self, path: str, query: str) -> tuple[str, Refusal | None]:
        """The normalized path, or the refusal the path settings call for."""
        if self._escaped == "KeepUnchanged":
            return normalize_path(path, self._merge), None
        normalized, redirect = normalize_path_with(path, self._escaped, self._merge)
        if normalized is None:
            return path, Refusal(400)
        if redirect:
            return normalized, Refusal(307, normalized + "?" + query if query else normalized)
        return normalized, None

    def headers(
        self, headers: HeaderList, peer: PeerCertificate | None = None
    ) -> tuple[HeaderList, Refusal | None]:
        """The headers as routing sees them, or a refusal (a name with an underscore).

        ``peer``: the connection's client certificate, if it presented one.
        """
        if self._underscores != "Allow" and _underscored(headers):
            if self._underscores == "RejectRequest":
                return headers, Refusal(400)
            headers = [item for item in headers if b"_" not in item[0]]
        if self._xfcc_forward is not None and peer is not None:
            headers = self._forward_xfcc(headers, peer)
        elif self._xfcc and _has(headers, _XFCC):
            headers = [item for item in headers if item[0] != _XFCC]
        if self._early is not None:
            headers = self._modify(headers, self._early)
        if self._removes is not None:
            matches = self._removes.matches
            headers = [item for item in headers if not matches(item[0])]
        if self._request_id is not None:
            headers = _request_id(headers, self._request_id)
        return headers, None

    def _forward_xfcc(self, headers: HeaderList, peer: PeerCertificate) -> HeaderList:
        """ForwardOnly, AppendForward or SanitizeSet on a mutual-TLS connection."""
        if self._xfcc_forward == "ForwardOnly":
            return headers
        element = peer.element(self._xfcc_details)
        sent = [value for name, value in headers if name == _XFCC]
        if sent:
            headers = [item for item in headers if item[0] != _XFCC]
        if sent and self._xfcc_forward == "AppendForward":
            element = b",".join([*sent, element])
        return [*headers, (_XFCC, element)]


class LateResponse:
    """``lateResponseHeaders``: one listener's mutation of every forwarded response."""

    __slots__ = ("_modifier", "_modify", "_removes")

    def __init__(
        self,
        modifier: ir.HeaderModifier | None,
        remove_on_match: tuple[tuple[str, str], ...],
        modify: Modify,
    ) -> None:
        self._modifier, self._modify = modifier, modify
        removes = _NameMatcher(remove_on_match)
        self._removes = removes if removes else None

    def apply(self, fields: HeaderList) -> HeaderList:
        if self._modifier is not None:
            fields = self._modify(fields, self._modifier)
        if self._removes is not None:
            matches = self._removes.matches
            fields = [item for item in fields if not matches(item[0].lower())]
        return fields


class _NameMatcher:
    """``removeOnMatch``: header names by Exact, Prefix, Suffix or RegularExpression."""

    __slots__ = ("_exact", "_patterns", "_prefixes", "_suffixes")

    def __init__(self, matches: tuple[tuple[str, str], ...]) -> None:
        by_type: dict[str, list[bytes]] = {}
        for kind, value in matches:
            by_type.setdefault(kind, []).append(value.encode("latin-1"))
        self._exact = frozenset(by_type.get("Exact", ()))
        self._prefixes = tuple(by_type.get("Prefix", ()))
        self._suffixes = tuple(by_type.get("Suffix", ()))
        self._patterns = tuple(
            re.compile(v, re.IGNORECASE) for v in by_type.get("RegularExpression", ())
        )

    def __bool__(self) -> bool:
        return bool(self._exact or self._prefixes or self._suffixes or self._patterns)

    def matches(self, name: bytes) -> bool:
        """``name`` is lower-case, as every front end gives it."""
        return (
            name in self._exact
            or (bool(self._prefixes) and name.startswith(self._prefixes))
            or (bool(self._suffixes) and name.endswith(self._suffixes))
            or any(p.fullmatch(name) for p in self._patterns)
        )


def _underscored(headers: HeaderList) -> bool:
    for name, _ in headers:  # noqa: SIM110 - a plain loop: cheaper than any() over a generator
        if b"_" in name:
            return True
    return False


def _has(headers: HeaderList, wanted: bytes) -> bool:
    for name, _ in headers:  # noqa: SIM110 - as _underscored
        if name == wanted:
            return True
    return False


def _request_id(headers: HeaderList, action: str) -> HeaderList:
    present = _has(headers, _REQUEST_ID)
    if action == "Preserve" or (present and action == "PreserveOrGenerate"):
        return headers
    kept = [item for item in headers if item[0] != _REQUEST_ID] if present else headers
    if action == "Disable":
        return kept
    return [*kept, (_REQUEST_ID, str(uuid.uuid4()).encode())]


def compile_client_rules(policy: ir.ClientPolicy, modify: Modify) -> ClientRequestRules | None:
    """The rules of a policy that sets ``path`` or ``headers``; None leaves the default path.

    ``modify`` applies ``earlyRequestHeaders`` (the routing table passes its header modifier).
    """
    if policy.path is None and policy.headers is None:
        return None
    return ClientRequestRules(policy.path, policy.headers, modify)
