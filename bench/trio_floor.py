"""The floor of any trio HTTP/1.1 proxy on this machine: a reference, not a product.

`bench/http1` runs this next to nginx and edgegw so the ratios can be read
against what trio itself costs here. It does the least a keep-alive proxy can:
no routing, no header rewriting, no validation; a request ends at the blank
line (no bodies), a response at Content-Length; upstream connections are
pooled (LIFO) as edgegw and nginx pool theirs; ``Connection: close`` from the
client closes its connection after the response. Plain sockets are read and
written straight through the non-blocking descriptor, entering trio only on
EAGAIN (as edgegw's ``net/fastio`` does); with ``--tls`` the client side is a
``trio.SSLStream``. What it reaches with keep-alive is the ceiling for edgegw,
which does all the work this skips. It accepts through ``trio.serve_tcp``,
slower per connection than edgegw's accept loop, so it is no ceiling for
``Connection: close`` and `bench/http1` does not run it that way.

    python bench/trio_floor.py UPSTREAM_PORT LISTEN_PORT [--tls CERT KEY]
"""

from __future__ import annotations

import contextlib
import os
import ssl
import sys

import trio

_END = b"\r\n\r\n"
_idle: list[trio.SocketStream] = []


async def _recv(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, 65536)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(fd)


async def _response(fd: int) -> bytes | None:
    data = b""
    while True:
        more = await _recv(fd)
        if not more:
            return None
        data += more
        end = data.find(_END)
        if end < 0:
            continue
        at = data.lower().find(b"content-length:")
        length = int(data[at + 15 : data.index(b"\r\n", at)]) if at >= 0 else 0
        if len(data) >= end + 4 + length:
            return data


async def _forward(head: bytes, upstream_port: int) -> bytes | None:
    upstream = _idle.pop() if _idle else await trio.open_tcp_stream("127.0.0.1", upstream_port)
    fd = upstream.socket.fileno()
    os.write(fd, head)
    response = await _response(fd)
    if response is None:
        upstream.socket.close()
    else:
        _idle.append(upstream)
    return response


class _Client:
    """The client side: raw descriptor I/O for plain TCP, the stream's methods for TLS."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1

    async def recv(self) -> bytes:
        if self.fd >= 0:
            return await _recv(self.fd)
        return bytes(await self.stream.receive_some(65536))

    async def send(self, data: bytes) -> None:
        if self.fd >= 0:
            os.write(self.fd, data)  # a small response fits the socket buffer
        else:
            await self.stream.send_all(data)


async def _serve(client: _Client, upstream_port: int) -> None:
    buf = b""
    while True:
        while _END not in buf:
            more = await client.recv()
            if not more:
                return
            buf += more
        end = buf.index(_END) + 4
        head, buf = buf[:end], buf[end:]
        response = await _forward(head, upstream_port)
        if response is None:
            return
        await client.send(response)
        if b"connection: close" in head.lower():
            return


async def _serve_all(upstream_port: int, port: int, tls: ssl.SSLContext | None) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        client = _Client(trio.SSLStream(stream, tls, server_side=True) if tls else stream)
        with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            await _serve(client, upstream_port)
        stream.socket.close()

    await trio.serve_tcp(handler, port, host="127.0.0.1", backlog=4096)


def main() -> None:
    tls = None
    if len(sys.argv) == 6 and sys.argv[3] == "--tls":
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(sys.argv[4], sys.argv[5])
    trio.run(_serve_all, int(sys.argv[1]), int(sys.argv[2]), tls)


if __name__ == "__main__":
    main()
