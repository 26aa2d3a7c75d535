"""Warm-up: at least a minimum count and time, then until the rolling median latency settles."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def warm_up(issue: Callable[[Any], object], samples: Sequence[Any], min_queries: int, min_ms: int,
            max_ms: int = 10_000, window: int = 32, tolerance: float = 0.05) -> dict[str, Any]:
    """Issue queries until min_queries and min_ms are met and the median of the last window differs from the
    window before it by less than tolerance (relative), or max_ms passes. Returns what happened."""
    clock = time.perf_counter_ns
    n = len(samples)
    lat: list[int] = []
    start = clock()
    settled = False
    q = 0
    while True:
        t0 = clock()
        issue(samples[q % n])
        t1 = clock()
        lat.append(t1 - t0)
        q += 1
        elapsed_ms = (t1 - start) / 1e6
        if q >= max(min_queries, 2 * window) and elapsed_ms >= min_ms:
            prev = float(np.median(lat[-2 * window:-window]))
            last = float(np.median(lat[-window:]))
            if prev > 0 and abs(last - prev) / prev < tolerance:
                settled = True
                break
        if elapsed_ms >= max_ms and q >= min_queries:
            break
    return {"queries": q, "ms": (clock() - start) / 1e6, "settled": settled,
            "last_window_median_ms": float(np.median(lat[-window:])) / 1e6}
