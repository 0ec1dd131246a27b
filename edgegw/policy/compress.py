"""Response compression (BackendTrafficPolicy ``compression``): gzip, brotli, zstd.

Which encoding: the client's ``Accept-Encoding`` q-values, ties going to the
policy's order; ``identity`` and ``*`` are understood. Whether at all, as
Envoy's compressor filter decides: only for a compressible ``Content-Type``
(text, JSON, XML, JavaScript, SVG...), never on a response that is already
encoded, partial (206 or ``Content-Range``), bodiless (1xx, 204, 304, HEAD),
marked ``Cache-Control: no-transform``, or known to be shorter than
``MIN_LENGTH`` bytes. A compressed response loses ``Content-Length`` (it is
streamed), gains ``Content-Encoding`` and ``Vary: Accept-Encoding``, and a
strong ``ETag`` becomes weak.

Encoders stream: ``compress`` takes each chunk as it arrives and ``flush``
pushes out what is held when the backend has nothing more queued, so
server-sent events still arrive one by one. Levels are Envoy's defaults (gzip
6, brotli quality 3, zstd 3): cheap enough for a proxy, most of the gain.
The codecs are the ``brotli`` and ``zstandard`` bindings and the stdlib's zlib.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import brotli
import zstandard

from edgegw import ir

MIN_LENGTH = 30
ZSTD_SPARE = 32  # idle zstd contexts kept for reuse
# A zstd context costs ~100 µs to set up and ~10 µs to reuse; one context serves one
# stream at a time, so an encoder takes one from here and gives it back when finished.
_zstd_spare: list[zstandard.ZstdCompressor] = []
Headers = Sequence[tuple[bytes, bytes]]
_TYPES = frozenset(
    {
        "text/html",
        "text/plain",
        "text/css",
        "text/javascript",
        "text/xml",
        "text/csv",
        "text/markdown",
        "text/x-component",
        "text/event-stream",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/json",
        "application/x-json",
        "application/json-rpc",
        "application/xml",
        "application/xhtml+xml",
        "application/atom+xml",
        "application/rss+xml",
        "application/wasm",
        "application/x-ndjson",
        "application/manifest+json",
        "image/svg+xml",
        "image/x-icon",
        "font/ttf",
        "font/otf",
    }
)


def compressible(content_type: str | None) -> bool:
    """Whether a response of this media type is worth compressing."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media in _TYPES or media.endswith(("+json", "+xml"))


def choose(accept_encoding: str | None, offered: Sequence[ir.Compressor]) -> ir.Compressor | None:
    """The encoding to use: highest client q-value, then the policy's order; None: identity."""
    if not accept_encoding or not offered:
        return None
    weights: dict[str, float] = {}
    for item in accept_encoding.split(",")[:32]:
        token, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[token.strip().lower()] = q
    star = weights.get("*", 0.0)
    best: tuple[float, int, ir.Compressor] | None = None
    for rank, name in enumerate(offered):
        q = weights.get(name, star)
        if q > 0 and (best is None or (q, -rank) > best[:2]):
            best = (q, -rank, name)
    return best[2] if best else None


def response_allows(method: str, status: int, headers: Headers) -> bool:
    """Whether this response may be compressed at all (before asking the client)."""
    if method == "HEAD" or status < 200 or status in (204, 206, 304):
        return False
    content_type = None
    for name, value in headers:
        if name in (b"content-encoding", b"content-range"):
            return False
        if name == b"cache-control" and b"no-transform" in value.lower():
            return False
        if name == b"content-length" and value.strip().isdigit() and int(value) < MIN_LENGTH:
            return False
        if name == b"content-type":
            content_type = value.decode("latin-1")
    return compressible(content_type)


def encoded_headers(headers: Headers, encoding: ir.Compressor) -> list[tuple[bytes, bytes]]:
    """The response headers once the body is compressed."""
    out: list[tuple[bytes, bytes]] = []
    vary_done = False
    for name, value in headers:
        if name == b"content-length":
            continue
        if name == b"etag" and not value.startswith(b"W/"):
            value = b"W/" + value
        if name == b"vary":
            vary_done = True
            if b"accept-encoding" not in value.lower() and value.strip() != b"*":
                value = value + b", Accept-Encoding"
        out.append((name, value))
    if not vary_done:
        out.append((b"vary", b"Accept-Encoding"))
    out.append((b"content-encoding", encoding.encode()))
    return out


class Encoder:
    """A streaming compressor for one response body."""

    __slots__ = ("_brotli", "_context", "_zlib", "_zstd", "bytes_in", "bytes_out")

    def __init__(self, encoding: ir.Compressor) -> None:
        self._zlib = zlib.compressobj(6, zlib.DEFLATED, 31) if encoding == "gzip" else None
        self._brotli = brotli.Compressor(quality=3) if encoding == "br" else None
        self._context: zstandard.ZstdCompressor | None = None
        self._zstd = None
        if encoding == "zstd":
            self._context = _zstd_spare.pop() if _zstd_spare else zstandard.ZstdCompressor(level=3)
            self._zstd = self._context.compressobj()
        self.bytes_in = 0
        self.bytes_out = 0

    def compress(self, data: bytes) -> bytes:
        self.bytes_in += len(data)
        if self._zlib is not None:
            out = self._zlib.compress(data)
        elif self._brotli is not None:
            out = self._brotli.process(data)
        else:
            assert self._zstd is not None
            out = self._zstd.compress(data)
        self.bytes_out += len(out)
        return out

    def flush(self) -> bytes:
        """What is held back so far, decodable by the client now."""
        if self._zlib is not None:
            out = self._zlib.flush(zlib.Z_SYNC_FLUSH)
        elif self._brotli is not None:
            out = self._brotli.flush()
        else:
            assert self._zstd is not None
            out = self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        self.bytes_out += len(out)
        return out

    def finish(self) -> bytes:
        if self._zlib is not None:
            out = self._zlib.flush(zlib.Z_FINISH)
        elif self._brotli is not None:
            out = self._brotli.finish()
        else:
            assert self._zstd is not None
            out = self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
            if self._context is not None and len(_zstd_spare) < ZSTD_SPARE:
                _zstd_spare.append(self._context)
            self._context = None
        self.bytes_out += len(out)
        return out
