"""``proto.http2``: header mapping, grpc-timeout and the reset budget, without I/O."""

from __future__ import annotations

import pytest

from edgegw.proto import http2


def test_parse_request_splits_pseudo_headers_and_joins_cookies() -> None:
    head = http2.parse_request(
        [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", b"Example.COM:8443"),
            (b":path", b"/a/b?x=1&y=2"),
            (b"cookie", b"a=1"),
            (b"content-length", b"12"),
            (b"cookie", b"b=2"),
        ]
    )
    assert (head.method, head.path, head.query) == ("POST", "/a/b", "x=1&y=2")
    assert (head.authority, head.host) == ("Example.COM:8443", "example.com")
    assert head.content_length == 12
    assert (b"cookie", b"a=1; b=2") in head.headers
    assert head.protocol is None


def test_parse_request_extended_connect_and_bad_length() -> None:
    head = http2.parse_request([(b":method", b"CONNECT"), (b":protocol", b"websocket")])
    assert head.protocol == "websocket"
    with pytest.raises(ValueError, match="content-length"):
        http2.parse_request([(b":method", b"GET"), (b"content-length", b"-1")])


def test_request_headers_for_a_backend() -> None:
    fields = http2.request_headers(
        b"GET",
        b"/p?q",
        [(b"host", b"svc"), (b"transfer-encoding", b"chunked"), (b"x-a", b"1")],
        scheme=b"http",
    )
    assert fields[:4] == [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"svc"),
        (b":path", b"/p?q"),
    ]
    assert (b"x-a", b"1") in fields
    assert (b"te", b"trailers") in fields
    assert all(name != b"transfer-encoding" for name, _ in fields)


def test_response_head_trailers_only_has_no_body() -> None:
    head = http2.response_head(
        [(b":status", b"200"), (b"grpc-status", b"5")], ended=True, head_request=False
    )
    assert head.status_code == 200
    assert not head.body_expected
    assert head.headers == ((b"grpc-status", b"5"),)


def test_response_headers_drop_connection_specific_fields() -> None:
    out = http2.response_headers(204, [(b"connection", b"close"), (b"x", b"y")])
    assert out == [(b":status", b"204"), (b"x", b"y")]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(b"1S", 1.0), (b"250m", 0.25), (b"2M", 120.0), (b"1H", 3600.0), (b"5u", 5e-6)],
)
def test_grpc_timeout(value: bytes, seconds: float) -> None:
    assert http2.grpc_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"S", b"1x", b"123456789S", b"-1S"])
def test_grpc_timeout_malformed(value: bytes) -> None:
    assert http2.grpc_timeout(value) is None


def test_reset_budget_is_a_sliding_window() -> None:
    budget = http2.ResetBudget(limit=3, window=10.0)
    assert not any(budget.spend(t) for t in (0.0, 1.0, 2.0))
    assert budget.spend(3.0)  # four within ten seconds
    budget = http2.ResetBudget(limit=3, window=10.0)
    assert not any(budget.spend(t) for t in (0.0, 5.0, 10.5, 15.5, 21.0))
