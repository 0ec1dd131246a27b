"""The pooled stream workers: reuse, cancelling one job alone, and ending parked workers."""

from __future__ import annotations

import trio
import trio.testing

from edgegw.net.workers import WorkerPool

CEILING = 5


async def test_jobs_one_after_another_reuse_one_task() -> None:
    served: list[tuple[int, trio.lowlevel.Task]] = []

    async def serve(job: int) -> None:
        await trio.lowlevel.checkpoint()
        served.append((job, trio.lowlevel.current_task()))

    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            pool = WorkerPool(nursery, serve, max_idle=2)
            for job in range(5):
                pool.submit(job)
                while len(served) <= job:
                    await trio.lowlevel.checkpoint()
            assert pool.idle == 1
            pool.release_idle()  # the nursery can end: no task is left parked
    assert [job for job, _ in served] == [0, 1, 2, 3, 4]
    assert len({task for _, task in served}) == 1


async def test_cancel_ends_only_its_job_and_later_jobs_run() -> None:
    release = trio.Event()
    outcome: dict[str, str] = {}

    async def serve(job: str) -> None:
        try:
            await release.wait()
            outcome[job] = "done"
        except trio.Cancelled:
            outcome[job] = "cancelled"
            raise

    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            pool = WorkerPool(nursery, serve, max_idle=4)
            first, _ = pool.submit("a"), pool.submit("b")
            await trio.testing.wait_all_tasks_blocked()
            first.cancel()
            await trio.testing.wait_all_tasks_blocked()
            release.set()
            pool.submit("c")
            while len(outcome) < 3:
                await trio.lowlevel.checkpoint()
            pool.release_idle()
    assert outcome == {"a": "cancelled", "b": "done", "c": "done"}


async def test_a_cancel_after_a_job_ended_without_a_checkpoint_never_parks_a_dead_worker() -> None:
    served: list[int] = []

    async def serve(job: int) -> None:
        served.append(job)  # no checkpoint: a cancel is delivered only when it parks

    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            pool = WorkerPool(nursery, serve, max_idle=4)
            pool.submit(1).cancel()  # cancelled before it even ran
            await trio.testing.wait_all_tasks_blocked()
            assert served == [1]
            assert pool.idle == 0  # it ended when it tried to park
            pool.submit(2)
            await trio.testing.wait_all_tasks_blocked()
            assert served == [1, 2]
            assert pool.idle == 1
            pool.release_idle()


async def test_no_more_than_max_idle_workers_stay_parked() -> None:
    release = trio.Event()

    async def serve(job: int) -> None:
        await release.wait()

    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            pool = WorkerPool(nursery, serve, max_idle=3)
            for job in range(8):
                pool.submit(job)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
            await trio.testing.wait_all_tasks_blocked()
            assert pool.idle == 3
            assert len(nursery.child_tasks) == 3
            pool.release_idle()
            await trio.testing.wait_all_tasks_blocked()
            assert not nursery.child_tasks
