"""What a front end and the proxy core share: the per-connection context and the contracts.

Front ends (HTTP/1.1 in ``net/http.py``, HTTP/2 in ``net/h2server.py``) build an
``HTTPConnectionContext`` per connection, present each request as a
``ProxyRequest`` and answer through a ``ResponseWriter``; ``net/decide.py``
decides and ``net/proxy.py`` carries the plan out. The observer, limits and
drain signal live here too, so that neither side imports the other's internals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec
import trio

from edgegw.net.oidc import OIDCProviders
from edgegw.net.upstream import RequestBody, UpstreamPool
from edgegw.policy.jwt import RemoteKeys
from edgegw.policy.xfcc import PeerCertificate
from edgegw.proto.events import HeaderList, Headers
from edgegw.proto.http2 import H2Limits
from edgegw.proto.via import instance_via
from edgegw.routing import PortTable

#: This process's ``Via`` element: one name per gateway process, so a loop through it shows.
VIA = instance_via()

# --- the contracts --------------------------------------------


class ClientAbort(Exception):
    """The response cannot be completed; the front end drops the client connection."""


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    """What one client connection may take of the gateway's time and memory.

    The body and send limits are HTTP/1.1's (HTTP/2 has ``H2Limits.stall_timeout``
    and ``body_timeout``): a request body must average ``body_min_rate`` bytes/s
    over the time spent waiting for it, after ``body_grace`` seconds, and no wait
    may exceed ``body_timeout`` (``proto/rate.py``; Kestrel's 240 bytes/s and 5 s,
    nginx's client_body_timeout); a response write a client does not take within
    ``send_timeout`` ends the connection (nginx's send_timeout).
    """

    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0  # first byte of a request head to its end
    keepalive_timeout: float = 60.0  # idle between requests
    body_timeout: float = 60.0  # client silence while we read its body
    body_min_rate: float = 240.0  # bytes/s a body must average while we wait; 0: none
    body_grace: float = 5.0  # seconds before the rate applies
    send_timeout: float = 60.0  # one response write the client does not read
    trailers: bool = True  # HTTP/1.1 trailers forwarded (ClientTrafficPolicy http1.enableTrailers)
    request_timeout: float = 0.0  # the whole request body by then; 0: none (requestReceivedTimeout)
    preserve_case: bool = False  # header names as received (http1.preserveHeaderCase)


class RequestRecord(msgspec.Struct, gc=False):
    """What the access log and metrics learn about one request."""

    method: str
    path: str
    client: str = ""
    listener: str = ""
    route_namespace: str = ""
    route_name: str = ""
    rule_index: int = -1
    backend: str = ""
    upstream: str = ""
    status: int = 0
    duration: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    encoding: str = ""  # the response's Content-Encoding when the gateway compressed it
    uncompressed: int = 0  # body bytes before and after compression
    compressed: int = 0
    protocol: str = ""  # the client's: "http/1.1", "h2" or "h3"


class Observer(Protocol):
    def request_done(self, record: RequestRecord) -> None: ...

    def upstream_error(self, backend: str, upstream: str, kind: str) -> None: ...

    def policy_decision(self, kind: str, policy: str, outcome: str) -> None: ...


class NullObserver:
    """The default observer: records nothing."""

    def request_done(self, record: RequestRecord) -> None:
        pass

    def upstream_error(self, backend: str, upstream: str, kind: str) -> None:
        pass

    def policy_decision(self, kind: str, policy: str, outcome: str) -> None:
        pass


class Cancellable(Protocol):
    """An idle wait that draining can end at once (a ``CancelScope``, a ``FastSocket``)."""

    def cancel(self) -> None: ...


class DrainSignal:
    """Shared by a listener's connections; ``start`` ends keep-alive everywhere.

    Idle connections register their wait scope so draining wakes them at once;
    busy ones notice ``draining`` when their current request ends.
    """

    def __init__(self) -> None:
        self.draining = False
        self.idle: set[Cancellable] = set()

    def start(self) -> None:
        self.draining = True
        for scope in list(self.idle):
            scope.cancel()


class ChallengeAnswers(Protocol):
    """Pending ACME HTTP-01 answers (``certificates.challenges.Challenges``)."""

    def answer_http01(self, path: str) -> bytes | None: ...


#: (fields, (path, query, authority, original authority, method, chunked), the head made)
HeadMemo = tuple[HeaderList, tuple[str, str, str, str, str, bool], tuple[bytes, bytes, HeaderList]]


class HTTPConnectionContext(msgspec.Struct, kw_only=True):
    """Everything one client connection needs; the lead builds one per connection.

    ``port_table`` is called once per request, so a reload applies from the
    next request on while a request in flight keeps the table it started with.
    ``sni_listener`` is the key of the listener a TLS ClientHello selected.
    ``via`` is this gateway's ``Via`` element (see ``proto/via.py``).
    """

    port_table: Callable[[], PortTable]
    pool: UpstreamPool
    client: tuple[str, int] | None = None
    scheme: Literal["http", "https"] = "http"
    sni_listener: str | None = None
    drain: DrainSignal = msgspec.field(default_factory=DrainSignal)
    limits: HTTPLimits = msgspec.field(default_factory=HTTPLimits)
    observer: Observer = msgspec.field(default_factory=NullObserver)
    background: trio.Nursery | None = None  # for mirrors; None disables them
    challenges: ChallengeAnswers | None = None  # ACME HTTP-01, on plain-HTTP ports only
    via: bytes = VIA  # added to what is forwarded; a request already carrying it gets 508
    jwks: RemoteKeys | None = None  # remote JWKS for SecurityPolicy jwt (``net/jwks.py``)
    oidc: OIDCProviders | None = None  # SecurityPolicy oidc providers and key (``net/oidc.py``)
    protocol: str = "http/1.1"  # the front end serving it sets "h2" or "h3"
    h2_limits: H2Limits | None = None  # a ClientTrafficPolicy's http2 settings
    default_host: str | None = None  # the Host of an HTTP/1.0 request without one
    read_size: int | None = None  # bytes per read, from a ClientTrafficPolicy bufferLimit
    buffer_limit: int | None = None  # that bufferLimit: also the most a retry keeps of a body
    client_cert: PeerCertificate | None = None  # a mutual-TLS client's, for XFCC
    # the last upstream head ``decide`` made on this connection and what it was made of
    # (``decide.upstream_head``): an HTTP/2 client's repeated heads are made once
    head_memo: HeadMemo | None = None


class ProxyRequest(msgspec.Struct):
    """A client request as every front end presents it; ``headers`` exclude Host.

    ``header_case``: the names' spellings an HTTP/1.1 backend gets back
    (``http1.preserveHeaderCase``; see ``proto/http1.py``), None without the policy.
    """

    method: str
    path: str
    query: str
    authority: str  # the Host as received (may carry a port)
    host: str  # lower-case, without port
    headers: HeaderList
    body: RequestBody
    header_case: dict[bytes, bytes] | None = None


class ResponseWriter(Protocol):
    """How the proxy answers, whatever the client's protocol.

    ``send_head``'s headers carry Content-Length when it is known, and
    ``content_length`` repeats it for framing; ``body=False`` for responses
    that have none (HEAD is the writer's own business).
    """

    head_sent: bool
    status: int
    bytes_sent: int

    async def send_head(
        self, status: int, headers: HeaderList, *, content_length: int | None, body: bool
    ) -> None: ...

    async def send_data(self, data: bytes) -> None: ...

    async def flush(self) -> None: ...

    async def end(self, trailers: Headers = ()) -> None: ...
