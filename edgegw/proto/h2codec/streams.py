"""Stream states (RFC 9113 section 5.1) as one transition table.

``TRANSITIONS[(state, input)]`` is the next state; a pair missing from the
table is a fault, and whose fault it is follows from the input: a ``RECV_*``
input is the peer's (a stream error STREAM_CLOSED, or a connection error for
frames on idle streams, decided by the connection), a ``SEND_*`` input is
ours (``StreamClosedError``). Server push is never enabled, so the reserved
states do not exist here.

States and inputs are plain ints, not ``enum`` members: the table is looked
up several times per request, and an enum member hashes in Python code
(``Final``: compiled with mypyc, they are constants).
``FLAT`` is the same table as a list indexed by ``state * 16 + input``, which
the codec's hot paths read without a call or a tuple.
"""

from __future__ import annotations

from typing import Final


class State:
    """Where a stream is in its life."""

    IDLE: Final = 0
    OPEN: Final = 1
    HALF_CLOSED_LOCAL: Final = 2  # we sent END_STREAM
    HALF_CLOSED_REMOTE: Final = 3  # the peer sent END_STREAM
    CLOSED: Final = 4


class Input:
    """What happens to a stream; ``RECV_*`` inputs are the peer's doing."""

    SEND_HEADERS: Final = 0
    SEND_DATA: Final = 1
    SEND_END_STREAM: Final = 2
    SEND_RST: Final = 3
    RECV_HEADERS: Final = 10
    RECV_DATA: Final = 11
    RECV_END_STREAM: Final = 12
    RECV_RST: Final = 13


def is_received(event: int) -> bool:
    """True for the peer's inputs."""
    return event >= Input.RECV_HEADERS


_S, _I = State, Input

TRANSITIONS: dict[tuple[int, int], int] = {
    (_S.IDLE, _I.SEND_HEADERS): _S.OPEN,
    (_S.IDLE, _I.RECV_HEADERS): _S.OPEN,
    (_S.OPEN, _I.SEND_HEADERS): _S.OPEN,
    (_S.OPEN, _I.SEND_DATA): _S.OPEN,
    (_S.OPEN, _I.RECV_HEADERS): _S.OPEN,
    (_S.OPEN, _I.RECV_DATA): _S.OPEN,
    (_S.OPEN, _I.SEND_END_STREAM): _S.HALF_CLOSED_LOCAL,
    (_S.OPEN, _I.RECV_END_STREAM): _S.HALF_CLOSED_REMOTE,
    (_S.OPEN, _I.SEND_RST): _S.CLOSED,
    (_S.OPEN, _I.RECV_RST): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_HEADERS): _S.HALF_CLOSED_LOCAL,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_DATA): _S.HALF_CLOSED_LOCAL,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_END_STREAM): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.SEND_RST): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_RST): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_HEADERS): _S.HALF_CLOSED_REMOTE,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_DATA): _S.HALF_CLOSED_REMOTE,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_END_STREAM): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_RST): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.RECV_RST): _S.CLOSED,
}


FLAT: list[int | None] = [None] * (16 * (_S.CLOSED + 1))
for (_state, _input), _next in TRANSITIONS.items():
    FLAT[_state * 16 + _input] = _next


def next_state(state: int, event: int) -> int | None:
    """The state after ``event``, or None when the stream cannot take it."""
    return FLAT[state * 16 + event]


__all__ = ["FLAT", "TRANSITIONS", "Input", "State", "is_received", "next_state"]
