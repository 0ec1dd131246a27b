"""What the HTTP/2 and HTTP/3 response writers share: the head held back.

Both protocols send a response head as a HEADERS frame that can also end the
stream. Holding the head until the first body bytes, a flush or the end lets a
body-less answer (a gRPC "trailers-only" status, a redirect) leave as one frame
with the end of the stream. The subclass says how a held head is sent
(``_send_pending_head``) and how the stream ends (``end``).
"""

from __future__ import annotations

from edgegw.proto import http2
from edgegw.proto.events import HeaderList, Headers

_DEADLINE = [(b"grpc-status", b"4"), (b"grpc-message", b"Deadline Exceeded")]


class HeldHeadWriter:
    """``ResponseWriter`` state and the methods that only touch the held head."""

    def __init__(self) -> None:
        self._head: HeaderList | None = None
        self._no_body = False
        self.head_request = False
        self.head_sent = False
        self.ended = False
        self.status = 0
        self.bytes_sent = 0

    async def send_head(
        self, status: int, headers: HeaderList, *, content_length: int | None, body: bool
    ) -> None:
        self._head = http2.response_headers(status, headers)
        self._no_body = not body or self.head_request
        self.head_sent = True
        self.status = status

    def _send_pending_head(self, *, end: bool = False) -> None:
        raise NotImplementedError

    async def end(self, trailers: Headers = ()) -> None:
        raise NotImplementedError

    async def simple(self, status: int, headers: HeaderList | None = None) -> None:
        """An answer made here, without body."""
        await self.send_head(
            status, [*(headers or []), (b"content-length", b"0")], content_length=0, body=False
        )
        await self.end()

    async def grpc_deadline_exceeded(self) -> None:
        """The ``grpc-timeout`` passed: status 4, as trailers-only or as trailers."""
        if self.ended:
            return
        if not self.head_sent:
            grpc = [(b"content-type", b"application/grpc"), *_DEADLINE]
            await self.send_head(200, grpc, content_length=0, body=False)
            return await self.end()
        self._send_pending_head()
        await self.end(tuple(_DEADLINE))
        return None
