"""The access log: one line per HTTP request, written in batches.

Why not ``logging`` for these lines: a ``LogRecord``, a ``Formatter`` and a
write(2) per request cost a quarter of a proxied keep-alive request's CPU time
(py-spy under wrk). So the lines are formatted here directly, in the very
shapes ``logsetup`` gives every other line (text, journald, JSON), and kept in
a buffer that goes out when it holds ``FLUSH_BYTES`` or when the flush task
runs, every ``FLUSH_INTERVAL`` seconds: a line appears at most that late.

Whether lines are written at all is still the ``edgegw.access`` logger's
level, so ``--log-level warning`` turns the access log off as before.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

import trio

from edgegw.logsetup import current_style, json_entry
from edgegw.net.context import RequestRecord

__all__ = ["FLUSH_BYTES", "FLUSH_INTERVAL", "AccessLog"]

FLUSH_INTERVAL = 0.1
FLUSH_BYTES = 64 * 1024
LOGGER = "edgegw.access"


class AccessLog:
    """Formats request records into lines and writes them to the log stream in batches."""

    def __init__(self, stream: TextIO | None = None, style: str | None = None) -> None:
        self.enabled = logging.getLogger(LOGGER).isEnabledFor(logging.INFO)
        self._stream = stream
        self._style = style or current_style()
        self._lines: list[str] = []
        self._size = 0
        self._second = -1
        self._stamp = ""

    def write(self, record: RequestRecord, route: str) -> None:
        """Queue the line for one finished request (``route`` is ``ns/name`` or empty)."""
        r = record
        message = (
            f'{r.client} {r.listener} "{r.method} {r.path}" {r.status} {r.bytes_out}'
            f" {r.duration * 1000:.1f}ms route={route or '-'} backend={r.backend or '-'}"
            f" upstream={r.upstream or '-'}"
        )
        style = self._style
        if style == "text":
            line = f"{self._timestamp()} INFO {LOGGER}: {message}\n"
        elif style == "journal":
            line = f"<6>{LOGGER}: {message}\n"
        else:
            line = _json_line(record, route, message) + "\n"
        self._lines.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write out every queued line."""
        if not self._lines:
            return
        text = "".join(self._lines)
        self._lines.clear()
        self._size = 0
        stream = self._stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken log stream must not take requests down

    async def run(self, interval: float = FLUSH_INTERVAL) -> None:
        """Flush every ``interval`` seconds, and once more when cancelled."""
        try:
            while True:
                await trio.sleep(interval)
                self.flush()
        finally:
            self.flush()

    def _timestamp(self) -> str:
        """``logging``'s default ``asctime`` (local time, milliseconds), cached per second."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int((now - second) * 1000):03d}"


def _json_line(record: RequestRecord, route: str, message: str) -> str:
    entry = json_entry(time.time(), "info", LOGGER, message)
    entry |= {
        "client": record.client,
        "listener": record.listener,
        "route": route,
        "backend": record.backend,
        "upstream": record.upstream,
        "method": record.method,
        "path": record.path,
        "status": record.status,
        "duration_ms": round(record.duration * 1000, 2),
        "bytes_in": record.bytes_in,
        "bytes_out": record.bytes_out,
    }
    return json.dumps(entry, separators=(",", ":"))
