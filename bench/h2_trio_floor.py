"""The floor of any trio HTTP/2-over-TLS proxy with edgegw's codec: a reference, not a product.

`bench/h2` runs this next to nginx and edgegw, under the same h2load, so the ratios can be
read against what trio, TLS and the codec themselves cost here. It does the least an HTTP/2
proxy can: TLS through ``trio.SSLStream`` (ALPN h2), edgegw's codec as ``proto/http2.py``
configures it, one task per stream, a GET forwarded as a fixed HTTP/1.1 head over the pooled
upstream connections of ``trio_floor.py`` (no routing, no header handling, no bodies from
the client), the response's body sent back in one DATA frame, and one writer task per
connection flushing whatever the codec queued. What it reaches is the ceiling for edgegw's
HTTP/2 path, which does all the work this skips.

    python bench/h2_trio_floor.py UPSTREAM_PORT LISTEN_PORT CERT KEY
"""

from __future__ import annotations

import ssl
import sys

import trio
from trio_floor import _forward

from edgegw.proto import http2
from edgegw.proto.h2codec import events as ev
from edgegw.proto.h2codec.connection import H2Codec

_END = b"\r\n\r\n"


class _Connection:
    """One client connection: the codec, and an event that wakes its writer."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream], upstream_port: int) -> None:
        self.stream = stream
        self.upstream_port = upstream_port
        self.codec: H2Codec = http2.server_connection(http2.H2Limits())
        self.wake = trio.Event()

    async def writer(self) -> None:
        while True:
            await self.wake.wait()
            self.wake = trio.Event()
            data = self.codec.data_to_send()
            if data:
                await self.stream.send_all(data)

    async def answer(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        fields = dict(headers)
        head = b"GET %s HTTP/1.1\r\nhost: %s\r\n\r\n" % (fields[b":path"], fields[b":authority"])
        response = await _forward(head, self.upstream_port)
        if response is None:
            self.codec.reset_stream(stream_id)
        else:
            body = response[response.index(_END) + 4 :]
            length = b"%d" % len(body)
            self.codec.send_headers(stream_id, [(b":status", b"200"), (b"content-length", length)])
            self.codec.send_data(stream_id, body, end_stream=True)
        self.wake.set()

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.writer)
            self.wake.set()  # the codec's preface
            while data := await self.stream.receive_some(65536):
                for event in self.codec.receive_data(data):
                    if type(event) is ev.RequestReceived:
                        nursery.start_soon(self.answer, event.stream_id, event.headers)
                    elif type(event) is ev.DataReceived:
                        self.codec.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                self.wake.set()
            nursery.cancel_scope.cancel()


async def _serve_all(upstream_port: int, port: int, tls: ssl.SSLContext) -> None:
    async def handler(sock: trio.SocketStream) -> None:
        stream = trio.SSLStream(sock, tls, server_side=True)
        try:
            await _Connection(stream, upstream_port).serve()
        except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away (or was a bare TCP probe): its tasks are done
        sock.socket.close()

    await trio.serve_tcp(handler, port, host="127.0.0.1", backlog=4096)


def main() -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(sys.argv[3], sys.argv[4])
    tls.set_alpn_protocols(["h2"])
    trio.run(_serve_all, int(sys.argv[1]), int(sys.argv[2]), tls)


if __name__ == "__main__":
    main()
