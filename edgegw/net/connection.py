"""An upstream connection and what every upstream exchange shares: errors, limits, bodies.

Errors, translated from trio/OS errors at this boundary (by the pool, the
dialler's caller, and the exchanges)::

    UpstreamError
    ├── ConnectError      could not connect (refused, unreachable, timeout, DNS) → 503
    ├── UpstreamTimeout   no (complete) answer in time → 504
    ├── UpstreamBroken    the connection failed or the peer broke HTTP → 502
    │   └── UpstreamReset closed or reset before any byte of an answer → 503
    └── Overflow          a circuit-breaker limit refused the request → 503, never retried
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import trio

from edgegw import ir
from edgegw.net.fastio import FastSocket, TimedOut, open_io
from edgegw.proto.events import HeaderList, Headers
from edgegw.proto.http1 import ResponseParser, serialize_request_head

_HEAD_KEPT = 4096  # the longest serialised request head a connection keeps for the next


class UpstreamError(Exception):
    """Base of the upstream errors; ``status`` is what the client should get."""

    status = 502


class ConnectError(UpstreamError):
    status = 503


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamBroken(UpstreamError):
    status = 502


class UpstreamReset(UpstreamBroken):
    """Closed or reset before any byte of an answer: 503, as Envoy answers it."""

    status = 503


class Overflow(UpstreamError):
    """A BackendTrafficPolicy circuit-breaker limit was reached: 503 at once (Envoy's overflow)."""

    status = 503


@dataclass(frozen=True, slots=True)
class UpstreamLimits:
    connect_timeout: float = 5.0
    idle_timeout: float = 30.0  # how long an idle pooled connection is kept
    # Idle at least this long before reuse, a connection is first read without waiting for
    # the peer's close: upstreams close idle keep-alive connections after seconds, and the
    # check costs a syscall that a connection handed back a moment ago does not need.
    close_check_after: float = 0.5
    max_idle_per_endpoint: int = 256
    read_timeout: float = 60.0  # silence from the upstream while we wait for bytes


EndpointKey = tuple[str, str, int, "ir.BackendTLS | None"]


class UpstreamConnection:
    """One connection to one endpoint; ``reused`` if it served a request before.

    Plain sockets are driven through a ``FastSocket``, other streams (TLS)
    through their trio ``Stream`` interface; ``io`` is either.
    """

    __slots__ = (
        "_head",
        "_wire",
        "address",
        "idle_since",
        "io",
        "key",
        "max_requests",
        "parser",
        "recv_nowait",
        "reused",
        "send_nowait",
        "served",
        "stream",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        key: EndpointKey,
        address: str,
        reused: bool = False,
        idle_since: float = 0.0,
    ) -> None:
        self.stream = stream
        self.io = open_io(stream)
        # What is here already, without waiting (None: nothing yet); None for a StreamIO.
        self.recv_nowait: Callable[[], bytes | None] | None = getattr(self.io, "recv_nowait", None)
        # What the kernel takes at once, without waiting; None for a StreamIO.
        self.send_nowait: Callable[[bytes], int] | None = getattr(self.io, "send_nowait", None)
        self.key = key
        self.address = address  # "ip:port" or the socket path, for logs
        self.reused = reused
        self.idle_since = idle_since
        self.parser: ResponseParser | None = None  # kept from the last exchange, for reuse
        self.served = 0  # exchanges finished on it
        self.max_requests = 0  # circuitBreaker maxRequestsPerConnection; 0: unlimited
        self._head: tuple[bytes, bytes, HeaderList] | None = None  # the last head serialised
        self._wire = b""

    def request_head(self, head: tuple[bytes, bytes, HeaderList]) -> bytes:
        """``head`` (method, target, fields) serialised, the last one kept for the next.

        Clients repeat their requests, so the next head on this connection is often
        the same; comparing it costs a fraction of serialising it (its fields are the
        same objects when ``decide`` reused the head). Kept: a copy, at most
        ``_HEAD_KEPT`` bytes.
        """
        if head == self._head:
            return self._wire
        wire = serialize_request_head(*head)
        if len(wire) <= _HEAD_KEPT:
            self._head, self._wire = (head[0], head[1], list(head[2])), wire
        return wire

    async def send_all(self, data: bytes) -> None:
        """Write, translating transport failures to ``UpstreamBroken``."""
        try:
            await self.io.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise UpstreamBroken(f"upstream {self.address}: {exc}") from exc

    def sent_at_once(self, data: bytes) -> int:
        """How much of ``data`` the kernel took at once, without waiting.

        0 where the stream cannot write without waiting (TLS through a trio
        stream): ``send_all`` sends the rest, whatever it is.

        Raises:
            UpstreamBroken: the connection failed.
        """
        send_nowait = self.send_nowait
        if send_nowait is None:
            return 0
        try:
            return send_nowait(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise UpstreamBroken(f"upstream {self.address}: {exc}") from exc

    async def receive_some(self, deadline: float = math.inf, *, wait_first: bool = False) -> bytes:
        """Read, translating transport failures to ``UpstreamBroken``.

        Raises:
            UpstreamBroken: the connection failed.
            UpstreamTimeout: nothing arrived before ``deadline``.
        """
        try:
            return await self.io.recv(deadline, wait_first=wait_first)
        except TimedOut:
            raise UpstreamTimeout(f"upstream {self.address} timed out") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise UpstreamBroken(f"upstream {self.address}: {exc}") from exc

    def seen_closed(self) -> bool:
        """Whether an idle connection already shows the peer's EOF (or stray bytes).

        One non-blocking read, as httpcore checks idle connections: a keep-alive
        connection the upstream closed while idle is dropped before any request
        is written to it. TLS streams cannot be read without waiting; they are
        taken as alive.
        """
        if not isinstance(self.io, FastSocket):
            return False
        try:
            return self.io.recv_nowait() is not None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return True

    def close(self) -> None:
        """Close without awaiting, so pool decisions stay synchronous.

        Sockets close synchronously; a TLS stream is closed through its transport
        (no close_notify, which an upstream does not need).
        """
        if self.parser is not None:
            self.parser.release()
            self.parser = None
        stream: object = self.stream
        while not isinstance(stream, trio.SocketStream) and hasattr(stream, "transport_stream"):
            stream = stream.transport_stream
        if isinstance(stream, trio.SocketStream):
            stream.socket.close()
        elif callable(close := getattr(stream, "close", None)):
            close()


class ConnectionSource(Protocol):
    """What an exchange needs of the pool: connections, their return, the limits."""

    limits: UpstreamLimits

    async def acquire(
        self, endpoint: ir.Endpoint, backend: ir.Backend, *, fresh: bool = False
    ) -> UpstreamConnection: ...

    def reuse(self, endpoint: ir.Endpoint, backend: ir.Backend) -> UpstreamConnection | None: ...

    def release(self, conn: UpstreamConnection, *, reusable: bool) -> None: ...


class RequestBody(Protocol):
    """A request body as the front end delivers it, whatever the client protocol.

    ``length`` is 0 for no body, ``None`` when unknown (chunked, HTTP/2 DATA).
    ``started`` turns True once any byte was taken: from then on the request
    cannot be sent again (retried).
    """

    length: int | None
    started: bool
    finished: bool

    @property
    def trailers(self) -> Headers:
        """Trailers that ended the body: sent on over chunked HTTP/1.1 or HTTP/2."""
        ...

    async def receive(self) -> bytes:
        """The next piece; ``b""`` at the end."""
        ...


def describe_endpoint(endpoint: ir.Endpoint) -> str:
    if endpoint.kind == "unix":
        return endpoint.address
    if ":" in endpoint.address:
        return f"[{endpoint.address}]:{endpoint.port}"
    return f"{endpoint.address}:{endpoint.port}"


@contextmanager
def collapse_groups() -> Iterator[None]:
    """Re-raise a lone exception out of a nursery's group, so callers can catch it by type."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            raise group.exceptions[0] from None
        raise
