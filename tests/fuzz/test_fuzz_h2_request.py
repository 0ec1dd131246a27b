"""Fuzzing HTTP/2 request validation: random heads through the codec and ``parse_request``.

The property: a head is accepted only if what reaches an HTTP/1.1 backend is
one valid request with the same method, target and Host (checked by parsing
the serialized head with h11, a second, independent parser that accepts any
method token) once its path is normalized as ``decide`` does;
a well-formed head of valid values is always accepted.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h11
from hypothesis import given
from hypothesis import strategies as st

from edgegw.proto import h2codec, http2
from edgegw.proto.http1 import serialize_request_head
from edgegw.proto.target import normalize_path

NAMES = [b":method", b":path", b":authority", b":scheme", b":protocol", b"host", b"x-a"]
TRICKY = [b" ", b"\t", b"\r", b"\n", b"\x00", b"\x7f", b"#", b"?", b"%", b"@", b":", b"/", b".."]
TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PCHAR = b"abcXYZ019-._~!$&'()*+,;=:@/%?"
HOST = b"abcxyz019-._~"

values = st.one_of(
    st.lists(st.sampled_from([*TRICKY, b"a", b"GET", b"/x", b"example.com", b"80"])).map(b"".join),
    st.binary(max_size=16),
    st.sampled_from([b"GET", b"CONNECT", b"OPTIONS", b"*", b"/", b"[::1]:8080", b"websocket"]),
)
methods = st.text(TCHAR.decode(), min_size=1, max_size=8).map(str.encode)
paths = st.lists(st.sampled_from([bytes([c]) for c in PCHAR]), max_size=24).map(
    lambda p: b"/" + b"".join(p)
)
authorities = st.tuples(
    st.text(HOST.decode(), min_size=1, max_size=12).map(str.encode),
    st.one_of(st.just(b""), st.integers(0, 65535).map(lambda p: b":%d" % p)),
).map(b"".join)


def server_sees(fields: list[tuple[bytes, bytes]]) -> http2.H2Request | None:
    """What the gateway's HTTP/2 front end makes of one HEADERS frame; None if refused."""
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    client = h2.connection.H2Connection(config)
    client.initiate_connection()
    client.send_headers(1, fields, end_stream=True)
    server = http2.server_connection(http2.H2Limits())
    try:
        events = server.receive_data(client.data_to_send())
    except h2codec.ProtocolError:
        return None
    heads = [e for e in events if isinstance(e, h2codec.events.RequestReceived)]
    if not heads:
        return None
    try:
        return http2.parse_request(heads[0].headers)
    except (ValueError, UnicodeDecodeError):
        return None


def check_forwardable(head: http2.H2Request) -> None:
    """The head as the proxy would send it to an HTTP/1.1 backend parses back the same."""
    if head.method == "CONNECT" and head.protocol is None:
        return  # a plain CONNECT is answered 501, never forwarded
    path = normalize_path(head.path)  # as ``decide`` does before routing
    assert normalize_path(path) == path
    target = (path + ("?" + head.query if head.query else "")).encode("latin-1")
    fields = [(b"host", head.authority.encode("latin-1") or b"x"), *head.headers]
    raw = serialize_request_head(head.method.encode(), target, fields)
    backend = h11.Connection(h11.SERVER)
    backend.receive_data(raw)
    event = backend.next_event()
    assert isinstance(event, h11.Request), raw
    assert (event.method, event.target) == (head.method.encode(), target)
    hosts = [v for n, v in event.headers if n == b"host"]
    assert hosts == [head.authority.encode("latin-1") or b"x"]
    assert backend.next_event() in (h11.EndOfMessage(), h11.NEED_DATA)


BASE = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/a"), (b":authority", b"x")]


@st.composite
def one_value_changed(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """A valid head with one field's value replaced and maybe one field added."""
    fields = list(BASE)
    at = draw(st.integers(0, len(fields) - 1))
    fields[at] = (fields[at][0], draw(values))
    if draw(st.booleans()):
        fields.insert(
            draw(st.integers(0, len(fields))), (draw(st.sampled_from(NAMES)), draw(values))
        )
    return fields


@given(
    st.one_of(
        st.lists(st.tuples(st.sampled_from(NAMES), values), min_size=1, max_size=8),
        one_value_changed(),
    )
)
def test_random_pseudo_headers_are_accepted_only_if_valid(
    fields: list[tuple[bytes, bytes]],
) -> None:
    head = server_sees(fields)
    if head is not None:
        check_forwardable(head)


@given(methods, paths, authorities, st.sampled_from([b"http", b"https"]))
def test_well_formed_heads_of_valid_values_are_accepted(
    method: bytes, path: bytes, authority: bytes, scheme: bytes
) -> None:
    fields = [(b":method", method), (b":scheme", scheme), (b":path", path)]
    fields.append((b":authority", authority))
    head = server_sees(fields)
    if method == b"CONNECT":
        return  # CONNECT carries no :path or :scheme; refused in this shape
    assert head is not None, fields
    check_forwardable(head)
