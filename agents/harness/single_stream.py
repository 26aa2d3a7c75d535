"""Single-stream scenario: one query at a time; every latency kept raw with its issue time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class SingleStreamSettings:
    """One timed loop: at least min_query_count queries and min_duration_ms, at most max_query_count. Warm-up is
    agents.harness.warmup's job, before this loop; the values come from pilotlab.tasks.effective()."""

    min_query_count: int = 300
    min_duration_ms: int = 500
    max_query_count: int = 1_000_000
    seed: int = 0


@dataclass
class SingleStreamResult:
    issue_ns: np.ndarray
    latency_ns: np.ndarray
    sample_index: np.ndarray
    duration_ns: int


class Cancelled(Exception):
    """The lab cancelled the task; stopped at a query boundary."""


def run_single_stream(issue: Callable[[Any], object], samples: Sequence[Any], settings: SingleStreamSettings,
                      cancel: threading.Event | None = None) -> SingleStreamResult:
    """Issue queries one at a time until both the minimum count and the minimum duration are met."""
    n = len(samples)
    if n == 0:
        raise ValueError("single-stream needs at least one sample")
    rng = np.random.default_rng(settings.seed)
    cap = max(settings.min_query_count, 1024)
    cap = min(cap, settings.max_query_count)
    order = rng.integers(0, n, size=cap, dtype=np.int64)  # grows with the arrays, from the same generator
    issue_ns = np.zeros(cap, dtype=np.int64)
    latency_ns = np.zeros(cap, dtype=np.int64)
    min_count, max_count = settings.min_query_count, settings.max_query_count
    min_ns = settings.min_duration_ms * 1_000_000
    clock = time.perf_counter_ns
    cancel_set = cancel.is_set if cancel is not None else (lambda: False)
    if cancel_set():
        raise Cancelled()
    # The first query is peeled off: the run's span is measured from its issue time, as the lab measures it.
    t0 = clock()
    issue(samples[order[0]])
    t1 = clock()
    issue_ns[0], latency_ns[0] = t0, t1 - t0
    start = t0
    q = 1
    while q < max_count and (q < min_count or t1 - start < min_ns):
        if q == cap:
            more = min(cap, max_count - cap)
            cap += more
            issue_ns.resize(cap, refcheck=False)
            latency_ns.resize(cap, refcheck=False)
            order = np.concatenate((order, rng.integers(0, n, size=more, dtype=np.int64)))
        if q & 255 == 0 and cancel_set():
            raise Cancelled()
        sample = samples[order[q]]
        t0 = clock()
        issue(sample)
        t1 = clock()
        issue_ns[q] = t0
        latency_ns[q] = t1 - t0
        q += 1
    return SingleStreamResult(issue_ns[:q].copy(), latency_ns[:q].copy(), order[:q].copy(), t1 - start)
