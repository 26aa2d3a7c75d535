"""Scheduled scenarios: server (Poisson arrivals at a target QPS) and periodic (fixed-rate releases with a
deadline, for robots). Each query keeps its scheduled time, actual issue time and latency."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.harness.single_stream import Cancelled

SPIN_NS = 300_000  # sleep until this close to a release, then spin: time.sleep overshoots by ~50-100 µs


@dataclass
class ScheduledResult:
    scheduled_ns: np.ndarray
    issue_ns: np.ndarray
    latency_ns: np.ndarray
    sample_index: np.ndarray
    duration_ns: int


def poisson_schedule(target_qps: float, count: int, seed: int) -> np.ndarray:
    """Arrival offsets (ns from start) of a Poisson process: exponential gaps, fixed seed."""
    gaps = np.random.default_rng(seed).exponential(1e9 / target_qps, size=count)
    return np.cumsum(gaps).astype(np.int64)


def periodic_schedule(rate_hz: float, count: int) -> np.ndarray:
    return (np.arange(count, dtype=np.float64) * (1e9 / rate_hz)).astype(np.int64)


def run_scheduled(issue: Callable[[Any], object], samples: Sequence[Any], offsets_ns: np.ndarray,
                  seed: int = 0, cancel: threading.Event | None = None) -> ScheduledResult:
    """Issue query q at start + offsets_ns[q], or at once when running late (the delay then counts in its
    latency), until the schedule is used up. Size the schedule with query_count()."""
    n = len(samples)
    count = int(offsets_ns.size)
    order = np.random.default_rng(seed).integers(0, n, size=count, dtype=np.int64)
    sched = np.zeros(count, dtype=np.int64)
    issue_ns = np.zeros(count, dtype=np.int64)
    latency_ns = np.zeros(count, dtype=np.int64)
    clock, sleep = time.perf_counter_ns, time.sleep
    cancel_set = cancel.is_set if cancel is not None else (lambda: False)
    start = clock() + 1_000_000
    q = 0
    while q < count:
        if cancel_set():  # every query: a run that has fallen behind its schedule never sleeps
            raise Cancelled()
        release = start + int(offsets_ns[q])
        now = clock()
        if release - now > SPIN_NS:
            sleep((release - now - SPIN_NS) / 1e9)
        while clock() < release:
            pass
        sample = samples[order[q]]
        t0 = clock()
        issue(sample)
        t1 = clock()
        sched[q] = release
        issue_ns[q] = t0
        latency_ns[q] = t1 - t0
        q += 1
    end = int(issue_ns[q - 1] + latency_ns[q - 1]) if q else start
    return ScheduledResult(sched[:q], issue_ns[:q], latency_ns[:q], order[:q], end - start)


def query_count(rate_qps: float, min_query_count: int, min_duration_ms: int) -> int:
    """Enough queries to satisfy both the minimum count and the minimum duration at this rate."""
    return max(min_query_count, int(np.ceil(rate_qps * min_duration_ms / 1000.0)) + 1)
