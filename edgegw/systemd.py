"""Tell systemd how the service is doing: sd_notify(3) without libsystemd.

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named in
``$NOTIFY_SOCKET`` (a path, or an abstract name written with a leading ``@``). Outside systemd
the variable is unset and every call quietly does nothing, so callers never need to ask
whether they run under it.

Sending is a blocking ``sendto`` on a datagram socket: it completes at once (the kernel queues
the datagram or refuses it), which is what libsystemd does too, so it is safe in async code.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import NoReturn

import trio


def _address(environ: Mapping[str, str]) -> str | None:
    path = environ.get("NOTIFY_SOCKET", "")
    if not path or path[0] not in "/@":
        return None
    return "\0" + path[1:] if path[0] == "@" else path


def notify(message: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (``KEY=value`` lines) to systemd.

    Returns:
        True when it was sent; False without ``$NOTIFY_SOCKET`` or when systemd is gone
        (a failed notification must never take the service down).
    """
    address = _address(os.environ if environ is None else environ)
    if address is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError:
            return False
    return True


def ready(status: str = "") -> bool:
    """The service is up: configuration loaded and listeners bound (ends ``activating``)."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def reloading() -> bool:
    """A reload has begun; READY=1 ends it. MONOTONIC_USEC lets systemd order the two."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def stopping() -> bool:
    """Shutdown has begun (draining); systemd shows ``deactivating`` from now on."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """A one-line status shown by ``systemctl status``."""
    return notify(f"STATUS={text}")


def watchdog() -> bool:
    """Still alive: resets the WatchdogSec= timer."""
    return notify("WATCHDOG=1")


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between keep-alives systemd expects, or None when no watchdog is armed.

    ``$WATCHDOG_PID``, when set, names the process the watchdog is for; a child that inherited
    the environment must not ping on its parent's behalf.
    """
    env = os.environ if environ is None else environ
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


async def serve_watchdog(
    *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    """Ping the watchdog at half its interval for as long as trio's scheduler runs.

    A wedged event loop stops the pings, and systemd restarts the service: that is the point,
    so this runs as an ordinary task and not in a thread. Without a watchdog it just sleeps.
    """
    interval = watchdog_interval()
    task_status.started()
    if interval is None:
        await trio.sleep_forever()
    while True:
        watchdog()
        await trio.sleep(interval / 2)
