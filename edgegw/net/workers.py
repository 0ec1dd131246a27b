"""Tasks that serve one job after another: a job costs a wake-up, not a task and a scope.

Theory of operation
-------------------
Every HTTP/2 stream used to get its own task and, so that a client's
RST_STREAM could cancel it alone, its own ``CancelScope``. In trio both are
dear for what one proxied request costs: starting and reaping a task is a few
microseconds, and entering and leaving a cancel scope about as much again
(measured: 17 µs for task + scope per job against 5.5 µs for a pooled worker,
a scheduler pass included in both).

A ``WorkerPool`` keeps a few parked tasks (``max_idle``), each inside one
cancel scope it enters once. ``submit`` hands a job to a parked worker
(``trio.lowlevel.reschedule``: the same one scheduler pass a new task's
first step costs) or starts a new worker when none is parked. A worker that
finishes its job parks again, or ends when enough others are parked already.
``Worker.cancel`` cancels the worker's scope: the job it is serving is
cancelled as with a scope of its own, and the worker ends with it, since a
cancelled scope cannot be used again (the next job starts a fresh worker).
The caller cancels only a worker whose job is still running; a job that
finished without a checkpoint after its cancel leaves the worker to be
cancelled when it parks, which takes it off the parked list first.

``release_idle`` ends the parked workers (an idle connection keeps no
tasks); the pool's nursery being cancelled ends them all. A job that raises
anything but ``Cancelled`` raises in the worker, hence in the nursery, as a
task of its own would have.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import trio

Job = TypeVar("Job")
_reschedule = trio.lowlevel.reschedule
_park = trio.lowlevel.wait_task_rescheduled
_SUCCEEDED = trio.lowlevel.Abort.SUCCEEDED


class Worker(Generic[Job]):
    """One pooled task; ``cancel`` cancels the job it is serving."""

    __slots__ = ("job", "scope", "task")

    def __init__(self, job: Job) -> None:
        self.job: Job | None = job
        self.scope = trio.CancelScope()
        self.task: trio.lowlevel.Task | None = None

    def cancel(self) -> None:
        """Cancel the running job (and end this worker)."""
        self.scope.cancel()


class WorkerPool(Generic[Job]):
    """Runs ``serve(job)`` for each submitted job on pooled tasks; see the module docstring."""

    __slots__ = ("_idle", "_max_idle", "_nursery", "_serve")

    def __init__(
        self, nursery: trio.Nursery, serve: Callable[[Job], Awaitable[None]], max_idle: int
    ) -> None:
        self._nursery = nursery
        self._serve = serve
        self._max_idle = max_idle
        self._idle: list[Worker[Job]] = []

    @property
    def idle(self) -> int:
        """How many workers are parked."""
        return len(self._idle)

    def submit(self, job: Job) -> Worker[Job]:
        """Start serving ``job`` (at the next scheduler pass); returns its worker."""
        if self._idle:
            worker = self._idle.pop()
            worker.job = job
            assert worker.task is not None
            _reschedule(worker.task)
            return worker
        worker = Worker(job)
        self._nursery.start_soon(self._run, worker)
        return worker

    def release_idle(self) -> None:
        """End every parked worker."""
        idle, self._idle = self._idle, []
        for worker in idle:
            worker.job = None
            assert worker.task is not None
            _reschedule(worker.task)

    async def _run(self, worker: Worker[Job]) -> None:
        worker.task = trio.lowlevel.current_task()
        serve = self._serve
        with worker.scope:
            while (job := worker.job) is not None:
                worker.job = None
                await serve(job)
                if len(self._idle) >= self._max_idle:
                    return
                self._idle.append(worker)
                await _park(self._abort_for(worker))

    def _abort_for(self, worker: Worker[Job]) -> Callable[[Any], trio.lowlevel.Abort]:
        def abort(_: Any) -> trio.lowlevel.Abort:
            if worker in self._idle:
                self._idle.remove(worker)
            return _SUCCEEDED

        return abort


__all__ = ["Worker", "WorkerPool"]
