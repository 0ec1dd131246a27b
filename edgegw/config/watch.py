"""Turn file changes under the config directory, and SIGHUP, into reload requests.

Editors save in bursts (write a temp file, rename, touch a backup), and
``kubectl``-style tools drop several files at once, so triggers are
coalesced: a burst becomes one reload. watchfiles already debounces; on top of
that, a trigger that arrives while a reload runs marks the state dirty, and
exactly one more reload follows. Nothing here reads files: the store does.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import watchfiles

log = logging.getLogger("edgegw.config")

DEBOUNCE_MS = 50  # a reload must be in force within 1 s of a write
# The watcher blocks in a worker thread that trio cannot interrupt; it returns at least
# this often, which bounds how long shutdown waits for it (watchfiles' default is 5 s).
RUST_TIMEOUT_MS = 200
# watchfiles' thread takes the GIL after every step to look for changes, signals and its
# stop event. Each time it steals the GIL from the serving thread (which gives it up for
# every socket read and write) and that thread waits for it back: at 10 ms, 100 times a
# second, ~0.4 ms each on a loaded machine. Every 50 ms (the debounce) costs a fifth and a
# change is still in force within ~100 ms.
STEP_MS = 50


def _relevant(change: watchfiles.Change, path: str) -> bool:
    """Skip editor leftovers; anything else may matter (the store decides what is config)."""
    del change
    name = Path(path).name
    return not (name.endswith(("~", ".swp", ".swx")) or name.startswith(".#"))


async def serve_reload_triggers(
    root: Path,
    reload: Callable[[str], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``reload(reason)`` after each burst of changes under ``root`` and on SIGHUP."""
    wake = trio.Event()
    reasons: list[str] = []

    def trigger(reason: str) -> None:
        nonlocal wake
        reasons.append(reason)
        wake.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(_watch_files, root, trigger)
        await nursery.start(_watch_sighup, trigger)
        task_status.started()
        while True:
            await wake.wait()
            wake = trio.Event()
            why = ", ".join(sorted(set(reasons)))
            reasons.clear()
            await reload(why)


async def _watch_files(
    root: Path,
    trigger: Callable[[str], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started()
    async for _changes in watchfiles.awatch(
        root,
        watch_filter=_relevant,
        debounce=DEBOUNCE_MS,
        step=STEP_MS,
        rust_timeout=RUST_TIMEOUT_MS,
        recursive=True,
    ):
        trigger("file change")


async def _watch_sighup(
    trigger: Callable[[str], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        task_status.started()
        async for _ in signals:
            log.info("SIGHUP: reloading")
            trigger("SIGHUP")
