"""Requests at the edge: paths normalized before matching.

A route that allows ``/public`` must not let ``/public/../admin`` through to a
backend that resolves dot segments itself, so ``net/decide.py`` normalizes
every request's path once (HTTP/1.1, HTTP/2, WebSocket upgrades of either),
before routing, and the normalized path is what is forwarded. The rules are Envoy Gateway's
defaults (Envoy's ``normalize_path`` and ``merge_slashes``):

1. percent-encoded *unreserved* characters (``A-Z a-z 0-9 - . _ ~``) are
   decoded, so ``%2e`` and ``%2E`` are dots and ``%41`` is ``A``; every other
   escape, ``%2F`` and ``%5C`` included, stays as sent;
2. dot segments are removed as RFC 3986 section 5.2.4 says; a ``..`` above
   the root is dropped (``/..`` is ``/``), as Envoy's URL canonicalizer does,
   rather than refused;
3. runs of slashes are merged into one.

A ClientTrafficPolicy's ``path`` settings (``normalize_path_with``) may turn
step 3 off and say what to do with escaped slashes, which are otherwise kept
as sent.

Field syntax is checked where each protocol is parsed: HTTP/2 heads by the
codec (``h2codec/validate.py``: pseudo-headers, control characters), HTTP/1.1
heads by the parser (``proto/http1.py``).

Pure: no I/O, no trio.
"""

from __future__ import annotations

import re
from typing import Literal

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_SLASHES = re.compile(r"//+")
# Control characters other than HTAB, and DEL: invalid in a field value (RFC 9110 section 5.5).


def split_host(authority: str) -> str:
    """``Host`` without port, lower-case; IPv6 literals lose their brackets.

    One function for every protocol's authority (HTTP/1.1 ``Host`` or absolute-form,
    HTTP/2 ``:authority``), so routing sees one host whatever the client spoke.
    """
    if ":" not in authority:  # the usual Host: a name without a port
        return authority.lower()
    if authority.startswith("["):
        return authority[1 : authority.find("]")].lower()
    host, _, port = authority.rpartition(":")
    return (host if port.isdigit() else authority).lower()


def _decode_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else match.group(0)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 for an absolute path; ``..`` at the root is dropped."""
    out: list[str] = []
    segments = path.split("/")
    for segment in segments[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    result = "/" + "/".join(out)
    if segments[-1] in (".", "..") and out:
        result += "/"  # "/a/b/.." is the directory "/a/"
    return result


def normalize_path(path: str, merge_slashes: bool = True) -> str:
    """The path a route is matched against and the backend receives (see the module docstring).

    Args:
        path: the path of a request-target, without its query. A path not
            starting with ``/`` (``*`` of ``OPTIONS *``) is returned unchanged.
        merge_slashes: step 3; a ClientTrafficPolicy's ``path.disableMergeSlashes`` turns it off.

    Returns:
        The normalized path; ``path`` itself (no copy) when there is nothing to do.
    """
    if not path.startswith("/"):
        return path
    if "%" not in path and "/." not in path and "//" not in path:
        return path  # the usual case: one scan per test, nothing built
    if "%" in path:
        path = _ESCAPE.sub(_decode_unreserved, path)
    if "/." in path:
        path = _remove_dot_segments(path)
    if merge_slashes and "//" in path:
        path = _SLASHES.sub("/", path)
    return path


_ESCAPED_SLASH = re.compile(r"%(?:2[Ff]|5[Cc])")
EscapedSlashes = Literal[
    "KeepUnchanged", "RejectRequest", "UnescapeAndRedirect", "UnescapeAndForward"
]


def normalize_path_with(
    path: str, escaped_slashes: EscapedSlashes, merge_slashes: bool
) -> tuple[str | None, bool]:
    """``normalize_path`` under a ClientTrafficPolicy's ``path`` settings, in Envoy's order.

    Escaped slashes (``%2F``, ``%5C``, either case) are handled first: kept,
    refused, or unescaped to ``/`` (Envoy unescapes ``%5C`` to a backslash,
    which its normaliser then turns into ``/``); then the steps above.

    Returns:
        ``(path, redirect)``: path None when the request is to be refused (400);
        ``redirect`` when the client is to be sent to the unescaped path.
    """
    redirect = False
    if escaped_slashes != "KeepUnchanged" and "%" in path and _ESCAPED_SLASH.search(path):
        if escaped_slashes == "RejectRequest":
            return None, False
        path = _ESCAPED_SLASH.sub("/", path)
        redirect = escaped_slashes == "UnescapeAndRedirect"
    return normalize_path(path, merge_slashes), redirect
