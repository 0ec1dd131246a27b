"""Remote JWKS for SecurityPolicy ``jwt``: fetched in the background, never on a request's path.

Theory of operation
-------------------
After each reload the supervisor hands ``reconcile`` every ``remoteJWKS`` of
the new generation. Each distinct one (the same URI through the same backend
is one, whichever policies name it) gets a task in the data plane's nursery
that fetches it through the gateway's own upstream pool (so ``backendRefs``,
BackendTLSPolicy, DNS names and TLS with the system trust store work as they
do for any backend), then sleeps ``cacheDuration`` (Envoy Gateway's default
300 s) after a success, ``failedRefetchDuration`` (1 s) after a failure. A
JWKS that is gone from the config has its task cancelled; one that stays
keeps its keys across reloads.

Requests only read: ``keys`` is a dict lookup (None until the first fetch
succeeded, and the JWT check then answers 401, fails closed); a failed
refetch keeps the keys it had, so an unreachable JWKS server does not lock
out clients with valid tokens. A token whose ``kid`` is not in the set calls
``unknown_kid``, which wakes the task to fetch again, at most once per
``KID_REFETCH_MIN`` seconds (``cacheDuration`` if that is shorter): an
issuer that rotates its keys is picked up within seconds, and a client
inventing ``kid`` values costs the JWKS server one request per interval.

Bounds: each fetch has ``timeout`` (``backendSettings.timeout.http.requestTimeout``,
default 10 s) for the whole exchange, a document over ``MAX_JWKS_BYTES`` is
refused, and ``jwtverify.parse_jwks`` keeps at most ``MAX_KEYS`` keys.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

import trio

from edgegw import ir
from edgegw.net.upstream import UpstreamPool, UpstreamReply
from edgegw.policy.jwt import remote_id
from edgegw.policy.jwtverify import Key, parse_jwks
from edgegw.proto.events import DataReceived, Headers, MessageEnded

log = logging.getLogger("edgegw.jwks")

MAX_JWKS_BYTES = 512 * 1024
KID_REFETCH_MIN = 5.0  # seconds between fetches an unknown kid may cause


class _TooLarge(Exception):
    pass


class _Entry:
    """One remote JWKS: its config, its keys, and the task that keeps them fresh."""

    __slots__ = ("config", "fetched_at", "keys", "scope", "wake")

    def __init__(self, config: ir.RemoteJWKS) -> None:
        self.config = config
        self.keys: tuple[Key, ...] | None = None
        self.scope = trio.CancelScope()
        self.wake = trio.Event()
        self.fetched_at = -math.inf  # when the last fetch started


class JWKSStore:
    """The remote JWKS of the running configuration (``policy.jwt.RemoteKeys``)."""

    def __init__(
        self,
        pool: UpstreamPool,
        nursery: trio.Nursery,
        on_fetch: Callable[[str, str], None] | None = None,
    ) -> None:
        self._pool = pool
        self._nursery = nursery
        self._on_fetch = on_fetch
        self._entries: dict[str, _Entry] = {}

    # --- what requests ask (synchronous) --------------------------------------------------

    def keys(self, remote: str) -> tuple[Key, ...] | None:
        entry = self._entries.get(remote)
        return entry.keys if entry is not None else None

    def unknown_kid(self, remote: str) -> None:
        entry = self._entries.get(remote)
        if entry is not None and not entry.wake.is_set():
            entry.wake.set()

    # --- what a reload tells --------------------------------------------------------------

    def reconcile(self, remotes: Iterable[ir.RemoteJWKS]) -> None:
        """Fetch what is new, forget what is gone, keep the keys of what stays."""
        wanted: dict[str, ir.RemoteJWKS] = {}
        for remote in remotes:
            key = remote_id(remote)
            known = wanted.get(key)
            if known is None or remote.cache_duration < known.cache_duration:
                wanted[key] = remote
        for key in set(self._entries) - set(wanted):
            self._entries.pop(key).scope.cancel()
        for key, remote in wanted.items():
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(remote)
                self._nursery.start_soon(self._keep_fresh, entry)
            entry.config = remote

    # --- the task -------------------------------------------------------------------------

    async def _keep_fresh(self, entry: _Entry) -> None:
        with entry.scope:
            while True:
                entry.fetched_at = trio.current_time()
                ok = await self._fetch(entry)
                config = entry.config
                with trio.move_on_after(config.cache_duration if ok else config.failed_refetch):
                    await entry.wake.wait()
                    gap = min(KID_REFETCH_MIN, config.cache_duration)
                    await trio.sleep_until(entry.fetched_at + gap)
                entry.wake = trio.Event()

    async def _fetch(self, entry: _Entry) -> bool:
        config = entry.config
        try:
            with trio.fail_after(config.timeout):
                status, body = await self._get(config)
            if status != 200:
                raise ValueError(f"HTTP status {status}")
            entry.keys = parse_jwks(body)
        except Exception as exc:  # whatever a JWKS server does, it never ends the gateway
            why = _describe(exc)
            log.warning("JWKS %s: %s; keeping the keys it had", config.uri, why)
            self._count(config.uri, "failure")
            return False
        self._count(config.uri, "success")
        return True

    async def _get(self, config: ir.RemoteJWKS) -> tuple[int, bytes]:
        backend = config.backend
        endpoint = self._pool.choose(backend) if backend.endpoints else None
        if endpoint is None:
            raise ValueError("the backend has no endpoints")
        fields = [
            (b"host", config.host.encode("ascii", "replace")),
            (b"accept", b"application/json"),
        ]
        head = (b"GET", config.target.encode("ascii", "replace"), fields)
        return await self._pool.exchange(endpoint, backend, head, _NoBody(), _read)

    def _count(self, uri: str, result: str) -> None:
        if self._on_fetch is not None:
            self._on_fetch(uri, result)


async def _read(rsp: UpstreamReply) -> tuple[int, bytes]:
    head = rsp.head
    assert head is not None
    body = bytearray()
    while True:
        event = await rsp.next_event()
        if isinstance(event, DataReceived):
            body += event.data
            if len(body) > MAX_JWKS_BYTES:
                raise _TooLarge
        elif isinstance(event, MessageEnded):
            return head.status_code, bytes(body)


def remotes_of(model: ir.Model) -> Iterable[ir.RemoteJWKS]:
    """Every remote JWKS a rule of ``model`` is under (repeats included)."""
    for port in model.ports:
        for listener in port.listeners:
            for route in listener.http_routes:
                for rule in route.rules:
                    jwt = rule.security.jwt if rule.security else None
                    for provider in jwt.providers if jwt else ():
                        if provider.remote_jwks is not None:
                            yield provider.remote_jwks


def _describe(exc: Exception) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    if isinstance(exc, _TooLarge):
        return f"larger than {MAX_JWKS_BYTES} bytes"
    return str(exc) or type(exc).__name__


class _NoBody:
    """A GET carries no body."""

    length: int | None = 0
    started = False
    finished = True
    received = 0
    trailers: Headers = ()

    async def receive(self) -> bytes:
        return b""
