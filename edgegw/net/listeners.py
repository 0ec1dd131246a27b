"""Listening sockets, kept by ``(transport, address, port)`` across reloads.

Theory of operation
-------------------
A reload must never close a socket it keeps: closing and re-binding would
drop connections queued in the backlog and race other processes for the
port. So sockets are owned here, keyed by bind key, and a reload is a
reconciliation: ``plan()`` compares the keys wanted with the keys held and
says what to open and what to close (a pure decision), then ``open()`` binds
the new ones. Sockets are bound with:

- ``SO_REUSEADDR``, so a restart does not wait out TIME_WAIT;
- ``SO_REUSEPORT`` when several worker processes share the listeners;
- ``IP_FREEBIND``/``IPV6_FREEBIND``, so an address announced later by the L2
  sidecar (or a DHCP lease that comes up late) can be bound now;
- ``IPV6_V6ONLY`` on IPv6, so ``0.0.0.0`` and ``::`` are separate sockets.

Bind failures are data, not exceptions: each becomes a ``BindError`` with the
Gateway API reason the listener's status should carry.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterable

import msgspec
import trio

BindKey = tuple[str, str, int]  # (transport, address, port)

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_FREEBIND = 78
BACKLOG = 4096


class BindError(msgspec.Struct, frozen=True):
    """Why a socket could not be bound, as a Gateway API listener condition reason."""

    reason: str  # PortUnavailable | AddressNotUsable
    message: str


class BindPlan(msgspec.Struct, frozen=True):
    open: tuple[BindKey, ...]
    close: tuple[BindKey, ...]


def plan(held: Iterable[BindKey], wanted: Iterable[BindKey]) -> BindPlan:
    """What to bind and what to release so that exactly ``wanted`` is held."""
    held_set, wanted_set = set(held), set(wanted)
    return BindPlan(
        open=tuple(sorted(wanted_set - held_set)), close=tuple(sorted(held_set - wanted_set))
    )


def bind_socket(key: BindKey, *, reuse_port: bool = False) -> trio.socket.SocketType:
    """Bind one listening socket; raises OSError (see ``classify``)."""
    transport, address, port = key
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            _try_setsockopt(sock, socket.IPPROTO_IPV6, IPV6_FREEBIND)
        else:
            _try_setsockopt(sock, socket.IPPROTO_IP, IP_FREEBIND)
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return trio.socket.from_stdlib_socket(sock)


def _try_setsockopt(sock: socket.socket, level: int, option: int) -> None:
    # Not Linux, or an old kernel: binding an address not yet held fails instead.
    with contextlib.suppress(OSError):
        sock.setsockopt(level, option, 1)


def classify(key: BindKey, exc: OSError) -> BindError:
    """Map a bind error to the listener condition reason users will look for."""
    _, address, port = key
    where = f"{address}:{port}" if ":" not in address else f"[{address}]:{port}"
    if exc.errno == errno.EADDRINUSE:
        return BindError("PortUnavailable", f"{where} is already in use")
    if exc.errno == errno.EACCES:
        return BindError(
            "PortUnavailable",
            f"{where}: permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)",
        )
    return BindError("AddressNotUsable", f"{where}: {exc.strerror or exc}")


class SocketSet:
    """The listening sockets this process holds, by bind key."""

    def __init__(self, *, reuse_port: bool = False) -> None:
        self.reuse_port = reuse_port
        self.sockets: dict[BindKey, trio.socket.SocketType] = {}

    def reconcile(self, wanted: Iterable[BindKey]) -> tuple[BindPlan, dict[BindKey, BindError]]:
        """Bind what is missing and close what is no longer wanted.

        Returns the plan carried out and the keys that could not be bound.
        Callers stop serving the closed keys before calling this.
        """
        decided = plan(self.sockets, wanted)
        for key in decided.close:
            self.sockets.pop(key).close()
        errors: dict[BindKey, BindError] = {}
        for key in decided.open:
            try:
                self.sockets[key] = bind_socket(key, reuse_port=self.reuse_port)
            except OSError as exc:
                errors[key] = classify(key, exc)
        return decided, errors

    def retry(self, key: BindKey) -> BindError | None:
        """Try once more to bind ``key`` (a bind that failed before); None when it is held now."""
        if key in self.sockets:
            return None
        try:
            self.sockets[key] = bind_socket(key, reuse_port=self.reuse_port)
        except OSError as exc:
            return classify(key, exc)
        return None

    def close_all(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()
