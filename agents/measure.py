"""The measurement plan of one task: normalised settings, then the scenario's timed runs as raw sample sets."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from agents.harness.scheduled import periodic_schedule, poisson_schedule, query_count, run_scheduled
from agents.harness.single_stream import Cancelled, SingleStreamSettings, run_single_stream

# generative runs in agents/generative_run.py (prompts and tokens), the others through performance() below
SCENARIOS = ("single-stream", "offline", "multi-stream", "server", "periodic", "generative")
RawSet = tuple[str, dict[str, np.ndarray]]


@dataclass
class Settings:
    """The harness's plan of one task. The job runner builds it from pilotlab.tasks.effective() (the one place
    defaults live; tests/agents/test_engine_harness.py checks these fallbacks equal them), and reports those
    effective settings; harness tests and benches may set the harness's own knobs here directly."""

    scenario: str
    warmup_queries: int = 50
    warmup_min_ms: int = 0
    min_query_count: int = 300
    min_duration_ms: int = 500
    max_query_count: int = 1_000_000
    seed: int = 0
    repeats: int = 3
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    samples_per_query: int = 1
    target_qps: float = 0.0
    latency_bound_ms: float = 0.0
    rate_hz: float = 0.0
    deadline_ms: float = 0.0
    audit: bool = True
    audit_queries: int = 100
    intra_op_threads: int = 0
    graph_optimization: str = "all"
    profile: bool = False
    profile_queries: int = 100

    @classmethod
    def from_requested(cls, scenario: str, requested: dict[str, Any]) -> Settings:
        known = set(cls.__dataclass_fields__) - {"scenario"}
        s = cls(scenario=scenario, **{k: v for k, v in requested.items() if k in known})
        for name, f in cls.__dataclass_fields__.items():
            value = getattr(s, name)
            if f.type in ("int", int):
                setattr(s, name, int(float(value)))
            elif f.type in ("float", float):
                setattr(s, name, float(value))
        s.batch_sizes = sorted({int(b) for b in s.batch_sizes}) or [1]
        s.repeats = max(1, int(s.repeats))
        s.max_query_count = max(int(s.max_query_count), int(s.min_query_count))
        return s

    def effective(self) -> dict[str, Any]:
        return asdict(self)

    def loop(self) -> SingleStreamSettings:
        return SingleStreamSettings(min_query_count=self.min_query_count,
                                    min_duration_ms=self.min_duration_ms, max_query_count=self.max_query_count,
                                    seed=self.seed)


def batch_feeds(arrays: dict[str, np.ndarray], names: list[str], batch: int) -> list[dict[str, np.ndarray]]:
    """Preloaded feeds of `batch` consecutive samples (wrapping around the dataset)."""
    n = len(arrays[names[0]])
    count = max(1, min(64, -(-n // batch)))
    feeds = []
    for q in range(count):
        idx = (np.arange(batch) + q * batch) % n
        feeds.append({name: np.ascontiguousarray(arrays[name][idx]) for name in names})
    return feeds


def _latency_set(kind: str, issue_ns: np.ndarray, latency_ns: np.ndarray, sample_index: np.ndarray,
                 scheduled: np.ndarray | None = None) -> RawSet:
    n = latency_ns.size
    return kind, {"index": np.arange(n, dtype=np.int64), "sample_index": sample_index, "t_ns": issue_ns,
                  "value": latency_ns, "aux": scheduled if scheduled is not None else np.zeros(n, dtype=np.int64)}


def performance(s: Settings, issue: Callable[[Any], object], feeds: Sequence[Any],
                batched: Callable[[int], list[dict[str, np.ndarray]]],
                cancel: threading.Event | None, repeat: int | None = None,
                min_window_ms: int = 0) -> tuple[list[RawSet], list[dict[str, Any]]]:
    """The timed runs of the scenario, each a raw latency set, and the performance window of each on the harness
    clock. `repeat` runs only that repeat (the executor runs one per process); `min_window_ms` lengthens every
    timed run (an energy meter needs ten of its update periods)."""
    import time

    out: list[RawSet] = []
    windows: list[dict[str, Any]] = []
    loop = s.loop()
    loop.min_duration_ms = max(loop.min_duration_ms, int(min_window_ms))
    min_ms = loop.min_duration_ms
    for rep in range(s.repeats) if repeat is None else (repeat,):
        suffix = f";repeat={rep}" if s.repeats > 1 else ""
        seed_settings = SingleStreamSettings(loop.min_query_count, loop.min_duration_ms, loop.max_query_count,
                                             s.seed + rep)
        sizes = s.batch_sizes if s.scenario == "offline" else [s.samples_per_query] \
            if s.scenario == "multi-stream" else [1]
        for b in sizes:
            t0 = time.perf_counter_ns()
            if s.scenario == "single-stream":
                r = run_single_stream(issue, feeds, seed_settings, cancel)
                raw = _latency_set("latency" + suffix, r.issue_ns, r.latency_ns, r.sample_index)
            elif s.scenario in ("offline", "multi-stream"):
                r = run_single_stream(issue, batched(b), seed_settings, cancel)
                kind = f"latency;batch={b}" if s.scenario == "offline" else "latency"
                raw = _latency_set(kind + suffix, r.issue_ns, r.latency_ns, r.sample_index * b)
            elif s.scenario == "server":
                count = query_count(s.target_qps, s.min_query_count, min_ms)
                sr = run_scheduled(issue, feeds, poisson_schedule(s.target_qps, count, s.seed + rep), s.seed + rep,
                                   cancel)
                raw = _latency_set("latency" + suffix, sr.issue_ns, sr.latency_ns, sr.sample_index, sr.scheduled_ns)
            elif s.scenario == "periodic":
                count = query_count(s.rate_hz, s.min_query_count, min_ms)
                sr = run_scheduled(issue, feeds, periodic_schedule(s.rate_hz, count), s.seed + rep, cancel)
                raw = _latency_set("latency" + suffix, sr.issue_ns, sr.latency_ns, sr.sample_index, sr.scheduled_ns)
            else:
                raise ValueError(f"unknown scenario {s.scenario!r}")
            out.append(raw)
            windows.append({"kind": raw[0], "start_ns": t0, "end_ns": time.perf_counter_ns()})
    return out, windows


def audit_same_sample(s: Settings, issue: Callable[[Any], object], feeds: Sequence[Any],
                      cancel: threading.Event | None) -> list[RawSet]:
    """TEST04-style: one sample issued again and again, interleaved query by query with varied samples so both
    see the same machine load; a system that caches answers runs the repeated one much faster."""
    import time

    clock = time.perf_counter_ns
    count = max(2, s.audit_queries)
    varied = np.random.default_rng(s.seed + 4).integers(0, len(feeds), size=count, dtype=np.int64)
    t = np.zeros((2, count), dtype=np.int64)
    lat = np.zeros((2, count), dtype=np.int64)
    same = feeds[0]
    for q in range(count):
        if q & 63 == 0 and cancel is not None and cancel.is_set():
            raise Cancelled()
        t0 = clock()
        issue(same)
        t1 = clock()
        issue(feeds[varied[q]])
        t2 = clock()
        t[0, q], lat[0, q], t[1, q], lat[1, q] = t0, t1 - t0, t1, t2 - t1
    return [_latency_set("audit-same", t[0], lat[0], np.zeros(count, dtype=np.int64)),
            _latency_set("audit-varied", t[1], lat[1], varied)]
