"""labd's full garbage collections, paced: one every FULL_EVERY_S seconds from a task of its own, not whenever
CPython's heuristics fire.

A full (generation 2) collection stops labd whole: measured under 1,000 agents, each took 60-230 ms of CPU over a
quarter of a million tracked objects, and CPython ran one every 3-10 s under load, so about one request in twenty
waited behind one (dispatch p99 in the hundreds of milliseconds at a steady 20 runs/s). Paced, the same pause comes
once a minute, which a p99 no longer sees; the young generations are collected as before, and cyclic garbage that
reaches the old one waits at most a minute. What labd holds once it has started (modules, suites, its engine and
server) is moved out of the collector's sight (gc.freeze): it lives as long as labd, and no full collection needs
to walk it again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

FULL_EVERY_S = 60.0
_NEVER = 1 << 30  # generation 2's threshold: CPython's own full collections never come

log = logging.getLogger("labd.gc")


def pace(full_every_s: float = FULL_EVERY_S) -> asyncio.Task[None]:
    """Freeze what labd holds now, stop CPython's own full collections and run them every full_every_s seconds from
    a task (cancel it to stop: CPython's thresholds and the frozen objects are then given back)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, _NEVER)
    return asyncio.ensure_future(_collect_every(full_every_s, (young, middle)))


async def _collect_every(seconds: float, thresholds: tuple[int, int]) -> None:
    try:
        while True:
            await asyncio.sleep(seconds)
            t0 = time.perf_counter()
            found = gc.collect()
            log.debug("full collection: %d unreachable objects in %.1f ms", found, (time.perf_counter() - t0) * 1e3)
    finally:
        gc.set_threshold(*thresholds, 10)  # CPython's default for generation 2
        gc.unfreeze()
