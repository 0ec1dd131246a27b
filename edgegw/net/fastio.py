"""Socket I/O for the HTTP hot path, cheaper than ``trio.SocketStream``.

Theory of operation
-------------------
``trio.SocketStream`` pays for generality on every call: a cancellation check
and a trip through the scheduler after each successful ``recv``/``send``, a
conflict detector, an error-translating context manager. A proxied keep-alive
request does four socket operations, so that overhead dominates it. Here a
``FastSocket`` calls ``os.read``/``os.write`` on the non-blocking descriptor
directly and only enters trio when the kernel says ``EAGAIN``: then it awaits
``trio.lowlevel.wait_readable``/``wait_writable``, which are checkpoints
(cancellation and fairness). Callers that may loop without ever blocking
(pipelined requests) add a ``trio.lowlevel.checkpoint()`` themselves.

Timeouts cost a ``CancelScope`` per wait with trio, several microseconds
each. Instead each wait stores its deadline in the ``FastSocket`` and joins a
per-run set watched by one system task, the ``_Watchdog``. It wakes at most
every ``TICK`` seconds (sooner when a deadline is nearer), and expires every
waiter whose deadline passed: it marks it and calls ``notify_closing`` on its
descriptor, which wakes the wait with ``ClosedResourceError``, turned into
``TimedOut`` here. A timeout may thus fire up to ``TICK`` late. Every timeout
on this path ends with the socket closed, which is what ``notify_closing``
expects. ``cancel()`` expires a waiter at once (draining idle connections).

The socket stays owned by its trio ``SocketStream``: closing that stream is
still how a connection ends. Errors are trio's: ``BrokenResourceError`` for
OS errors, ``ClosedResourceError`` when the socket was closed.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

__all__ = [
    "READ_SIZE",
    "TICK",
    "ByteIO",
    "FastSocket",
    "NonBlockingIO",
    "StreamIO",
    "TimedOut",
    "close_now",
    "open_io",
]

TICK = 0.1
READ_SIZE = 65536  # bytes per read unless a connection asks for fewer
_read = os.read
_write = os.write
_wait_readable = trio.lowlevel.wait_readable
_wait_writable = trio.lowlevel.wait_writable
_now = trio.current_time


class TimedOut(Exception):
    """A wait passed its deadline (or was cancelled by ``FastSocket.cancel``)."""


class _Watchdog:
    """Expires the waits of every ``FastSocket`` of one trio run; see the module docstring."""

    def __init__(self) -> None:
        self.waiting: set[FastSocket] = set()
        self.parked: trio.Event | None = None

    def unpark(self) -> None:
        if self.parked is not None:
            self.parked.set()
            self.parked = None

    async def run(self) -> None:
        waiting = self.waiting
        while True:
            if not waiting:
                self.parked = trio.Event()
                await self.parked.wait()
                continue
            now = _now()
            nearest = now + TICK
            for sock in [s for s in waiting if s.deadline <= now]:
                sock.cancel()
            for sock in waiting:
                nearest = min(nearest, sock.deadline)
            await trio.sleep_until(max(nearest, now + 0.001))


_watchdogs: trio.lowlevel.RunVar[_Watchdog] = trio.lowlevel.RunVar("edgegw_fastio_watchdog")


def _watchdog() -> _Watchdog:
    try:
        return _watchdogs.get()
    except LookupError:
        dog = _Watchdog()
        _watchdogs.set(dog)
        trio.lowlevel.spawn_system_task(dog.run, name="edgegw.fastio.watchdog")
        return dog


class FastSocket:
    """Direct non-blocking I/O on the socket of a ``trio.SocketStream``."""

    __slots__ = ("_dog", "_sock", "deadline", "expired", "fd", "read_size")

    def __init__(self, sock: trio.socket.SocketType, read_size: int = READ_SIZE) -> None:
        self._sock = sock
        self.fd = sock.fileno()
        self._dog = _watchdog()
        self.deadline = math.inf
        self.expired = False
        self.read_size = read_size  # at most this much per read (ClientTrafficPolicy bufferLimit)

    def recv_nowait(self) -> bytes | None:
        """What the kernel holds now (``b""`` at EOF), or ``None`` if nothing yet.

        Raises:
            trio.BrokenResourceError: the connection failed.
        """
        try:
            return _read(self.fd, self.read_size)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise _broken(exc) from exc

    async def recv(self, deadline: float = math.inf, *, wait_first: bool = False) -> bytes:
        """The next bytes (``b""`` at EOF), waiting until ``deadline`` at most.

        ``wait_first`` skips the first read attempt, saving a syscall when the
        peer cannot have answered yet.

        Raises:
            TimedOut: nothing arrived in time, or ``cancel()`` was called.
            trio.BrokenResourceError: the connection failed.
            trio.ClosedResourceError: the socket was closed meanwhile.
        """
        if wait_first:
            await self._wait(_wait_readable, deadline)
        while True:
            try:
                return _read(self.fd, self.read_size)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise _broken(exc) from exc
            await self._wait(_wait_readable, deadline)

    def send_nowait(self, data: bytes) -> int:
        """Write what the kernel takes now, without waiting; returns how many bytes.

        For writers that must not be interrupted half-way (an HTTP/2 frame): when
        everything fits at once, no checkpoint, lock or shield is needed.

        Raises:
            trio.BrokenResourceError, trio.ClosedResourceError: as ``recv``.
        """
        try:
            return _write(self.fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise _broken(exc) from exc

    async def send_all(self, data: bytes, deadline: float = math.inf) -> None:
        """Write all of ``data``, waiting for room until ``deadline`` at most.

        Raises:
            TimedOut, trio.BrokenResourceError, trio.ClosedResourceError: as ``recv``.
        """
        fd = self.fd
        try:
            sent = _write(fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise _broken(exc) from exc
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        while view:
            await self._wait(_wait_writable, deadline)
            try:
                view = view[_write(fd, view) :]
            except BlockingIOError:
                pass
            except OSError as exc:
                raise _broken(exc) from exc

    async def wait_readable(self, deadline: float = math.inf) -> None:
        """Block until the socket is readable (or at EOF).

        Raises:
            TimedOut, trio.ClosedResourceError: as ``recv``.
        """
        await self._wait(_wait_readable, deadline)

    async def _wait(self, wait: Callable[[int], Awaitable[None]], deadline: float) -> None:
        dog = self._dog
        if self.expired:
            raise TimedOut("timed out")
        self.deadline = deadline
        if deadline != math.inf:
            dog.waiting.add(self)
            if dog.parked is not None:
                dog.unpark()
        try:
            await wait(self.fd)
        except trio.ClosedResourceError:
            if self.expired:
                raise TimedOut("timed out") from None
            raise
        finally:
            dog.waiting.discard(self)
            self.deadline = math.inf

    def cancel(self) -> None:
        """Expire the current wait (and any later one) with ``TimedOut``."""
        self.expired = True
        self._dog.waiting.discard(self)
        if self._sock.fileno() == self.fd:  # not closed (and its number not reused)
            trio.lowlevel.notify_closing(self.fd)


class StreamIO:
    """The same interface over any ``trio.abc.Stream`` (TLS, memory streams in tests)."""

    __slots__ = ("_scope", "expired", "read_size", "stream")

    def __init__(self, stream: trio.abc.Stream, read_size: int = READ_SIZE) -> None:
        self.stream = stream
        self._scope: trio.CancelScope | None = None
        self.expired = False
        self.read_size = read_size

    async def recv(self, deadline: float = math.inf, *, wait_first: bool = False) -> bytes:
        """As ``FastSocket.recv``."""
        del wait_first
        if deadline == math.inf and not self.expired:
            return bytes(await self.stream.receive_some(self.read_size))
        receive_before = getattr(self.stream, "receive_before", None)  # TLS keeps deadlines
        if receive_before is not None:
            if self.expired:
                raise TimedOut("timed out")
            return bytes(await receive_before(self.read_size, deadline))
        with self._timeout(deadline):
            return bytes(await self.stream.receive_some(self.read_size))
        raise TimedOut("timed out")

    async def send_all(self, data: bytes, deadline: float = math.inf) -> None:
        """As ``FastSocket.send_all``."""
        if deadline == math.inf and not self.expired:
            return await self.stream.send_all(data)
        with self._timeout(deadline):
            return await self.stream.send_all(data)
        raise TimedOut("timed out")

    def _timeout(self, deadline: float) -> trio.CancelScope:
        scope = self._scope = trio.CancelScope(deadline=deadline)
        if self.expired:
            scope.cancel()
        return scope

    def cancel(self) -> None:
        """As ``FastSocket.cancel``."""
        self.expired = True
        if self._scope is not None:
            self._scope.cancel()
        cancel_wait = getattr(self.stream, "cancel_wait", None)
        if cancel_wait is not None:
            cancel_wait()


class ByteIO(Protocol):
    """What ``FastSocket``, ``StreamIO`` and TLS inline (``tls_stream.TLSIO``) all offer."""

    expired: bool

    async def recv(self, deadline: float = ..., *, wait_first: bool = ...) -> bytes: ...

    async def send_all(self, data: bytes, deadline: float = ...) -> None: ...

    def cancel(self) -> None: ...


class NonBlockingIO(ByteIO, Protocol):
    """A ``ByteIO`` that can also say "nothing yet" without waiting (not ``StreamIO``)."""

    def recv_nowait(self) -> bytes | None: ...


def open_io(stream: trio.abc.Stream, read_size: int | None = None) -> ByteIO:
    """A ``FastSocket`` for a plain ``trio.SocketStream``; what a stream offers as its own
    fast ``byte_io()`` (TLS inline, ``net/tls_stream.py``); else a ``StreamIO``.

    ``read_size`` bounds every read on the connection, the TLS layer's included
    (ClientTrafficPolicy ``connection.bufferLimit``); None keeps ``READ_SIZE``.
    """
    if type(stream) is trio.SocketStream:
        return FastSocket(stream.socket, read_size or READ_SIZE)
    byte_io = getattr(stream, "byte_io", None)
    fast = byte_io(read_size) if byte_io is not None else None
    return fast if fast is not None else StreamIO(stream, read_size or READ_SIZE)


async def close_now(stream: trio.abc.Stream) -> None:
    """Close without ceremony: a plain socket synchronously, anything else forcefully.

    ``trio.aclose_forcefully`` raises and catches a ``Cancelled`` to skip the
    checkpoint of ``SocketStream.aclose``: a quarter of the CPU of a
    one-request connection, twice per connection (py-spy, ``Connection: close``).
    """
    if type(stream) is trio.SocketStream:
        stream.socket.close()
    else:
        await trio.aclose_forcefully(stream)


def _broken(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("socket was closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")
