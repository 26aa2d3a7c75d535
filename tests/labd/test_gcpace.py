"""labd.gcpace: full garbage collections come from labd's own task at its pace, never from CPython's heuristics, and
stopping the task gives CPython's thresholds and the frozen objects back."""

from __future__ import annotations

import asyncio
import gc
from typing import Any


def _grow() -> list[list[Any]]:
    """What makes CPython start full collections on its own: many new objects that outlive the young generations."""
    return [[] for _ in range(300_000)]


def test_full_collections_come_at_the_pace_and_only_from_the_task() -> None:
    full: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    before = gc.get_threshold()
    gc.callbacks.append(seen)
    try:
        kept = _grow()  # unpaced: CPython's heuristics fire
        unpaced = len(full)
        del kept
        gc.collect()

        async def main() -> tuple[int, int, int]:
            from labd import gcpace

            task = gcpace.pace(full_every_s=0.05)
            try:
                frozen, threshold2 = gc.get_freeze_count(), gc.get_threshold()[2]
                full.clear()
                kept = _grow()
                on_their_own = len(full)
                while len(full) < 2:  # the task's own, at its pace
                    await asyncio.sleep(0.01)
                del kept
                return frozen, threshold2, on_their_own
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        frozen, threshold2, on_their_own = asyncio.run(main())
    finally:
        gc.callbacks.remove(seen)
    assert unpaced >= 1  # the control: the same growth, unpaced, brings full collections
    assert frozen > 0 and threshold2 >= 1 << 30 and on_their_own == 0
    assert gc.get_threshold() == (before[0], before[1], 10) and gc.get_freeze_count() == 0
