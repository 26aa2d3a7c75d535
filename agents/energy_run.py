"""Energy around one task: an idle baseline first, then the meter sampled across the performance phase on the
harness clock; the traces go to the lab as raw samples, the lab integrates them."""

from __future__ import annotations

import resource
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


class PerformanceEnergy:
    """Brackets the performance phase: the sampler runs before its first query and after its last."""

    def __init__(self, meter: Meter | None, expected_s: float) -> None:
        self.meter = meter
        self.sampler = Sampler([meter], expected_duration_s=expected_s) if meter is not None else None
        self.cpu0 = 0.0

    def __enter__(self) -> PerformanceEnergy:
        r = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu0 = r.ru_utime + r.ru_stime
        if self.sampler is not None:
            self.sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_s = r.ru_utime + r.ru_stime - self.cpu0
        self.traces = self.sampler.stop() if self.sampler is not None else {}

    def results(self) -> tuple[list[tuple[str, dict[str, np.ndarray]]], dict[str, Any]]:
        info: dict[str, Any] = {"cpu_seconds": self.cpu_s}
        if self.meter is None or self.sampler is None:
            return [], info
        if self.sampler.errors:
            info["errors"] = [msg for _, msg in self.sampler.errors.values()]
        t, v = self.traces[self.meter.info.name]
        return [_trace_set("power;phase=perf", t, v)], info
