"""The floor of any trio HTTP/1.1 proxy on this machine: a reference, not a product.

`bench/http1` runs this next to nginx and edgegw so the ratios can be read
against what trio itself costs here. It does the least a keep-alive proxy can:
no routing, no header rewriting, no validation; a request ends at the blank
line (no bodies), a response at Content-Length; upstream connections are
pooled (LIFO) as edgegw and nginx pool theirs; ``Connection: close`` from the
client closes its connection after the response. Plain sockets are read and
written straight through the non-blocking descriptor, entering trio only on
EAGAIN (as edgegw's ``net/fastio`` does). What it reaches with keep-alive is the
ceiling for edgegw, which does all the work this skips. It accepts through
``trio.serve_tcp``, slower per connection than edgegw's accept loop, so it is no
ceiling for ``Connection: close`` and `bench/http1` does not run it that way.

HTTPS, three ways (the client side only; the upstream stays plain):

- ``--tls``: a ``trio.SSLStream``, the stdlib's TLS behind trio's Stream interface;
- ``--tls-inline``: TLS inline, as edgegw does it (``net/tls_stream.TLSIO``): a
  pyOpenSSL ``Connection`` on memory BIOs, driven through OpenSSL's ``SSL_read``/
  ``SSL_write`` via pyOpenSSL's cffi bindings; each read decrypts what the socket
  gave, each response is encrypted and written with one ``write``. edgegw needs
  pyOpenSSL (per-listener client-certificate checks, see ``net/tls.py``), so this is
  its honest floor;
- ``--tls-inline-stdlib``: the same loop on the stdlib's ``ssl.SSLObject`` and
  ``ssl.MemoryBIO`` (C, no cffi), to compare.

    python bench/trio_floor.py UPSTREAM_PORT LISTEN_PORT [MODE CERT KEY]

where MODE is ``--tls``, ``--tls-inline`` or ``--tls-inline-stdlib``.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import sys
from typing import Any

import trio
from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

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


class _InlineOpenSSL:
    """TLS inline on a pyOpenSSL ``Connection``'s memory BIOs, calling OpenSSL directly."""

    def __init__(self, stream: trio.SocketStream, ctx: SSL.Context) -> None:
        self.fd = stream.socket.fileno()
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_accept_state()
        self.ssl, self.rbio, self.wbio = self.conn._ssl, self.conn._into_ssl, self.conn._from_ssl
        self.buf = _ffi.new("char[]", 65536)

    async def handshake(self) -> bool:
        while True:
            try:
                self.conn.do_handshake()
                self._flush()
                return True
            except SSL.WantReadError:
                self._flush()
                if not await self._feed():
                    return False

    async def _feed(self) -> bool:
        data = await _recv(self.fd)
        if data:
            _lib.BIO_write(self.rbio, data, len(data))
        return bool(data)

    def _flush(self) -> None:
        pending = _lib.BIO_get_mem_data(self.wbio, _ffi.NULL)
        if pending:
            os.write(self.fd, self.conn.bio_read(pending))

    async def recv(self) -> bytes:
        while True:
            got = _lib.SSL_read(self.ssl, self.buf, 65536)
            if got > 0:
                return bytes(_ffi.unpack(self.buf, got))
            if _lib.SSL_get_error(self.ssl, got) != _lib.SSL_ERROR_WANT_READ:
                return b""
            if not await self._feed():
                return b""

    async def send(self, data: bytes) -> None:
        _lib.SSL_write(self.ssl, data, len(data))  # a small response: one record
        got = _lib.BIO_read(self.wbio, self.buf, 65536)
        os.write(self.fd, _ffi.buffer(self.buf, got))  # fits the socket buffer


class _InlineStdlib:
    """The same on the stdlib's ``ssl.SSLObject`` and ``ssl.MemoryBIO``."""

    def __init__(self, stream: trio.SocketStream, ctx: ssl.SSLContext) -> None:
        self.fd = stream.socket.fileno()
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)

    async def handshake(self) -> bool:
        while True:
            try:
                self.obj.do_handshake()
                os.write(self.fd, self.outgoing.read())
                return True
            except ssl.SSLWantReadError:
                if self.outgoing.pending:
                    os.write(self.fd, self.outgoing.read())
                if not await self._feed():
                    return False

    async def _feed(self) -> bool:
        data = await _recv(self.fd)
        if data:
            self.incoming.write(data)
        return bool(data)

    async def recv(self) -> bytes:
        while True:
            if self.incoming.pending or self.obj.pending():  # no WantRead exception per read
                try:
                    return self.obj.read(65536)
                except ssl.SSLWantReadError:
                    pass
            if not await self._feed():
                return b""

    async def send(self, data: bytes) -> None:
        self.obj.write(data)
        os.write(self.fd, self.outgoing.read())  # a small response fits the socket buffer


Endpoint = _Client | _InlineOpenSSL | _InlineStdlib


async def _serve(client: Endpoint, upstream_port: int) -> None:
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


def _endpoint(stream: trio.SocketStream, mode: str, tls: Any) -> Endpoint:
    if mode == "--tls":
        return _Client(trio.SSLStream(stream, tls, server_side=True))
    if mode == "--tls-inline":
        return _InlineOpenSSL(stream, tls)
    if mode == "--tls-inline-stdlib":
        return _InlineStdlib(stream, tls)
    return _Client(stream)


async def _serve_all(upstream_port: int, port: int, mode: str, tls: Any) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        client = _endpoint(stream, mode, tls)
        with contextlib.suppress(
            OSError, trio.BrokenResourceError, trio.ClosedResourceError, SSL.Error, ssl.SSLError
        ):
            if isinstance(client, _Client) or await client.handshake():
                await _serve(client, upstream_port)
        stream.socket.close()

    await trio.serve_tcp(handler, port, host="127.0.0.1", backlog=4096)


def tls_context(mode: str, cert: str, key: str) -> Any:
    """The server context for ``mode``: pyOpenSSL's for ``--tls-inline``, else the stdlib's."""
    if mode == "--tls-inline":
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.use_certificate_chain_file(cert)
        ctx.use_privatekey_file(key)
        return ctx
    std = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    std.load_cert_chain(cert, key)
    return std


def main() -> None:
    mode, tls = "", None
    if len(sys.argv) == 6 and sys.argv[3] in ("--tls", "--tls-inline", "--tls-inline-stdlib"):
        mode = sys.argv[3]
        tls = tls_context(mode, sys.argv[4], sys.argv[5])
    trio.run(_serve_all, int(sys.argv[1]), int(sys.argv[2]), mode, tls)


if __name__ == "__main__":
    main()
