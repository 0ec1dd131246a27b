"""A request body kept for retries, while it fits the connection's buffer limit.

Envoy's router keeps the request body it has sent so that a retry can send it
again, up to the stream's buffer limit (``per_connection_buffer_limit_bytes``,
which Envoy Gateway sets from ClientTrafficPolicy ``connection.bufferLimit``
and to 32 KiB without it). Past the limit it drops what it kept and gives up
retrying that request: the client gets the first try's answer. ``ReplayBody``
does the same for routes with a retry policy; without one a body is never
copied. Streaming is unchanged: each piece goes upstream as it arrives, and
the copy costs at most ``limit`` bytes per request.
"""

from __future__ import annotations

from edgegw.net.connection import RequestBody
from edgegw.proto.events import Headers

DEFAULT_LIMIT = 32768  # Envoy Gateway's per-connection buffer limit when the policy sets none


class ReplayBody:
    """``RequestBody`` over ``inner`` that can start over (``rewind``) while it kept it all."""

    __slots__ = ("_inner", "_kept", "_limit", "_next", "_size", "finished", "length", "started")

    def __init__(self, inner: RequestBody, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._kept: list[bytes] | None = []  # None once past the limit
        self._size = 0
        self._next = 0  # the kept piece ``receive`` gives next, when replaying
        self.length = inner.length
        self.started = inner.started
        self.finished = inner.finished

    @property
    def trailers(self) -> Headers:
        """The client's trailers, once its body ended."""
        return self._inner.trailers

    @property
    def replayable(self) -> bool:
        """Whether everything taken so far was kept, so the request can be sent again."""
        return self._kept is not None

    def rewind(self) -> None:
        """Start over: ``receive`` gives the kept pieces again, then the rest of the body."""
        assert self._kept is not None, "rewind of a body past its limit"
        self._next = 0
        self.started = False
        self.finished = self.length == 0

    def take_whole(self, limit: int) -> bytes | None:
        """The whole body at once, as ``H2Body.take_whole``, kept for a retry: the
        client's on the first try, the kept copy after ``rewind``.

        ``None`` (nothing taken) when the body is not all there, is longer than
        ``limit``, or was taken piece by piece.
        """
        kept = self._kept
        if self.started or kept is None:
            return None
        if kept:  # a rewound body: whole only if it was taken whole
            if len(kept) != 1 or not self._inner.finished or self._size > limit:
                return None
            whole: bytes | None = kept[0]
        else:
            take = getattr(self._inner, "take_whole", None)
            whole = take(limit) if take is not None else None
            if whole is None:
                return None
            if len(whole) > self._limit:
                self._kept = None  # past the limit: no retry, as ``receive``
            else:
                kept.append(whole)
                self._size = len(whole)
        self._next = 1
        self.started = self.finished = True
        return whole

    async def receive(self) -> bytes:
        """The next piece: a kept one when replaying, else the client's next one."""
        self.started = True
        kept = self._kept
        if kept is not None and self._next < len(kept):
            self._next += 1
            return kept[self._next - 1]
        if self._inner.finished:
            self.finished = True
            return b""
        data = await self._inner.receive()
        if not data:
            self.finished = True
        elif kept is not None:
            self._size += len(data)
            if self._size > self._limit:
                self._kept = None  # Envoy: "the request is larger than we should buffer"
            else:
                kept.append(data)
                self._next += 1
        return data
