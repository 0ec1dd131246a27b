"""What an HTTP/2 codec alone costs per request on this machine: the ratios' reference.

edgegw speaks HTTP/2 through its own codec (``edgegw.proto.h2codec``), which
replaced the h2 library. These measure the CPU time of edgegw's end for the
frames of one request in memory, with no sockets, no TLS, no trio and no
proxying, once with the codec edgegw ships (as ``proto/http2.py`` configures
it) and once with h2 as edgegw configured it before (inbound headers
validated, outbound not). The peers (client, backend) are h2 in both runs.
The inverse of a figure is the most requests per second a proxy built on that
codec can serve on one core here.

* ``server_side_us``: one GET answered with a 100-byte body, the server's end
  only (`bench/h2`: h2load to edgegw, HTTP/1.1 upstream).
* ``proxy_call_us``: one unary gRPC call through a proxy, both of the proxy's
  ends: the server end towards the client and the client end towards the
  backend (`bench/grpc`).

    python bench/h2_floor.py
"""

from __future__ import annotations

import time
from typing import Any

import h2.config
import h2.connection

from edgegw.proto import http2

CODECS = ("edgegw", "h2")

_GET = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":path", b"/"),
    (b":authority", b"127.0.0.1:8443"),
    (b"user-agent", b"h2load nghttp2/1.52.0"),
]
_OK = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"100")]
_GRPC_CALL = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/bench.Echo/Unary"),
    (b":authority", b"127.0.0.1:8080"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
]
_GRPC_OK = [(b":status", b"200"), (b"content-type", b"application/grpc")]
_GRPC_TRAILERS = [(b"grpc-status", b"0")]
_MESSAGE = b"\x00\x00\x00\x00\x10" + b"0123456789abcdef"


def _h2(*, client: bool, edgegw: bool) -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(
        client_side=client,
        header_encoding=None,
        validate_inbound_headers=True,
        validate_outbound_headers=not edgegw,
    )
    return h2.connection.H2Connection(config=config)


def _edgegw_end(codec: str, *, client: bool) -> Any:
    """edgegw's end of a connection, on ``codec``, its preface queued."""
    if codec == "edgegw":
        limits = http2.H2Limits()
        return http2.client_connection(limits) if client else http2.server_connection(limits)
    conn = _h2(client=client, edgegw=True)
    conn.initiate_connection()
    return conn


def _pair(codec: str, *, edgegw_client: bool) -> tuple[Any, Any]:
    """A connected (client, server); ``edgegw_client`` says which end is edgegw's."""
    if edgegw_client:
        client, server = _edgegw_end(codec, client=True), _h2(client=False, edgegw=False)
        server.initiate_connection()
    else:
        client, server = _h2(client=True, edgegw=False), _edgegw_end(codec, client=False)
        client.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    return client, server


def _ack(conn: Any, events: list[Any]) -> None:
    for event in events:
        if hasattr(event, "flow_controlled_length"):
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)


def server_side_us(codec: str = "edgegw", requests: int = 3000) -> float:
    """CPU µs ``codec`` spends answering one GET, server end only."""
    client, server = _pair(codec, edgegw_client=False)
    spent = 0.0
    for _ in range(requests):
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, _GET, end_stream=True)
        incoming = client.data_to_send()
        start = time.process_time()
        for event in server.receive_data(incoming):
            if type(event).__name__ == "RequestReceived":
                server.send_headers(event.stream_id, _OK)
                server.send_data(event.stream_id, b"x" * 100, end_stream=True)
        outgoing = server.data_to_send()
        spent += time.process_time() - start
        _ack(client, client.receive_data(outgoing))
    return spent / requests * 1e6


def proxy_call_us(codec: str = "edgegw", calls: int = 2000) -> float:
    """CPU µs ``codec`` spends on one proxied unary gRPC call, both of the proxy's ends."""
    front_client, front = _pair(codec, edgegw_client=False)  # the caller, edgegw's server end
    back, backend = _pair(codec, edgegw_client=True)  # edgegw's client end, the backend
    spent = 0.0
    for _ in range(calls):
        stream_id = front_client.get_next_available_stream_id()
        front_client.send_headers(stream_id, _GRPC_CALL)
        front_client.send_data(stream_id, _MESSAGE, end_stream=True)
        request = front_client.data_to_send()
        start = time.process_time()
        events = front.receive_data(request)
        _ack(front, events)
        up = back.get_next_available_stream_id()
        back.send_headers(up, _GRPC_CALL)
        back.send_data(up, _MESSAGE, end_stream=True)
        to_backend = back.data_to_send()
        spent += time.process_time() - start
        _ack(backend, backend.receive_data(to_backend))
        backend.send_headers(up, _GRPC_OK)
        backend.send_data(up, _MESSAGE)
        backend.send_headers(up, _GRPC_TRAILERS, end_stream=True)
        answer = backend.data_to_send()
        start = time.process_time()
        _ack(back, back.receive_data(answer))
        front.send_headers(stream_id, _GRPC_OK)
        front.send_data(stream_id, _MESSAGE)
        front.send_headers(stream_id, _GRPC_TRAILERS, end_stream=True)
        to_client = front.data_to_send()
        spent += time.process_time() - start
        backend.receive_data(back.data_to_send())
        _ack(front_client, front_client.receive_data(to_client))
        front.receive_data(front_client.data_to_send())
    return spent / calls * 1e6


def main() -> None:
    for codec in CODECS:
        server = min(server_side_us(codec) for _ in range(3))
        call = min(proxy_call_us(codec) for _ in range(3))
        print(f"{codec}: server end, one GET: {server:.1f} us -> at most {1e6 / server:,.0f} req/s")
        print(f"{codec}: both ends, one proxied gRPC call: {call:.1f} us -> {1e6 / call:,.0f}/s")


if __name__ == "__main__":
    main()
