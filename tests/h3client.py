"""A small HTTP/3 client for tests: aioquic's client side over a trio UDP socket.

Debian's curl has no HTTP/3, so the e2e tests speak it with aioquic's own
``QuicConnection`` and ``H3Connection`` in client mode. One background task
moves datagrams and timers; each request waits on its own stream's events.
"""

from __future__ import annotations

import math
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection


@dataclass
class Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    ended: bool = False
    reset: bool = False
    event: trio.Event = field(default_factory=trio.Event)


class H3Client:
    """One QUIC connection to ``127.0.0.1:port``; use ``h3_connect``."""

    def __init__(self, sock: Any, quic: QuicConnection) -> None:
        """``sock``: a trio UDP socket, or anything with its ``sendto`` and ``recvfrom``."""
        self.sock = sock
        self.quic = quic
        self.h3 = H3Connection(quic)
        self.responses: dict[int, Response] = {}
        self.connected = trio.Event()
        self.terminated: qe.ConnectionTerminated | None = None
        self._wake = trio.Event()

    async def run(self) -> None:
        """Move datagrams and timers until the connection ends."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive)
            while self.terminated is None:
                await self._transmit()
                timer = self.quic.get_timer()
                with trio.move_on_at(timer if timer is not None else math.inf):
                    await self._wake.wait()
                self._wake = trio.Event()
                if timer is not None and trio.current_time() >= timer:
                    self.quic.handle_timer(trio.current_time())
                self._events()
            await self._transmit()
            nursery.cancel_scope.cancel()

    async def _receive(self) -> None:
        while True:
            data, addr = await self.sock.recvfrom(65536)
            self.quic.receive_datagram(data, addr, trio.current_time())
            self._events()
            self._wake.set()

    async def _transmit(self) -> None:
        for data, addr in self.quic.datagrams_to_send(trio.current_time()):
            await self.sock.sendto(data, addr)

    def _events(self) -> None:
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, qe.HandshakeCompleted):
                self.connected.set()
            elif isinstance(event, qe.ConnectionTerminated):
                self.terminated = event
                self.connected.set()
                for rsp in self.responses.values():
                    rsp.event.set()
            elif isinstance(event, qe.StreamReset) and event.stream_id in self.responses:
                self.responses[event.stream_id].reset = True
                self.responses[event.stream_id].event.set()
            for h3_event in self.h3.handle_event(event):
                self._on_h3(h3_event)

    def _on_h3(self, event: H3Event) -> None:
        if not isinstance(event, HeadersReceived | DataReceived):
            return
        rsp = self.responses.get(event.stream_id)
        if rsp is None:
            return
        if isinstance(event, HeadersReceived) and not rsp.status:
            for name, value in event.headers:
                if name == b":status":
                    rsp.status = int(value)
                else:
                    rsp.headers[name.decode()] = value.decode()
        elif isinstance(event, DataReceived):
            rsp.body += event.data
        if event.stream_ended:
            rsp.ended = True
        rsp.event.set()

    def wake(self) -> None:
        self._wake.set()

    def start(
        self,
        method: str,
        path: str,
        authority: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        end: bool = True,
    ) -> int:
        """Send a request head; returns its stream ID."""
        sid = self.quic.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            *((k.lower().encode(), v.encode()) for k, v in headers),
        ]
        self.responses[sid] = Response()
        self.h3.send_headers(sid, fields, end_stream=end)
        self.wake()
        return sid

    def send(self, sid: int, data: bytes, *, end: bool = False) -> None:
        self.h3.send_data(sid, data, end_stream=end)
        self.wake()

    async def response(self, sid: int, *, whole: bool = True) -> Response:
        """Wait for the head (and with ``whole`` the end) of a stream's response."""
        rsp = self.responses[sid]
        while not (rsp.ended or rsp.reset or self.terminated) and (whole or not rsp.status):
            rsp.event = trio.Event()
            await rsp.event.wait()
        return rsp

    async def request(
        self,
        method: str,
        path: str,
        authority: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Response:
        sid = self.start(method, path, authority, headers, end=not body)
        if body:
            self.send(sid, body, end=True)
        return await self.response(sid)


@asynccontextmanager
async def h3_connect(
    port: int, server_name: str, cafile: str, *, alpn: str = "h3"
) -> AsyncIterator[H3Client]:
    """A connected client (the handshake done, or ``terminated`` set when it failed)."""
    config = QuicConfiguration(is_client=True, alpn_protocols=[alpn], server_name=server_name)
    config.load_verify_locations(cafile)
    quic = QuicConnection(configuration=config)
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    quic.connect(("127.0.0.1", port), now=trio.current_time())
    client = H3Client(sock, quic)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run)
            await client.connected.wait()
            yield client
            quic.close()
            await client._transmit()  # CONNECTION_CLOSE out before the task goes
            nursery.cancel_scope.cancel()
    finally:
        sock.close()
