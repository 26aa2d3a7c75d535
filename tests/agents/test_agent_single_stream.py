"""The single-stream scenario harness with a trivial Python callable as the system under test."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from agents.harness.single_stream import Cancelled, SingleStreamSettings, run_single_stream

SAMPLES = [f"s{i}" for i in range(17)]


class Sut:
    """Counts calls and records (perf_counter_ns at entry, sample)."""

    def __init__(self, on_call: object = None) -> None:
        self.calls: list[tuple[int, str]] = []
        self.on_call = on_call

    def __call__(self, sample: str) -> int:
        self.calls.append((time.perf_counter_ns(), sample))
        if callable(self.on_call):
            self.on_call(len(self.calls))
        return sum(range(20))  # a little work so that every latency is measurable


def settings(**kw: int) -> SingleStreamSettings:
    base = {"min_query_count": 50, "min_duration_ms": 0, "max_query_count": 1_000_000,
            "seed": 0}
    return SingleStreamSettings(**{**base, **kw})


def test_min_query_count_exact_when_no_duration() -> None:
    sut = Sut()
    r = run_single_stream(sut, SAMPLES, settings(min_query_count=50, min_duration_ms=0))
    assert len(r.latency_ns) == len(r.issue_ns) == len(r.sample_index) == 50
    assert len(sut.calls) == 50  # nothing untimed: warm-up happens before this loop


def test_runs_at_least_min_duration() -> None:
    sut = Sut()
    r = run_single_stream(sut, SAMPLES, settings(min_query_count=50, min_duration_ms=20))
    assert len(r.latency_ns) >= 50
    assert r.duration_ns >= 20_000_000
    assert int(r.issue_ns[-1] + r.latency_ns[-1] - r.issue_ns[0]) <= r.duration_ns
    assert len(sut.calls) == len(r.latency_ns)  # arrays grew past the initial 1024 without losing any


def test_min_count_dominates_short_duration() -> None:
    r = run_single_stream(Sut(), SAMPLES, settings(min_query_count=3000, min_duration_ms=1))
    assert len(r.latency_ns) == 3000  # beyond the initial 1024 capacity: exercises the resize


def test_every_call_is_timed() -> None:
    sut = Sut()
    r = run_single_stream(sut, SAMPLES, settings(min_query_count=50))
    assert len(sut.calls) == 50
    # each call happened inside its own measured interval
    for (t, _), t0, lat in zip(sut.calls, r.issue_ns.tolist(), r.latency_ns.tolist(), strict=True):
        assert t0 <= t <= t0 + lat


def test_raw_arrays() -> None:
    sut = Sut()
    r = run_single_stream(sut, SAMPLES, settings(min_query_count=400))
    for a in (r.issue_ns, r.latency_ns, r.sample_index):
        assert a.dtype == np.int64
    assert (r.latency_ns > 0).all()
    assert (np.diff(r.issue_ns) >= 0).all()
    assert (r.issue_ns[1:] >= r.issue_ns[:-1] + r.latency_ns[:-1]).all()  # one query at a time
    assert r.sample_index.min() >= 0 and r.sample_index.max() < len(SAMPLES)
    assert [s for _, s in sut.calls] == [SAMPLES[i] for i in r.sample_index.tolist()]
    assert len(set(r.sample_index.tolist())) > 1  # random order, not one sample repeated


def test_seed_fixes_sample_order() -> None:
    a = run_single_stream(Sut(), SAMPLES, settings(seed=7, min_query_count=100)).sample_index
    b = run_single_stream(Sut(), SAMPLES, settings(seed=7, min_query_count=100)).sample_index
    c = run_single_stream(Sut(), SAMPLES, settings(seed=8, min_query_count=100)).sample_index
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_max_query_count_caps() -> None:
    sut = Sut()
    r = run_single_stream(sut, SAMPLES, settings(min_query_count=10, min_duration_ms=600_000, max_query_count=200))
    assert len(r.latency_ns) == 200
    assert len(sut.calls) == 200


def test_cancel_set_before_start() -> None:
    sut = Sut()
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        run_single_stream(sut, SAMPLES, settings(min_query_count=50), cancel=ev)
    assert len(sut.calls) == 0  # no timed query


def test_cancel_during_run_stops_at_query_boundary() -> None:
    ev = threading.Event()
    sut = Sut(on_call=lambda n: ev.set() if n == 100 else None)
    with pytest.raises(Cancelled):
        run_single_stream(sut, SAMPLES, settings(min_query_count=100_000, min_duration_ms=600_000), cancel=ev)
    timed = len(sut.calls)
    assert 100 <= timed <= 256  # checked every 256 queries


def test_unset_cancel_event_does_not_cancel() -> None:
    r = run_single_stream(Sut(), SAMPLES, settings(min_query_count=600), cancel=threading.Event())
    assert len(r.latency_ns) == 600


def test_no_samples_rejected() -> None:
    with pytest.raises(ValueError):
        run_single_stream(Sut(), [], settings())
