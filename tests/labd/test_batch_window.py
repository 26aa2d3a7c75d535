"""The window of result batches a session has in flight (read, not yet acknowledged on the wire): bounded by count and
by bytes, whichever comes first; reading waits for room and resumes as Acks go out."""

from __future__ import annotations

import asyncio

from labd.sessions import BatchWindow, WindowStats


def test_the_window_is_bounded_by_batches_and_by_bytes() -> None:
    async def go() -> None:
        w = BatchWindow(max_batches=3, max_bytes=100)
        for seq in range(3):
            await asyncio.wait_for(w.room(), 1)
            w.took("a", seq, 10)
        assert w.full and (w.batches, w.bytes) == (3, 30)
        waiting = asyncio.ensure_future(w.room())
        await asyncio.sleep(0)
        assert not waiting.done()  # no more reading at 3 batches
        w.acked("a", 1)
        await asyncio.wait_for(waiting, 1)
        w.acked("a", 7)  # not in flight: changes nothing
        assert (w.batches, w.bytes) == (2, 20)

        w.took("a", 3, 90)  # 110 bytes: at the byte bound with 3 batches
        assert w.full and w.stats.peak_bytes == 110
        for seq in (0, 2, 3):
            w.acked("a", seq)
        assert (w.batches, w.bytes, w.full) == (0, 0, False)
        assert (w.stats.peak_batches, w.stats.pauses) == (3, 1)

    asyncio.run(go())


def test_a_resent_batch_in_flight_twice_is_counted_twice() -> None:
    stats = WindowStats()
    w = BatchWindow(stats=stats)
    w.took("a", 0, 5)
    w.took("a", 0, 7)
    w.acked("a", 0)
    assert (w.batches, w.bytes) == (1, 7)
    w.acked("a", 0)
    assert (w.batches, w.bytes, stats.peak_batches, stats.peak_bytes) == (0, 0, 2, 12)
