"""Loopback ports for tests that start a server on a port chosen beforehand."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator


def _private_ports() -> Iterator[int]:
    """Ports below the kernel's ephemeral range, from a random start, each handed out once.

    A port taken with ``bind(port 0)`` and released comes back out of the ephemeral range: the
    next backend that binds port 0, or an outgoing connection, can get it before the gateway
    binds it. The kernel never picks a port below ``ip_local_port_range`` by itself.
    """
    low, span = 20000, 12000
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1... under pytest -n
    if worker.startswith("gw"):  # each worker its own slice, so two never race for one port
        count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        span //= max(1, count)
        low += int(worker[2:]) * span
    start = random.randrange(span)
    for offset in range(span):
        yield low + (start + offset) % span


_PORTS = _private_ports()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port free for ``kind`` now, and not handed out before in this run."""
    for port in _PORTS:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free private port left")


__all__ = ["free_port"]
