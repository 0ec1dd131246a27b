"""SETTINGS (RFC 9113 section 6.5.2, RFC 8441): ours, the peer's, and the checks on them."""

from __future__ import annotations

from dataclasses import dataclass

from edgegw.proto.h2codec.errors import ErrorCode, ProtocolError

HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6
ENABLE_CONNECT_PROTOCOL = 0x8

MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65535


@dataclass(frozen=True, slots=True)
class CodecConfig:
    """What we allow a peer, and the abuse limits; in force from our first frame on.

    ``max_header_table_size`` caps the HPACK table our encoder keeps for the peer,
    whatever size the peer offers (a peer's 4 GiB would keep every header we ever
    sent it in memory). ``max_pending_control`` bounds the answers (PING and
    SETTINGS acknowledgements, our RST_STREAMs) queued while the caller has not
    taken our output: a peer that floods and never reads gets GOAWAY
    ENHANCE_YOUR_CALM instead of our memory. ``max_continuation`` bounds the
    frames of one header block. ``malformed_ends_connection``: a malformed
    message (section 8.1.1) ends the connection, not only its stream.
    """

    client_side: bool
    max_concurrent_streams: int = 128
    initial_window_size: int = 1 << 20
    connection_window_size: int = 16 << 20
    max_frame_size: int = 1 << 14
    max_header_list_size: int = 64 * 1024
    enable_connect_protocol: bool = False
    max_header_table_size: int = 4096
    max_pending_control: int = 1000
    max_continuation: int = 64
    max_closed_streams: int = 1024
    malformed_ends_connection: bool = False

    def local_settings(self) -> dict[int, int]:
        """The SETTINGS frame we open with."""
        values = {
            MAX_CONCURRENT_STREAMS: self.max_concurrent_streams,
            INITIAL_WINDOW_SIZE: self.initial_window_size,
            MAX_FRAME_SIZE: self.max_frame_size,
            MAX_HEADER_LIST_SIZE: self.max_header_list_size,
        }
        if self.client_side:
            values[ENABLE_PUSH] = 0
        elif self.enable_connect_protocol:
            values[ENABLE_CONNECT_PROTOCOL] = 1
        return values


class PeerSettings:
    """The peer's settings as they stand (RFC defaults until it says otherwise)."""

    __slots__ = (
        "enable_connect_protocol",
        "enable_push",
        "header_table_size",
        "initial_window_size",
        "max_concurrent_streams",
        "max_frame_size",
        "max_header_list_size",
    )

    def __init__(self) -> None:
        self.header_table_size = 4096
        self.enable_push = 1
        self.max_concurrent_streams = MAX_WINDOW  # "unlimited"
        self.initial_window_size = DEFAULT_WINDOW
        self.max_frame_size = 1 << 14
        self.max_header_list_size = MAX_WINDOW
        self.enable_connect_protocol = 0

    def apply(self, values: dict[int, int]) -> dict[int, int]:
        """Check and take ``values``; returns the known settings that were set.

        Raises:
            ProtocolError: a value out of its range (FLOW_CONTROL_ERROR for a window).
        """
        changed: dict[int, int] = {}
        for code, value in values.items():
            name = _NAMES.get(code)
            if name is None:
                continue  # unknown settings are ignored (section 6.5.2)
            _check(code, value)
            setattr(self, name, value)
            changed[code] = value
        return changed


_NAMES = {
    HEADER_TABLE_SIZE: "header_table_size",
    ENABLE_PUSH: "enable_push",
    MAX_CONCURRENT_STREAMS: "max_concurrent_streams",
    INITIAL_WINDOW_SIZE: "initial_window_size",
    MAX_FRAME_SIZE: "max_frame_size",
    MAX_HEADER_LIST_SIZE: "max_header_list_size",
    ENABLE_CONNECT_PROTOCOL: "enable_connect_protocol",
}


def _check(code: int, value: int) -> None:
    if code in (ENABLE_PUSH, ENABLE_CONNECT_PROTOCOL) and value not in (0, 1):
        raise ProtocolError(f"setting {code:#x} must be 0 or 1")
    if code == INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
        raise ProtocolError("INITIAL_WINDOW_SIZE too large", ErrorCode.FLOW_CONTROL_ERROR)
    if code == MAX_FRAME_SIZE and not (1 << 14) <= value <= (1 << 24) - 1:
        raise ProtocolError("MAX_FRAME_SIZE out of range")


__all__ = ["CodecConfig", "PeerSettings"]
