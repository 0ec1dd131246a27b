"""The floor of any trio HTTP/1.1 proxy on this machine: a reference, not a product.

`bench/http1` runs this next to nginx and edgegw so the ratios can be read
against what trio itself costs here. It does the least a keep-alive proxy can:
one upstream connection per client connection, no routing, no header
rewriting, no validation; a request ends at the blank line (no bodies), a
response at Content-Length. Socket calls go straight to the non-blocking
descriptor and enter trio only on EAGAIN (as edgegw's ``net/fastio`` does).
What it reaches is the ceiling for edgegw, which does all the work this skips.

    python bench/trio_floor.py UPSTREAM_PORT LISTEN_PORT
"""

from __future__ import annotations

import contextlib
import os
import sys

import trio

_END = b"\r\n\r\n"


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


async def _serve(client: trio.SocketStream, upstream_port: int) -> None:
    upstream = await trio.open_tcp_stream("127.0.0.1", upstream_port)
    c, u = client.socket.fileno(), upstream.socket.fileno()
    buf = b""
    try:
        while True:
            while _END not in buf:
                more = await _recv(c)
                if not more:
                    return
                buf += more
            end = buf.index(_END) + 4
            os.write(u, buf[:end])
            buf = buf[end:]
            response = await _response(u)
            if response is None:
                return
            os.write(c, response)
    finally:
        upstream.socket.close()


async def _handler(client: trio.SocketStream, upstream_port: int) -> None:
    with contextlib.suppress(OSError):
        await _serve(client, upstream_port)
    client.socket.close()


async def _serve_all(upstream_port: int, port: int) -> None:
    async def handler(client: trio.SocketStream) -> None:
        await _handler(client, upstream_port)

    await trio.serve_tcp(handler, port, host="127.0.0.1", backlog=4096)


def main() -> None:
    trio.run(_serve_all, int(sys.argv[1]), int(sys.argv[2]))


if __name__ == "__main__":
    main()
