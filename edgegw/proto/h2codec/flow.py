"""Per-stream bookkeeping and flow-control windows (RFC 9113 sections 5.1 and 5.2)."""

from __future__ import annotations

from edgegw.proto.h2codec.streams import State

MAX_WINDOW = 2**31 - 1


class InboundWindow:
    """What the peer may still send us, and when to hand consumed bytes back.

    Bytes count as consumed only when the caller acknowledges them (so a slow
    consumer slows the sender). They go back in one WINDOW_UPDATE once half the
    window was consumed, or, with the window shut, after 1 KiB (or a quarter of
    a small window): few updates for many small frames, never a stuck stream.
    """

    __slots__ = ("available", "consumed", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.available = size
        self.consumed = 0

    def receive(self, length: int) -> bool:
        """Take ``length`` flow-controlled bytes; False when they do not fit."""
        if length > self.available:
            return False
        self.available -= length
        return True

    def acknowledge(self, length: int) -> int:
        """Mark ``length`` bytes consumed; returns the increment to send now, or 0."""
        self.consumed += length
        consumed = self.consumed
        if consumed >= self.size // 2 or (
            self.available == 0 and consumed >= min(1024, self.size // 4)
        ):
            self.available += consumed
            self.consumed = 0
            return consumed
        return 0

    def grow(self, increment: int) -> None:
        """We raised the window (WINDOW_UPDATE sent by the caller)."""
        self.size += increment
        self.available += increment


class Stream:
    """One stream's state, windows and body accounting."""

    __slots__ = (
        "expected",
        "inbound",
        "peer_ended",
        "received",
        "response_seen",
        "send_window",
        "state",
        "stream_id",
    )

    def __init__(self, stream_id: int, send_window: int, receive_window: int) -> None:
        self.stream_id = stream_id
        self.state = State.IDLE
        self.send_window = send_window
        self.inbound = InboundWindow(receive_window)
        self.expected: int | None = None  # content-length, when the peer sent one
        self.received = 0  # body bytes the peer sent
        self.peer_ended = False
        self.response_seen = False  # client side: the final response head arrived


__all__ = ["MAX_WINDOW", "InboundWindow", "Stream"]
