"""labd.sessions.ThreadBatch: heartbeats of many sessions handled in one worker-thread trip, each submitter getting
its own job's outcome."""

from __future__ import annotations

import asyncio
import threading

import pytest

from labd.sessions import ThreadBatch
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
        results = await asyncio.gather(*(batch.submit(i) for i in range(8)), return_exceptions=True)
        await batch.submit(9)  # a later job: a trip of its own
        return results

    results = asyncio.run(main())
    assert seen == [*range(8), 9]
    assert len(set(trips[:8])) == 1 and threading.get_ident() not in trips  # one worker thread, not the loop's
    assert [type(r).__name__ for r in results] == ["NoneType"] * 3 + ["Unauthenticated"] + ["NoneType"] * 4


def test_cancelled_flush_cancels_its_submitters() -> None:
    async def main() -> None:
        batch: ThreadBatch[int] = ThreadBatch(lambda _: None, delay=10)
        waiter = asyncio.ensure_future(batch.submit(1))
        await asyncio.sleep(0.01)
        assert batch._flusher is not None
        batch._flusher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(main())
