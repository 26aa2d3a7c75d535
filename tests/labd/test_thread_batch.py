"""labd.sessions.ThreadBatch: heartbeats of many sessions handled in one worker-thread trip, each submitter getting
its own job's outcome."""

from __future__ import annotations

import asyncio
import threading

import pytest

from labd.sessions import GroupTrips, ThreadBatch
from pilotlab import domain as d


def test_jobs_submitted_together_run_in_one_trip_with_their_own_outcomes() -> None:
    trips: list[int] = []
    seen: list[int] = []

    def run(job: int) -> None:
        trips.append(threading.get_ident())
        seen.append(job)
        if job == 3:
            raise d.Unauthenticated("token 3 was revoked")

    async def main() -> list[BaseException | None]:
        batch: ThreadBatch[int] = ThreadBatch(run, delay=0.01)
        results = await asyncio.gather(*(batch.submit_nowait(i) for i in range(8)), return_exceptions=True)
        await batch.submit_nowait(9)  # a later job: a trip of its own
        return results

    results = asyncio.run(main())
    assert seen == [*range(8), 9]
    assert len(set(trips[:8])) == 1 and threading.get_ident() not in trips  # one worker thread, not the loop's
    assert [type(r).__name__ for r in results] == ["NoneType"] * 3 + ["Unauthenticated"] + ["NoneType"] * 4


def test_cancelled_flush_cancels_its_submitters() -> None:
    async def main() -> None:
        batch: ThreadBatch[int] = ThreadBatch(lambda _: None, delay=10)
        waiter = asyncio.ensure_future(batch.submit_nowait(1))
        await asyncio.sleep(0.01)
        assert batch._flusher is not None
        batch._flusher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(main())


# --- GroupTrips: the result batches of many sessions stored as one group per trip ----------------------------------

def test_group_trips_start_at_once_and_what_arrives_meanwhile_takes_the_next_trip_together() -> None:
    """Group commit: the first job goes alone, without waiting; the jobs submitted while its trip runs are one group
    in the next trip; each submitter gets its own job's result."""
    groups: list[list[int]] = []
    running, release = threading.Event(), threading.Event()

    def run(jobs: list[int]) -> list[int]:
        groups.append(jobs)
        if len(groups) == 1:
            running.set()
            assert release.wait(10)
        return [j * 10 for j in jobs]

    async def main() -> tuple[int, list[int]]:
        trips: GroupTrips[int, int] = GroupTrips(run)
        first = asyncio.ensure_future(trips.submit(0))
        assert await asyncio.to_thread(running.wait, 10)  # the first trip is under way, alone
        later = [asyncio.ensure_future(trips.submit(i)) for i in range(1, 6)]
        await asyncio.sleep(0)
        release.set()
        assert (trips.trips, trips.jobs) == (1, 1)
        return await first, list(await asyncio.gather(*later))

    assert asyncio.run(main()) == (0, [10, 20, 30, 40, 50])
    assert groups == [[0], [1, 2, 3, 4, 5]]


def test_group_trips_bound_their_groups_and_hand_a_failed_trip_to_each_of_its_jobs() -> None:
    def run(jobs: list[int]) -> list[int]:
        if 13 in jobs:
            raise OSError(28, "No space left on device")
        return jobs

    async def main() -> list[object]:
        trips: GroupTrips[int, int] = GroupTrips(run, max_jobs=4)
        out = await asyncio.gather(*(trips.submit(i) for i in range(10, 20)), return_exceptions=True)
        assert (trips.trips, trips.jobs) == (3, 10)  # 10 jobs submitted together: groups of at most 4
        return list(out)

    out = asyncio.run(main())
    # The first group (10..13) failed as a whole: each of its jobs got the error; the other groups were stored.
    assert [type(o).__name__ for o in out[:4]] == ["OSError"] * 4 and out[4:] == list(range(14, 20))
