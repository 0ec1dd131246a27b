"""``ReplayBody``: a body sent again from its start while it was kept whole."""

from __future__ import annotations

import pytest
import trio

from edgegw.net.replay import ReplayBody
from edgegw.proto.events import Headers


class FakeBody:
    """A client body of known pieces; ``receive`` after the end is a bug in the caller."""

    def __init__(self, *pieces: bytes, trailers: Headers = ()) -> None:
        self.pieces = list(pieces)
        self.length: int | None = None
        self.started = False
        self.finished = False
        self.trailers = trailers

    async def receive(self) -> bytes:
        assert not self.finished, "read past the end"
        self.started = True
        if not self.pieces:
            self.finished = True
            return b""
        return self.pieces.pop(0)


async def _drain(body: ReplayBody, count: int | None = None) -> list[bytes]:
    got: list[bytes] = []
    while count is None or len(got) < count:
        piece = await body.receive()
        if not piece:
            break
        got.append(piece)
    return got


async def test_rewound_mid_body_then_the_rest_follows() -> None:
    inner = FakeBody(b"aa", b"bb", b"cc", trailers=((b"x-t", b"1"),))
    body = ReplayBody(inner, 10)
    with trio.fail_after(5):
        assert await _drain(body, 2) == [b"aa", b"bb"]
        assert body.replayable
        body.rewind()
        assert (body.started, body.finished) == (False, False)
        assert await _drain(body) == [b"aa", b"bb", b"cc"]
        assert (body.started, body.finished) == (True, True)
        body.rewind()  # a third try: everything from the copy
        assert await _drain(body) == [b"aa", b"bb", b"cc"]
    assert body.trailers == ((b"x-t", b"1"),)


async def test_past_the_limit_nothing_is_kept_and_no_rewind() -> None:
    body = ReplayBody(FakeBody(b"a" * 6, b"b" * 6), 10)
    with trio.fail_after(5):
        assert await _drain(body) == [b"a" * 6, b"b" * 6]  # streaming goes on
    assert not body.replayable
    with pytest.raises(AssertionError):
        body.rewind()


async def test_exactly_the_limit_is_kept() -> None:
    body = ReplayBody(FakeBody(b"a" * 5, b"b" * 5), 10)
    with trio.fail_after(5):
        await _drain(body)
    assert body.replayable


class WholeBody(FakeBody):
    """A client body that arrived whole, as the HTTP/1.1 and HTTP/2 front ends offer it."""

    def take_whole(self, limit: int) -> bytes | None:
        data = b"".join(self.pieces)
        if self.started or len(data) > limit:
            return None
        self.pieces.clear()
        self.started = self.finished = True
        return data


async def test_a_body_taken_whole_is_taken_whole_again_after_a_rewind() -> None:
    body = ReplayBody(WholeBody(b"ab", b"cd"), 10)
    assert body.take_whole(3) is None  # longer than asked for: nothing taken
    assert body.take_whole(100) == b"abcd"
    assert (body.started, body.finished, body.replayable) == (True, True, True)
    body.rewind()
    assert body.take_whole(100) == b"abcd"
    body.rewind()
    with trio.fail_after(5):
        assert await _drain(body) == [b"abcd"]  # or piece by piece, as a pump takes it


async def test_a_whole_body_past_the_limit_goes_once_and_is_not_kept() -> None:
    body = ReplayBody(WholeBody(b"a" * 20), 10)
    assert body.take_whole(100) == b"a" * 20
    assert not body.replayable


async def test_a_body_taken_in_pieces_is_not_whole_after_a_rewind() -> None:
    body = ReplayBody(FakeBody(b"aa", b"bb"), 10)
    with trio.fail_after(5):
        assert await _drain(body) == [b"aa", b"bb"]
        body.rewind()
        assert body.take_whole(100) is None
        assert await _drain(body) == [b"aa", b"bb"]
