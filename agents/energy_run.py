"""Energy around one task: an idle baseline first, then the meter sampled across the performance phase on the
harness clock; the traces go to the lab as raw samples, the lab integrates them."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from agents.meters.base import Meter
from agents.meters.sampler import Sampler

IDLE_MS_DEFAULT = 2000


def _trace_set(kind: str, t: np.ndarray, v: np.ndarray) -> tuple[str, dict[str, np.ndarray]]:
    n = int(t.size)
    return kind, {"index": np.arange(n, dtype=np.int64), "t_ns": t.astype(np.int64), "value": np.zeros(n, np.int64),
                  "fvalue": v.astype(np.float64)}


def meter_settings(meter: Meter) -> dict[str, Any]:
    i = meter.info
    return {"meter": i.name, "kind": i.kind, "quantity": i.quantity, "sample_rate_hz": i.sample_rate_hz,
            "update_period_s": i.update_period_s}


def idle_baseline(meter: Meter, idle_ms: int) -> tuple[list[tuple[str, dict[str, np.ndarray]]], dict[str, Any]]:
    """Sample the idle device (model loaded, nothing issued) for idle_ms."""
    sampler = Sampler([meter], expected_duration_s=idle_ms / 1000 + 1)
    sampler.start()
    t0 = time.perf_counter_ns()
    time.sleep(idle_ms / 1000)
    t1 = time.perf_counter_ns()
    traces = sampler.stop()
    info: dict[str, Any] = {"idle_window_ns": [t0, t1]}
    if sampler.errors:
        info["idle_errors"] = [msg for _, msg in sampler.errors.values()]
    t, v = traces[meter.info.name]
    return [_trace_set("power;phase=idle", t, v)], info


class PerformanceTrace:
    """The meter across a task's timed runs: sampled from just before each run's first query to just after its
    last, one repeat after another, joined into one trace; the lab integrates each run's window apart."""

    def __init__(self, meter: Meter, expected_s: float) -> None:
        self.meter, self.expected_s = meter, expected_s
        self.sampler: Sampler | None = None
        self.t: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.errors: list[str] = []

    def start(self) -> None:
        self.sampler = Sampler([self.meter], expected_duration_s=self.expected_s)
        self.sampler.start()

    def stop(self) -> None:
        if self.sampler is None:
            return
        t, v = self.sampler.stop()[self.meter.info.name]
        self.t.append(t)
        self.v.append(v)
        self.errors += [msg for _, msg in self.sampler.errors.values()]
        self.sampler = None

    def results(self) -> tuple[list[tuple[str, dict[str, np.ndarray]]], dict[str, Any]]:
        info: dict[str, Any] = {"errors": self.errors} if self.errors else {}
        if not self.t:
            return [], info
        return [_trace_set("power;phase=perf", np.concatenate(self.t), np.concatenate(self.v))], info
