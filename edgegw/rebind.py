"""Bind again, in the background, the listeners whose address or port was not free.

A listener whose port another process holds gets Programmed=False
(PortUnavailable) at reload. Before, it stayed unbound until the next
reload, however soon the port freed up: a gateway started while the old one
was still draining never served that port. Now ``serve_rebinds`` retries the
failed binds with a growing delay (0.25 s, doubling, at most 5 s, so a freed
port is served within 5 s and a port that never frees costs one failed
``bind()`` every 5 s), and a success flips the listener to Programmed and
starts serving it with the current configuration. A reload that leaves new
failures starts the delays over.
"""

from __future__ import annotations

from typing import Protocol

import trio

FIRST_DELAY = 0.25
LONGEST_DELAY = 5.0


class Rebindable(Protocol):
    """What the loop needs from the gateway."""

    def has_bind_errors(self) -> bool: ...
    async def retry_binds(self) -> None: ...


class RebindSignal:
    """Set by a reload that left bind failures: retry soon, from the shortest delay."""

    def __init__(self) -> None:
        self.event = trio.Event()

    def poke(self) -> None:
        self.event.set()

    async def wait(self, patience: float) -> bool:
        """Wait up to ``patience`` seconds; True when poked (and then re-armed)."""
        with trio.move_on_after(patience):
            await self.event.wait()
        poked = self.event.is_set()
        if poked:
            self.event = trio.Event()
        return poked


async def serve_rebinds(
    target: Rebindable,
    signal: RebindSignal,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Retry failed binds until cancelled (see the module docstring)."""
    task_status.started()
    delay = FIRST_DELAY
    while True:
        if not target.has_bind_errors():
            await signal.wait(float("inf"))
            delay = FIRST_DELAY
            continue
        if await signal.wait(delay):
            delay = FIRST_DELAY
            continue
        await target.retry_binds()
        delay = min(delay * 2, LONGEST_DELAY)
