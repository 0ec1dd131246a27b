"""Run ``edgegw`` with a trio instrument that counts scheduling, for `h2_path.py --steps`.

    python bench/trio_steps.py run --workers 1 -c CONFIG ...   (edgegw's own arguments)

The instrument counts task steps (each is one trip through trio's scheduler:
a task resumed after a schedule point or an I/O wait), task reschedules, and
run-loop batches (each one ``epoll_wait``). On SIGUSR1 the counts so far go to
the file named by ``$TRIO_STEPS_OUT`` as ``steps scheduled batches``; the
caller reads them before and after a run of N requests and divides.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType

import trio

sys.path.insert(0, os.getcwd())  # the tree under test, as ``python -m edgegw`` would

from edgegw import gateway
from edgegw.cli import main


class _Counts(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps = self.scheduled = self.batches = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        self.scheduled += 1

    def before_io_wait(self, timeout: float) -> None:
        self.batches += 1


def _run() -> int:
    counts = _Counts()
    out = Path(os.environ["TRIO_STEPS_OUT"])

    def dump(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        out.write_text(f"{counts.steps} {counts.scheduled} {counts.batches}\n")

    signal.signal(signal.SIGUSR1, dump)
    serve = gateway.serve_gateway

    async def instrumented(*args: object) -> None:
        trio.lowlevel.add_instrument(counts)
        await serve(*args)  # type: ignore[arg-type]

    gateway.serve_gateway = instrumented  # type: ignore[assignment]
    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(_run())
