"""ClientTrafficPolicy ``connection.bufferLimit``: what one client connection may hold.

Theory of operation
-------------------
Envoy's ``per_connection_buffer_limit_bytes`` (what Envoy Gateway sets from
``bufferLimit``) is a soft limit on a connection's userspace read and write
buffers: Envoy reads from the socket until its read buffer passes the limit,
then stops reading (backpressure) until it drains, so the kernel and finally
the client hold the rest. HTTP/1.1 streams inherit it as their body buffer;
HTTP/2 streams are bounded by the HTTP/2 windows instead. A body that a filter
must hold whole and that passes the limit gets 413.

edgegw has no filter that holds a body whole (extAuth gets no body); what
it keeps for retries is bounded by the limit too (``net/replay.py``). The
streaming half it reaches by bounding every userspace buffer of the
connection:

- each read from the client (plain, TLS ciphertext and plaintext, h2c, the
  client side of a WebSocket tunnel) takes at most ``read_size(limit)``
  bytes, and the next read waits until the upstream took the last one;
- a WebSocket tunnel's reads from the backend take as little, so what waits
  for the client is bounded too; an HTTP/2 connection queues at most that
  much for its writer before streams wait;
- HTTP/2 (h2c, h2, gRPC, RFC 8441 WebSocket): the request bytes the client may
  send ahead are its flow-control windows, so unless the policy sets
  ``http2`` windows itself, both become ``h2_window(limit)``: the limit,
  but never below 65,535 (the protocol's initial connection window, and
  Envoy's minimum) nor above edgegw's own defaults.

Like Envoy's, the limit is soft: a read is never below ``MIN_READ`` bytes, so
a tiny limit cannot turn a connection into one syscall per byte.
"""

from __future__ import annotations

import dataclasses

from edgegw.net.fastio import READ_SIZE
from edgegw.proto.http2 import H2Limits

MIN_READ = 4096
H2_MIN_WINDOW = 65535


def read_size(limit: int) -> int:
    """Bytes one read may take from a connection limited to ``limit`` bytes."""
    return max(MIN_READ, min(limit, READ_SIZE))


def h2_window(limit: int, default: int) -> int:
    """An HTTP/2 window for a connection limited to ``limit`` bytes (``default`` otherwise)."""
    return min(default, max(limit, H2_MIN_WINDOW))


def h2_limits(
    base: H2Limits, limit: int, *, stream_window: int | None, connection_window: int | None
) -> H2Limits:
    """``base`` with the windows the policy leaves unset bounded by ``limit``."""
    return dataclasses.replace(
        base,
        initial_window_size=stream_window or h2_window(limit, base.initial_window_size),
        connection_window_size=connection_window or h2_window(limit, base.connection_window_size),
    )
