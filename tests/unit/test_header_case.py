"""ClientTrafficPolicy ``http1.preserveHeaderCase``: the case-keeping parsers, ``recase``, and
the policy's way from YAML to the port's limits.

Parser cases run on both variants (mypyc-compiled as installed, and the Python source). The
case-keeping parsers must frame exactly as the plain ones (so the h11 differential cases hold
for them too) and only add each name's first spelling.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import msgspec
import pytest

from edgegw import ir
from edgegw.api import envoypolicies as ep
from edgegw.net.dispatch import compile_runtime
from edgegw.proto.events import Event, RequestReceived, ResponseReceived
from edgegw.translate.clientconvert import client_fields
from tests.unit.test_http1_differential import MALICIOUS, STRICTER, VALID, VARIANTS

variants = pytest.mark.parametrize("http1", list(VARIANTS.values()), ids=list(VARIANTS))
INPUTS = {**VALID, **MALICIOUS, **{name: case[0] for name, case in STRICTER.items()}}


def events(parser: Any, data: bytes) -> list[Event | str]:
    """Every event for ``data`` fed in one piece, then the error if any (as its status)."""
    out: list[Event | str] = []
    parser.receive_data(data)
    try:
        while (event := parser.next_event()) is not None:
            out.append(event)
    except Exception as exc:
        out.append(f"error {getattr(exc, 'status_hint', '?')}")
    return out


def uncased(event: Event | str) -> Event | str:
    if isinstance(event, RequestReceived | ResponseReceived):
        return msgspec.structs.replace(event, header_case=None)
    return event


@variants
@pytest.mark.parametrize("data", INPUTS.values(), ids=INPUTS.keys())
def test_case_keeping_parser_frames_as_the_plain_one(http1: ModuleType, data: bytes) -> None:
    plain = events(http1.RequestParser(), data)
    cased = events(http1.CaseKeepingRequestParser(), data)
    assert [uncased(e) for e in cased] == plain
    for event in cased:
        if isinstance(event, RequestReceived):
            assert event.header_case is not None
            assert set(event.header_case) == {name for name, _ in event.headers}
            for lower, spelled in event.header_case.items():
                assert spelled.lower() == lower
                assert b"\r\n" + spelled + b":" in data


@variants
def test_first_spelling_wins_and_each_pipelined_request_has_its_own(http1: ModuleType) -> None:
    parser = http1.CaseKeepingRequestParser()
    got = events(
        parser,
        b"GET /1 HTTP/1.1\r\nHost: a\r\nX-Trace-ID: 1\r\nx-trace-id: 2\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nhost: a\r\nX-TRACE-ID: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\nX-Sum: 9\r\n\r\n",
    )
    first, second = (e for e in got if isinstance(e, RequestReceived))
    assert first.headers == ((b"host", b"a"), (b"x-trace-id", b"1"), (b"x-trace-id", b"2"))
    assert first.header_case == {b"host": b"Host", b"x-trace-id": b"X-Trace-ID"}
    assert second.header_case == {
        b"host": b"host",
        b"x-trace-id": b"X-TRACE-ID",
        b"transfer-encoding": b"Transfer-Encoding",
    }  # the trailer's name was not added to it
    assert http1.recase(list(first.headers), first.header_case) == [
        (b"Host", b"a"),
        (b"X-Trace-ID", b"1"),
        (b"X-Trace-ID", b"2"),
    ]
    assert http1.recase([(b"via", b"1.1 gw")], first.header_case) == [(b"via", b"1.1 gw")]


@variants
def test_response_case_is_the_final_responses(http1: ModuleType) -> None:
    parser = http1.CaseKeepingResponseParser(b"GET")
    got = events(
        parser,
        b"HTTP/1.1 100 Continue\r\nX-Early: 1\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend-Case: y\r\n\r\nok",
    )
    (final,) = (e for e in got if isinstance(e, ResponseReceived))
    assert final.header_case == {
        b"content-length": b"Content-Length",
        b"x-backend-case": b"X-Backend-Case",
    }
    assert parser.reusable
    parser.reset()  # pooled, then reused for a request without the policy
    got = events(parser, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert [e.header_case for e in got if isinstance(e, ResponseReceived)] == [None]
    parser.reset()  # and again for one with it
    parser.keep_case()
    got = events(parser, b"HTTP/1.1 204 No Content\r\nX-Again: 1\r\n\r\n")
    assert [e.header_case for e in got if isinstance(e, ResponseReceived)] == [
        {b"x-again": b"X-Again"}
    ]


@variants
def test_a_head_response_is_noted_too(http1: ModuleType) -> None:
    got = events(
        http1.CaseKeepingResponseParser(b"HEAD"),
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: x\r\n\r\n",
    )
    assert isinstance(got[0], ResponseReceived)
    assert got[0].header_case == {b"content-length": b"Content-Length", b"etag": b"ETag"}
    assert len(got) == 2  # and it ended at the head


def _spec(raw: dict[str, Any]) -> ep.ClientTrafficPolicySpec:
    target = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}
    return msgspec.convert({"targetRef": target, **raw}, ep.ClientTrafficPolicySpec)


def _runtime(policy: ir.ClientPolicy) -> Any:
    listener = ir.Listener(
        gateway_namespace="d",
        gateway_name="gw",
        name="http",
        protocol="HTTP",
        port=8080,
        client_policy=policy,
    )
    return compile_runtime(ir.Port(address="127.0.0.1", port=8080, listeners=(listener,)))


def test_policy_fields_reach_the_port() -> None:
    fields = client_fields(
        _spec(
            {
                "http1": {"preserveHeaderCase": True},
                "http2": {"onInvalidMessage": "TerminateConnection"},
            }
        )
    )
    assert fields["preserve_header_case"] is True
    assert fields["http2"].terminate_connection is True
    runtime = _runtime(ir.ClientPolicy(name="d/p", **fields))
    assert runtime.http_limits.preserve_case
    assert runtime.h2_limits.malformed_ends_connection


def test_defaults_keep_lower_case_and_stream_resets() -> None:
    fields = client_fields(
        _spec(
            {
                "http1": {"preserveHeaderCase": False},
                "http2": {"onInvalidMessage": "TerminateStream"},
            }
        )
    )
    assert "preserve_header_case" not in fields
    assert fields["http2"].terminate_connection is False
    runtime = _runtime(ir.ClientPolicy(name="d/p", **fields))
    assert runtime.http_limits is None or not runtime.http_limits.preserve_case
    assert not runtime.h2_limits.malformed_ends_connection
