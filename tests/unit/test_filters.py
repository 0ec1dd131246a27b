"""HTTPRoute filters, checked against the conformance tests' expected values."""

from __future__ import annotations

import msgspec
import pytest

from edgegw import ir
from edgegw.routing.filters import (
    apply_header_modifier,
    backoff_delay,
    cors_preflight,
    cors_response_headers,
    is_cors_preflight,
    mirror_wanted,
    redirect_location,
    replace_prefix,
    rewrite,
    should_retry,
)


def raw(pairs: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in pairs.items()]


def as_seen(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Headers as the conformance echo backend reports them: repeated values comma-joined."""
    seen: dict[str, list[str]] = {}
    for name, value in headers:
        seen.setdefault(name.decode(), []).append(value.decode())
    return {name: ",".join(values) for name, values in seen.items()}


# --- HTTPRouteRequestHeaderModifier / HTTPRouteResponseHeaderModifier -----------------------

SET = ir.HeaderModifier(set=(("x-header-set", "set-overwrites-values"),))
ADD = ir.HeaderModifier(add=(("x-header-add", "add-appends-values"),))
REMOVE = ir.HeaderModifier(remove=("x-header-remove",))
MULTIPLE = ir.HeaderModifier(
    set=(("x-header-set-1", "header-set-1"), ("x-header-set-2", "header-set-2")),
    add=(
        ("x-header-add-1", "header-add-1"),
        ("x-header-add-2", "header-add-2"),
        ("x-header-add-3", "header-add-3"),
    ),
    remove=("x-header-remove-1", "x-header-remove-2"),
)
CASE = ir.HeaderModifier(  # names as users write them, to check case-insensitivity
    set=(("X-Header-Set", "header-set"),),
    add=(("X-Header-Add", "header-add"), ("x-Mixedcase-ADD-1", "mixedcase-add-1")),
    remove=("X-Header-Remove",),
)


@pytest.mark.parametrize(
    ("modifier", "before", "after", "absent"),
    [
        (SET, {"Some-Other-Header": "val"}, {"x-header-set": "set-overwrites-values"}, []),
        (
            SET,
            {"Some-Other-Header": "val", "X-Header-Set": "some-other-value"},
            {"some-other-header": "val", "x-header-set": "set-overwrites-values"},
            [],
        ),
        (ADD, {"Some-Other-Header": "val"}, {"x-header-add": "add-appends-values"}, []),
        (
            ADD,
            {"X-Header-Add": "some-other-value"},
            {"x-header-add": "some-other-value,add-appends-values"},
            [],
        ),
        (REMOVE, {"X-Header-Remove": "val"}, {}, ["x-header-remove"]),
        (
            MULTIPLE,
            {
                "X-Header-Set-2": "set-val-2",
                "X-Header-Add-2": "add-val-2",
                "X-Header-Remove-2": "remove-val-2",
                "Another-Header": "another-header-val",
            },
            {
                "x-header-set-1": "header-set-1",
                "x-header-set-2": "header-set-2",
                "x-header-add-1": "header-add-1",
                "x-header-add-2": "add-val-2,header-add-2",
                "x-header-add-3": "header-add-3",
                "another-header": "another-header-val",
            },
            ["x-header-remove-1", "x-header-remove-2"],
        ),
        (
            CASE,
            {
                "x-header-set": "original-val-set",
                "x-header-add": "original-val-add",
                "x-header-remove": "original-val-remove",
                "Another-Header": "another-header-val",
            },
            {
                "x-header-set": "header-set",
                "x-header-add": "original-val-add,header-add",
                "x-mixedcase-add-1": "mixedcase-add-1",
                "another-header": "another-header-val",
            },
            ["x-header-remove"],
        ),
    ],
)
def test_header_modifier(
    modifier: ir.HeaderModifier, before: dict[str, str], after: dict[str, str], absent: list[str]
) -> None:
    original = raw(before)
    seen = as_seen(apply_header_modifier(original, modifier))
    for name, value in after.items():
        assert seen[name] == value
    for name in absent:
        assert name not in seen
    assert original == raw(before)  # the input is not modified


# --- HTTPRouteRedirect* ---------------------------------------------------------------------


def redirect(**kw: object) -> ir.RequestRedirectFilter:
    return ir.RequestRedirectFilter(**kw)  # type: ignore[arg-type]


def full(value: str) -> ir.PathModifier:
    return ir.PathModifier(type="ReplaceFullPath", value=value)


def replace(value: str) -> ir.PathModifier:
    return ir.PathModifier(type="ReplacePrefixMatch", value=value)


def on(prefix: str) -> ir.HTTPMatch:
    return ir.HTTPMatch(path_type="PathPrefix", path=prefix)


GW = "gw.example"


@pytest.mark.parametrize(
    ("filter_", "path", "match", "want"),
    [
        # httproute-redirect-path
        (redirect(path=replace("/replacement-prefix")), "/original-prefix/lemon",
         on("/original-prefix"), (302, f"http://{GW}/replacement-prefix/lemon")),
        (redirect(path=full("/full-path-replacement")), "/full/path/original", on("/full"),
         (302, f"http://{GW}/full-path-replacement")),
        (redirect(hostname="example.org", path=replace("/replacement-prefix")), "/path-and-host",
         on("/path-and-host"), (302, "http://example.org/replacement-prefix")),
        (redirect(path=replace("/replacement-prefix"), status_code=301), "/path-and-status",
         on("/path-and-status"), (301, f"http://{GW}/replacement-prefix")),
        (redirect(hostname="example.org", path=full("/replacement-full")), "/full-path-and-host",
         on("/full-path-and-host"), (302, "http://example.org/replacement-full")),
        # httproute-redirect-host-and-status
        (redirect(hostname="example.org"), "/hostname-redirect", on("/hostname-redirect"),
         (302, "http://example.org/hostname-redirect")),
        (redirect(hostname="example.org", status_code=301), "/host-and-status",
         on("/host-and-status"), (301, "http://example.org/host-and-status")),
        # httproute-redirect-port
        (redirect(port=8083), "/port", on("/port"), (302, f"http://{GW}:8083/port")),
        (redirect(hostname="example.org", port=8083, status_code=301), "/p", on("/p"),
         (301, "http://example.org:8083/p")),
        # httproute-redirect-scheme
        (redirect(scheme="https"), "/scheme", on("/scheme"), (302, f"https://{GW}/scheme")),
        (redirect(scheme="https", hostname="example.org", status_code=301), "/s", on("/s"),
         (301, "https://example.org/s")),
    ],
)  # fmt: skip
def test_redirect_conformance(
    filter_: ir.RequestRedirectFilter, path: str, match: ir.HTTPMatch, want: tuple[int, str]
) -> None:
    assert redirect_location(filter_, "http", GW, 80, path, "", match) == want


@pytest.mark.parametrize(
    ("scheme", "listener_port", "filter_", "want"),
    [
        # httproute-redirect-port-and-scheme, listener on 80
        ("http", 80, redirect(), "http://example.org/p"),
        ("http", 80, redirect(port=80), "http://example.org/p"),
        ("http", 80, redirect(port=8080), "http://example.org:8080/p"),
        ("http", 80, redirect(scheme="https"), "https://example.org/p"),
        ("http", 80, redirect(scheme="https", port=443), "https://example.org/p"),
        ("http", 80, redirect(scheme="https", port=8443), "https://example.org:8443/p"),
        # listener on 8080
        ("http", 8080, redirect(), "http://example.org:8080/p"),
        ("http", 8080, redirect(port=80), "http://example.org/p"),
        ("http", 8080, redirect(scheme="https"), "https://example.org/p"),
        # HTTPS listener on 443
        ("https", 443, redirect(), "https://example.org/p"),
        ("https", 443, redirect(port=443), "https://example.org/p"),
        ("https", 443, redirect(port=8443), "https://example.org:8443/p"),
        ("https", 443, redirect(scheme="http"), "http://example.org/p"),
        ("https", 443, redirect(scheme="http", port=80), "http://example.org/p"),
        ("https", 443, redirect(scheme="http", port=8080), "http://example.org:8080/p"),
    ],
)
def test_redirect_port_and_scheme(
    scheme: str, listener_port: int, filter_: ir.RequestRedirectFilter, want: str
) -> None:
    hostname = msg_replace(filter_, hostname="example.org")
    assert redirect_location(hostname, scheme, GW, listener_port, "/p", "", on("/p")) == (302, want)


def msg_replace(filter_: ir.RequestRedirectFilter, **kw: object) -> ir.RequestRedirectFilter:
    return msgspec.structs.replace(filter_, **kw)


def test_redirect_keeps_query_and_brackets_ipv6() -> None:
    got = redirect_location(redirect(port=8080), "http", "::1", 80, "/a", "x=1&y=2", None)
    assert got == (302, "http://[::1]:8080/a?x=1&y=2")


# --- ReplacePrefixMatch and HTTPRouteRewritePath / HTTPRouteRewriteHost ---------------------


@pytest.mark.parametrize(
    ("path", "prefix", "replacement", "want"),
    [  # the table in the HTTPPathModifier documentation
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
        ("/api/x", "/", "/v2", "/v2/api/x"),
        ("/foobar", "/foo", "/xyz", "/foobar"),  # not a segment match: unchanged
    ],
)
def test_replace_prefix_spec_table(path: str, prefix: str, replacement: str, want: str) -> None:
    assert replace_prefix(path, prefix, replacement) == want


@pytest.mark.parametrize(
    ("modifier", "match", "path", "want"),
    [
        (replace("/one"), on("/prefix/one"), "/prefix/one/two", "/one/two"),
        (replace("/one"), on("/prefix/one"), "/prefix/one/", "/one/"),
        (replace("/"), on("/strip-prefix"), "/strip-prefix/three", "/three"),
        (replace("/"), on("/strip-prefix"), "/strip-prefix", "/"),
        (full("/one"), on("/full/one"), "/full/one/two", "/one"),
        (full("/test"), on("/full/rewrite-path-and-modify-headers"),
         "/full/rewrite-path-and-modify-headers/test", "/test"),
        (replace("/prefix"), on("/prefix/rewrite-path-and-modify-headers"),
         "/prefix/rewrite-path-and-modify-headers/one", "/prefix/one"),
    ],
)  # fmt: skip
def test_rewrite_path_conformance(
    modifier: ir.PathModifier, match: ir.HTTPMatch, path: str, want: str
) -> None:
    assert rewrite(ir.URLRewriteFilter(path=modifier), "gw", path, match) == ("gw", want)


def test_rewrite_host_conformance() -> None:
    host_only = ir.URLRewriteFilter(hostname="one.example.org")
    assert rewrite(host_only, "rewrite.example", "/one", on("/one")) == ("one.example.org", "/one")
    assert rewrite(ir.URLRewriteFilter(), "rewrite.example", "/two", None) == (
        "rewrite.example",
        "/two",
    )


# --- RequestMirror --------------------------------------------------------------------------


def test_mirror_fraction() -> None:
    half = ir.RequestMirrorFilter(backend=ir.Backend(name="m"), fraction=0.5)
    wanted = [mirror_wanted(half, i / 100) for i in range(100)]
    assert wanted.count(True) == 50
    never = ir.RequestMirrorFilter(backend=ir.Backend(name="m"), fraction=0.0)
    always = ir.RequestMirrorFilter(backend=ir.Backend(name="m"))
    assert not mirror_wanted(never, 0.0)
    assert mirror_wanted(always, 0.9999)


# --- retries (httproute-retry, httproute-retry-connection-error) ----------------------------


def tries_until_answer(retry: ir.Retry, failures: int, status: int | None) -> int | None:
    """Simulate a backend failing ``failures`` times; the try that succeeded, or None."""
    attempt = 1
    while attempt <= failures:
        if not should_retry(retry, status, attempt):
            return None
        attempt += 1
    return attempt


@pytest.mark.parametrize(
    ("retry", "failures", "status", "succeeds"),
    [
        (ir.Retry(codes=(500,), attempts=3), 2, 500, True),
        (ir.Retry(codes=(500,), attempts=3), 4, 500, False),
        (ir.Retry(codes=(500,), attempts=3), 2, 503, False),
        (ir.Retry(codes=(500, 502, 503, 504), attempts=2), 1, 502, True),
        (ir.Retry(codes=(500, 502, 503, 504), attempts=2), 3, 504, False),
        (ir.Retry(attempts=3), 2, None, True),  # connection errors
        (ir.Retry(attempts=3), 4, None, False),
    ],
)
def test_retry_budget(retry: ir.Retry, failures: int, status: int | None, succeeds: bool) -> None:
    assert (tries_until_answer(retry, failures, status) is not None) is succeeds


def test_grpc_status_triggers_retry_only_when_listed() -> None:
    retry = ir.Retry(grpc_statuses=(14,), attempts=2)
    assert should_retry(retry, 200, 1, grpc_status=14)  # a trailers-only UNAVAILABLE
    assert not should_retry(retry, 200, 1, grpc_status=8)  # RESOURCE_EXHAUSTED: not listed
    assert not should_retry(retry, 200, 1)  # no grpc-status: an answer
    assert not should_retry(retry, 200, 3, grpc_status=14)  # past the attempts


def test_no_retry_without_policy_and_backoff_never_below_minimum() -> None:
    assert not should_retry(None, None, 1)
    retry = ir.Retry(attempts=5, backoff=0.1)
    delays = [backoff_delay(retry, n) for n in range(1, 7)]
    assert delays[0] == pytest.approx(0.1)
    assert delays == sorted(delays)
    assert all(0.1 <= d <= 1.0 for d in delays)
    assert backoff_delay(retry, 1, rand=0.999) < 0.15


# --- HTTPRouteCORS --------------------------------------------------------------------------

CORS_1 = ir.CORSFilter(
    allow_origins=("https://www.foo.com", "https://*.bar.com"),
    allow_methods=("GET", "OPTIONS"),
    allow_headers=("x-header-1", "x-header-2"),
    expose_headers=("x-header-3", "x-header-4"),
    allow_credentials=True,
    max_age=3600,
)
CORS_2 = ir.CORSFilter(allow_origins=("https://www.foo.com",), allow_methods=("*",))
WILDCARD_ORIGIN = ir.CORSFilter(allow_origins=("*",), allow_methods=("PUT",))
WILDCARD_AUTH = ir.CORSFilter(
    allow_origins=("*",), allow_methods=("*",), allow_headers=("*",), allow_credentials=True
)
WILDCARD_UNAUTH = ir.CORSFilter(allow_origins=("*",), allow_methods=("*",), allow_headers=("*",))


def nospace(headers: list[tuple[bytes, bytes]] | None) -> dict[str, str]:
    assert headers is not None
    return {k.decode(): v.decode().replace(" ", "") for k, v in headers}


@pytest.mark.parametrize(
    "origin", ["https://www.foo.com", "https://www.bar.com", "https://xpto.www.bar.com"]
)
def test_cors_preflight_allowed_origins(origin: str) -> None:
    got = nospace(cors_preflight(CORS_1, origin, "GET", "x-header-1, x-header-2"))
    assert got["access-control-allow-origin"] == origin
    assert got["access-control-allow-methods"] in ("GET,OPTIONS", "OPTIONS,GET")
    assert got["access-control-allow-headers"] == "x-header-1,x-header-2"
    assert got["access-control-expose-headers"] == "x-header-3,x-header-4"
    assert got["access-control-max-age"] == "3600"
    assert got["access-control-allow-credentials"] == "true"


def test_cors_non_matching_origin_gets_no_cors_headers() -> None:
    assert cors_preflight(CORS_1, "https://foobar.com", "GET", None) is None
    assert cors_preflight(CORS_1, "http://www.foo.com", "GET", None) is None  # scheme differs
    assert cors_preflight(CORS_1, "https://bar.com", "GET", None) is None  # "*." needs a label
    assert cors_response_headers(CORS_1, "https://foobar.com") == []
    assert cors_response_headers(CORS_1, None) == []


def test_cors_simple_requests() -> None:
    got = nospace(cors_response_headers(CORS_1, "https://www.bar.com"))
    assert got["access-control-allow-origin"] == "https://www.bar.com"
    assert got["access-control-allow-credentials"] == "true"
    assert got["access-control-expose-headers"] == "x-header-3,x-header-4"
    assert nospace(cors_response_headers(CORS_1, "https://www.foo.com:443"))


def test_cors_wildcard_methods_without_credentials() -> None:
    got = nospace(cors_preflight(CORS_2, "https://www.foo.com", "POST", None))
    assert got["access-control-allow-origin"] == "https://www.foo.com"
    assert got["access-control-allow-methods"] in ("POST", "*")
    assert "access-control-allow-credentials" not in got
    assert got["access-control-max-age"] == "5"


@pytest.mark.parametrize("origin", ["https://foobar.com", "https://foobar.com:12345"])
def test_cors_wildcard_origin(origin: str) -> None:
    got = nospace(cors_preflight(WILDCARD_ORIGIN, origin, "PUT", None))
    assert got["access-control-allow-origin"] in (origin, "*")
    assert got["access-control-allow-methods"] == "PUT"
    assert "access-control-allow-credentials" not in got
    simple = nospace(cors_response_headers(WILDCARD_ORIGIN, origin))
    assert simple["access-control-allow-origin"] in (origin, "*")
    assert "access-control-allow-credentials" not in simple


def test_cors_wildcards_with_credentials_echo_the_request() -> None:
    origin = "https://other.foo.com"
    got = nospace(cors_preflight(WILDCARD_AUTH, origin, "PUT", "x-header-1, x-header-2"))
    assert got["access-control-allow-origin"] == origin
    assert got["access-control-allow-methods"] == "PUT"
    assert got["access-control-allow-headers"] == "x-header-1,x-header-2"
    assert got["access-control-allow-credentials"] == "true"
    simple = nospace(cors_response_headers(WILDCARD_AUTH, origin))
    assert simple["access-control-allow-origin"] == origin
    assert simple["access-control-allow-credentials"] == "true"


def test_cors_wildcards_without_credentials() -> None:
    origin = "https://other.foo.com"
    got = nospace(cors_preflight(WILDCARD_UNAUTH, origin, "PUT", "x-header-1, x-header-2"))
    assert got["access-control-allow-origin"] in (origin, "*")
    assert got["access-control-allow-methods"] in ("PUT", "*")
    assert got["access-control-allow-headers"] in ("x-header-1,x-header-2", "*")
    assert "access-control-allow-credentials" not in got
    assert "access-control-allow-credentials" not in nospace(
        cors_response_headers(WILDCARD_UNAUTH, origin)
    )


def test_is_cors_preflight() -> None:
    assert is_cors_preflight("OPTIONS", "https://a.example", "GET")
    assert not is_cors_preflight("OPTIONS", "https://a.example", None)
    assert not is_cors_preflight("GET", "https://a.example", "GET")
    assert not is_cors_preflight("OPTIONS", None, "GET")
