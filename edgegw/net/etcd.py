"""A small typed etcd v3 client on etcd's JSON gateway (``/v3/...``), over httpx under trio.

Why this shape: the gRPC etcd clients for Python are stale (``etcd3`` no longer imports with
protobuf 4) or asyncio-only (``aetcd``, ``etcd3aio``). etcd serves the same v3 API as JSON over
HTTP on its client port (3.4 to 3.6), and httpx runs under trio through anyio, so leases,
transactions and watches need no code generation and no second event loop.

Theory of operation
-------------------
Every call is one ``POST`` of a JSON body to one member. Keys and values travel as base64 and
64-bit numbers as strings; absent fields mean their zero value (msgspec decodes both with
``strict=False``). When a member does not answer (refused, reset, timed out) or answers that it
has no leader, the call moves on to the next member of ``--cluster``, so a dead member costs one
timeout, and the next call starts from the member that answered last.

`watch` is a chunked stream of JSON lines (``{"result": {...}}``). When its member dies, loses
its leader (the ``hasleader`` metadata asks etcd to end the stream then) or the stream breaks,
`watch` reconnects to the next member and resumes from the last revision seen + 1, so no event
is lost or repeated. A compacted start revision raises `EtcdCompacted`: the caller re-reads.

Errors::

    EtcdError
    ├── EtcdUnavailable     no member answered in time
    ├── EtcdCompacted       a watch asked for a revision etcd no longer has
    └── EtcdRequestError    a member refused the request (its gRPC code and message)
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import msgspec
import trio

LEASE_NOT_FOUND = 5
UNAVAILABLE = 14
MAX_LINE = 16 * 1024 * 1024
_NO_LEADER = ("no leader", "leader changed")


class EtcdError(Exception):
    """Base of every etcd client error."""


class EtcdUnavailable(EtcdError):
    """No member of the cluster answered."""


class EtcdCompacted(EtcdError):
    """A watch start revision was compacted away; re-read and watch from the new revision."""


class EtcdRequestError(EtcdError):
    """A member answered with an error object."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"etcd error {code}: {message}")
        self.code = code


class KeyValue(msgspec.Struct, frozen=True):
    """One key as etcd stores it (``lease`` 0: the key outlives every client)."""

    key: bytes = b""
    value: bytes = b""
    lease: int = 0
    create_revision: int = 0
    mod_revision: int = 0


class Event(msgspec.Struct, frozen=True):
    """One change seen by a watch; a DELETE's ``kv`` holds only key and mod_revision."""

    kv: KeyValue
    type: Literal["PUT", "DELETE"] = "PUT"


class _Header(msgspec.Struct):
    revision: int = 0
    member_id: int = 0


class _Range(msgspec.Struct):
    header: _Header = msgspec.field(default_factory=_Header)
    kvs: list[KeyValue] = []


class _Grant(msgspec.Struct):
    ID: int = 0
    TTL: int = 0


class _KeepAlive(msgspec.Struct):
    result: _Grant = msgspec.field(default_factory=_Grant)


class _TxnResponse(msgspec.Struct):
    response_range: _Range | None = None


class _Txn(msgspec.Struct):
    header: _Header = msgspec.field(default_factory=_Header)
    succeeded: bool = False
    responses: list[_TxnResponse] = []


class _WatchResult(msgspec.Struct):
    header: _Header = msgspec.field(default_factory=_Header)
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    events: list[Event] = []


class _WatchLine(msgspec.Struct):
    result: _WatchResult | None = None
    error: Any = None
    code: int = 0
    message: str = ""


class _Error(msgspec.Struct):
    code: int = 0
    message: str = ""
    error: str = ""


class Member(msgspec.Struct, frozen=True):
    """One etcd member as ``cluster/member/list`` gives it."""

    ID: int = 0
    name: str = ""
    clientURLs: list[str] = []  # etcd's field names
    isLearner: bool = False


class _Members(msgspec.Struct):
    members: list[Member] = []


class MemberStatus(msgspec.Struct, frozen=True):
    """``maintenance/status`` of one member: its version and whom it follows."""

    header: _Header = msgspec.field(default_factory=_Header)
    version: str = ""
    leader: int = 0


@dataclass(frozen=True, slots=True)
class Compare:
    """One txn comparison: ``target`` of ``key`` compared with ``value`` by ``result``."""

    key: bytes
    target: Literal["CREATE", "LEASE", "VALUE", "MOD"]
    value: int | bytes
    result: Literal["EQUAL", "NOT_EQUAL", "GREATER", "LESS"] = "EQUAL"

    def to_json(self) -> dict[str, Any]:
        field_name = {"CREATE": "create_revision", "LEASE": "lease", "MOD": "mod_revision"}
        body: dict[str, Any] = {"key": _b64(self.key), "target": self.target,
                                "result": self.result}  # fmt: skip
        if isinstance(self.value, bytes):
            body["value"] = _b64(self.value)
        else:
            body[field_name.get(self.target, "create_revision")] = str(self.value)
        return body


@dataclass(frozen=True, slots=True)
class Put:
    """A txn operation: put ``value`` at ``key``, bound to ``lease`` unless 0."""

    key: bytes
    value: bytes
    lease: int = 0

    def to_json(self) -> dict[str, Any]:
        put = {"key": _b64(self.key), "value": _b64(self.value)}
        return {"request_put": put | ({"lease": str(self.lease)} if self.lease else {})}


@dataclass(frozen=True, slots=True)
class Delete:
    """A txn operation: delete ``key``."""

    key: bytes

    def to_json(self) -> dict[str, Any]:
        return {"request_delete_range": {"key": _b64(self.key)}}


@dataclass(frozen=True, slots=True)
class Get:
    """A txn operation: read ``key`` (its value comes back in `TxnResult.kvs`)."""

    key: bytes

    def to_json(self) -> dict[str, Any]:
        return {"request_range": {"key": _b64(self.key)}}


Operation = Put | Delete | Get


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Whether the comparisons held, the revision after, and what `Get` operations read."""

    succeeded: bool
    revision: int
    kvs: tuple[KeyValue, ...] = ()


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """``etcds://``: the CA to trust and, for client authentication, a certificate and key."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca)
        if self.cert:
            context.load_cert_chain(self.cert, self.key)
        return context


def parse_cluster(value: str) -> tuple[list[str], bool]:
    """``etcd://H:P[,H:P…]`` or ``etcds://…`` → member base URLs and whether TLS is used.

    Raises:
        ValueError: another scheme, or no member.
    """
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("etcd", "etcds"):
        raise ValueError(f"--cluster {value!r}: expected etcd://HOST:PORT[,HOST:PORT...]")
    members = [m.strip().rstrip("/") for m in rest.split(",") if m.strip()]
    if not members:
        raise ValueError(f"--cluster {value!r}: no member given")
    tls = scheme == "etcds"
    return [f"{'https' if tls else 'http'}://{m}" for m in members], tls


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes a range or watch cover every key starting with ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


@dataclass(slots=True)
class EtcdClient:
    """Calls one member at a time, moving to the next when one does not answer.

    Use as ``async with EtcdClient(urls) as client``; ``timeout`` bounds each attempt.
    """

    endpoints: Sequence[str]
    tls: TLSFiles | None = None
    timeout: float = 2.0
    _current: int = 0
    _http: httpx.AsyncClient | None = field(default=None, repr=False)

    async def __aenter__(self) -> EtcdClient:
        verify: ssl.SSLContext | bool = self.tls.context() if self.tls else True
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=8)
        self._http = httpx.AsyncClient(verify=verify, limits=limits, trust_env=False)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._http is not None:
            with trio.CancelScope(shield=True):
                await self._http.aclose()
            self._http = None

    @property
    def endpoint(self) -> str:
        """The member the next call goes to first."""
        return self.endpoints[self._current % len(self.endpoints)]

    # --- leases ---------------------------------------------------------------------------

    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease; returns its (ID, TTL in seconds)."""
        body = await self._post("/v3/lease/grant", {"TTL": str(ttl)})
        grant = msgspec.convert(body, _Grant, strict=False)
        return grant.ID, grant.TTL

    async def keepalive(self, lease: int, per_try: float | None = None) -> int:
        """Renew ``lease`` once; returns the TTL granted, 0 when the lease is gone."""
        body = await self._post("/v3/lease/keepalive", {"ID": str(lease)}, per_try)
        return msgspec.convert(body, _KeepAlive, strict=False).result.TTL

    async def revoke(self, lease: int) -> None:
        """Revoke ``lease``: every key bound to it is deleted at once. A gone lease is fine."""
        try:
            await self._post("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdRequestError as exc:
            if exc.code != LEASE_NOT_FOUND:
                raise

    # --- keys -----------------------------------------------------------------------------

    async def range(self, key: bytes, *, prefix: bool = False) -> tuple[int, list[KeyValue]]:
        """Read ``key`` (or every key under it); returns (revision, kvs)."""
        body: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(key))
        found = msgspec.convert(await self._post("/v3/kv/range", body), _Range, strict=False)
        return found.header.revision, found.kvs

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        """Write ``key``; returns the new revision."""
        body = Put(key, value, lease).to_json()["request_put"]
        answer = msgspec.convert(await self._post("/v3/kv/put", body), _Range, strict=False)
        return answer.header.revision

    async def delete(self, key: bytes) -> int:
        """Delete ``key``; returns the revision after."""
        body = {"key": _b64(key)}
        answer = await self._post("/v3/kv/deleterange", body)
        return msgspec.convert(answer, _Range, strict=False).header.revision

    async def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[Operation],
        failure: Sequence[Operation] = (),
    ) -> TxnResult:
        """Run ``success`` if every comparison holds, else ``failure``, atomically."""
        body = {
            "compare": [c.to_json() for c in compare],
            "success": [o.to_json() for o in success],
            "failure": [o.to_json() for o in failure],
        }
        answer = msgspec.convert(await self._post("/v3/kv/txn", body), _Txn, strict=False)
        kvs = tuple(kv for r in answer.responses if r.response_range for kv in r.response_range.kvs)
        return TxnResult(answer.succeeded, answer.header.revision, kvs)

    # --- cluster --------------------------------------------------------------------------

    async def members(self) -> list[Member]:
        """The members as the cluster lists them."""
        body = await self._post("/v3/cluster/member/list", {})
        return msgspec.convert(body, _Members, strict=False).members

    async def status(self, url: str, per_try: float = 1.0) -> MemberStatus:
        """``maintenance/status`` of the member at ``url`` itself (no failover)."""
        body = await self._post_to(url, "/v3/maintenance/status", {}, per_try)
        return msgspec.convert(body, MemberStatus, strict=False)

    # --- watch ----------------------------------------------------------------------------

    async def watch(self, key: bytes, start_revision: int) -> AsyncIterator[list[Event]]:
        """Every change under the prefix ``key`` from ``start_revision`` on, in batches.

        Reconnects to the next member when a stream ends and resumes after the last event.

        Raises:
            EtcdCompacted: ``start_revision`` (or a resume point) was compacted.
        """
        next_revision = start_revision
        while True:
            try:
                async for events in self._watch_once(key, next_revision):
                    next_revision = max(next_revision, events[-1].kv.mod_revision + 1)
                    yield events
            except (httpx.TransportError, EtcdUnavailable, trio.TooSlowError):
                pass
            self._current += 1
            await trio.sleep(0.05 if self._current % len(self.endpoints) else 0.5)

    async def _watch_once(self, key: bytes, revision: int) -> AsyncIterator[list[Event]]:
        assert self._http is not None, "use EtcdClient as an async context manager"
        request = {"key": _b64(key), "range_end": _b64(prefix_end(key)),
                   "start_revision": str(revision)}  # fmt: skip
        headers = {"Grpc-Metadata-hasleader": "true"}
        url = self.endpoint + "/v3/watch"
        with trio.fail_after(self.timeout):
            timeout = httpx.Timeout(self.timeout, read=None)
            body = {"create_request": request}
            built = self._http.build_request(
                "POST", url, json=body, headers=headers, timeout=timeout
            )
            response = await self._http.send(built, stream=True)
        try:
            async for line in response.aiter_lines():
                if len(line) > MAX_LINE:
                    raise EtcdUnavailable("watch line too long")
                events = _watch_events(line)
                if events:
                    yield events
        finally:
            await response.aclose()

    # --- transport ------------------------------------------------------------------------

    async def _post(self, path: str, body: dict[str, Any], per_try: float | None = None) -> Any:
        last: Exception | None = None
        for _ in range(len(self.endpoints)):
            url = self.endpoint
            try:
                return await self._post_to(url, path, body, per_try or self.timeout)
            except (EtcdUnavailable, trio.TooSlowError) as exc:
                last = exc
                self._current += 1
        raise EtcdUnavailable(f"no etcd member answered {path}: {last}")

    async def _post_to(self, url: str, path: str, body: dict[str, Any], per_try: float) -> Any:
        assert self._http is not None, "use EtcdClient as an async context manager"
        try:
            with trio.fail_after(per_try):
                response = await self._http.post(url + path, json=body, timeout=per_try)
        except (httpx.TransportError, trio.TooSlowError) as exc:
            raise EtcdUnavailable(f"{url}: {exc!r}") from exc
        try:
            answer = msgspec.json.decode(response.content)
        except msgspec.DecodeError as exc:
            raise EtcdUnavailable(f"{url}{path}: answer is not JSON") from exc
        if response.status_code != 200 or (isinstance(answer, dict) and "error" in answer):
            error = msgspec.convert(answer, _Error, strict=False)
            message = error.message or error.error or f"HTTP {response.status_code}"
            if error.code == UNAVAILABLE or any(m in message for m in _NO_LEADER):
                raise EtcdUnavailable(f"{url}: {message}")
            raise EtcdRequestError(error.code, message)
        return answer


def _watch_events(line: str) -> list[Event]:
    """The events of one watch line; raises when the line ends the stream."""
    if not line.strip():
        return []
    parsed = msgspec.json.decode(line, type=_WatchLine, strict=False)
    result = parsed.result
    if result is None:
        raise EtcdUnavailable(f"watch ended: {parsed.message or parsed.error}")
    if result.compact_revision:
        raise EtcdCompacted(f"revision compacted up to {result.compact_revision}")
    if result.canceled:
        raise EtcdUnavailable(f"watch canceled: {result.cancel_reason}")
    return result.events


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
