"""The device agent's measurement engine: settings, feeds, schedules, scheduled runs, warm-up, conformance and the
per-scenario plan. Timing-dependent code runs either on a fake clock (exact assertions) or, briefly, on the real
clock (structural assertions only: order, spacing of the schedule, array lengths; never speeds)."""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest

import agents.harness.scheduled as scheduled_mod
import agents.harness.warmup as warmup_mod
from agents.harness.conformance import golden_outputs
from agents.harness.scheduled import (
    SPIN_NS,
    periodic_schedule,
    poisson_schedule,
    query_count,
    run_scheduled,
)
from agents.harness.single_stream import Cancelled
from agents.harness.warmup import warm_up
from agents.measure import SCENARIOS, Settings, audit_same_sample, batch_feeds, performance
from pilotlab import conformance
from pilotlab.attempt_metrics import compute_metrics

MS = 1_000_000


class FakeTime:
    """Stands in for the `time` module of a harness: every clock read advances `tick` ns, sleep advances exactly,
    and the system under test advances it by its service time."""

    def __init__(self, tick: int = 1_000) -> None:
        self.now = 5_000_000_000_000
        self.tick = tick
        self.sleeps: list[float] = []

    def perf_counter_ns(self) -> int:
        self.now += self.tick
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += int(seconds * 1e9)


class Sut:
    """Records every sample; optionally advances a fake clock and runs a hook on each call."""

    def __init__(self, fake: FakeTime | None = None, service_ns: Any = 0, on_call: Any = None) -> None:
        self.fake, self.service_ns, self.on_call = fake, service_ns, on_call
        self.calls: list[Any] = []

    def __call__(self, sample: Any) -> int:
        self.calls.append(sample)
        if self.fake is not None:
            n = len(self.calls) - 1
            self.fake.now += self.service_ns(n) if callable(self.service_ns) else self.service_ns
        if self.on_call is not None:
            self.on_call(len(self.calls))
        return 0


SAMPLES = [f"s{i}" for i in range(13)]


# ---------------------------------------------------------------- Settings


def test_settings_from_requested_normalises() -> None:
    s = Settings.from_requested("offline", {"batch_sizes": [8, 1, 8, "4"], "repeats": 0, "bogus": 1,
                                            "min_query_count": 500, "max_query_count": 10, "seed": 3})
    assert s.scenario == "offline"
    assert s.batch_sizes == [1, 4, 8]
    assert s.repeats == 1
    assert s.max_query_count == 500  # never below the minimum
    assert s.seed == 3
    assert not hasattr(s, "bogus")


def test_settings_defaults_and_empty_batches() -> None:
    s = Settings.from_requested("single-stream", {"batch_sizes": []})
    assert s.batch_sizes == [1]
    assert s.repeats == 3
    assert Settings.from_requested("single-stream", {}) == Settings(scenario="single-stream")
    a, b = Settings(scenario="offline"), Settings(scenario="offline")
    a.batch_sizes.append(99)
    assert b.batch_sizes == [1]  # no shared mutable default


def test_settings_repeats_kept_when_valid() -> None:
    assert Settings.from_requested("server", {"repeats": 3}).repeats == 3
    assert Settings.from_requested("server", {"repeats": -2}).repeats == 1


def test_settings_effective() -> None:
    s = Settings.from_requested("server", {"target_qps": 250.0, "latency_bound_ms": 15})
    eff = s.effective()
    assert eff["scenario"] == "server"
    assert eff["target_qps"] == 250.0 and eff["latency_bound_ms"] == 15
    assert eff == asdict(s)
    assert set(eff) == set(Settings.__dataclass_fields__)


def test_settings_loop() -> None:
    s = Settings.from_requested("single-stream", {"min_query_count": 7, "min_duration_ms": 3, "seed": 5,
                                                  "warmup_queries": 40})
    loop = s.loop()
    assert (loop.min_query_count, loop.min_duration_ms, loop.seed) == (7, 3, 5)  # warm-up runs before the loop
    assert loop.max_query_count == s.max_query_count


# ---------------------------------------------------------------- batch_feeds


def test_batch_feeds_shapes_and_wrap_around() -> None:
    arrays: dict[str, np.ndarray] = {"x": np.arange(30, dtype=np.float32).reshape(10, 3), "y": np.arange(10)}
    feeds = batch_feeds(arrays, ["x"], 4)
    assert len(feeds) == 3  # ceil(10 / 4)
    assert all(set(f) == {"x"} for f in feeds)
    assert all(f["x"].shape == (4, 3) and f["x"].dtype == np.float32 for f in feeds)
    assert all(f["x"].flags["C_CONTIGUOUS"] for f in feeds)
    assert [f["x"][:, 0].tolist() for f in feeds] == [[0, 3, 6, 9], [12, 15, 18, 21], [24, 27, 0, 3]]


def test_batch_feeds_several_inputs_stay_aligned() -> None:
    arrays = {"a": np.arange(5), "b": np.arange(5) * 10}
    for f in batch_feeds(arrays, ["a", "b"], 2):
        assert (f["b"] == f["a"] * 10).all()


def test_batch_feeds_count_capped_at_64() -> None:
    feeds = batch_feeds({"x": np.arange(1000)}, ["x"], 1)
    assert len(feeds) == 64
    assert [int(f["x"][0]) for f in feeds] == list(range(64))


def test_batch_larger_than_dataset() -> None:
    feeds = batch_feeds({"x": np.arange(3)}, ["x"], 8)
    assert len(feeds) == 1
    assert feeds[0]["x"].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]


# ---------------------------------------------------------------- schedules


def test_poisson_schedule_is_seeded() -> None:
    a, b, c = poisson_schedule(500, 200, 1), poisson_schedule(500, 200, 1), poisson_schedule(500, 200, 2)
    assert a.dtype == np.int64 and a.shape == (200,)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("qps", [50.0, 800.0, 20_000.0])
def test_poisson_schedule_rate(seed: int, qps: float) -> None:
    s = poisson_schedule(qps, 5000, seed)
    assert s[0] > 0  # the first arrival is one gap after the start, not at it
    assert (np.diff(s) > 0).all()
    mean_gap = s[-1] / 5000
    assert mean_gap == pytest.approx(1e9 / qps, rel=0.10)
    gaps = np.diff(s)
    assert np.std(gaps) / np.mean(gaps) == pytest.approx(1.0, rel=0.10)  # exponential: cv = 1, unlike periodic


def test_periodic_schedule_exact() -> None:
    assert periodic_schedule(1000, 5).tolist() == [0, MS, 2 * MS, 3 * MS, 4 * MS]
    assert periodic_schedule(3, 4).tolist() == [0, 333_333_333, 666_666_666, 1_000_000_000]
    assert periodic_schedule(100, 0).size == 0
    assert periodic_schedule(100, 3).dtype == np.int64


@pytest.mark.parametrize(("rate", "min_q", "min_ms", "expected"), [
    (100, 10, 1000, 101), (100, 500, 1000, 500), (1000, 0, 0, 1), (33.3, 0, 1000, 35), (10, 0, 2500, 26)])
def test_query_count(rate: float, min_q: int, min_ms: int, expected: int) -> None:
    assert query_count(rate, min_q, min_ms) == expected


# ---------------------------------------------------------------- run_scheduled, real clock


def test_run_scheduled_real_clock_periodic() -> None:
    sut = Sut()
    offsets = periodic_schedule(1000, 30)
    r = run_scheduled(sut, SAMPLES, offsets, seed=4)
    for a in (r.scheduled_ns, r.issue_ns, r.latency_ns, r.sample_index):
        assert a.shape == (30,) and a.dtype == np.int64
    assert (r.issue_ns >= r.scheduled_ns).all()  # never early
    assert np.diff(r.scheduled_ns).tolist() == [MS] * 29  # releases keep the schedule's spacing exactly
    assert (r.scheduled_ns - r.scheduled_ns[0]).tolist() == offsets.tolist()
    assert (r.issue_ns[1:] >= r.issue_ns[:-1] + r.latency_ns[:-1]).all()  # one query at a time
    assert r.duration_ns >= 29 * MS
    assert len(sut.calls) == 30
    assert sut.calls == [SAMPLES[i] for i in r.sample_index.tolist()]
    again = run_scheduled(Sut(), SAMPLES, periodic_schedule(1000, 30), seed=4)
    assert again.sample_index.tolist() == r.sample_index.tolist()  # the seed fixes the sample order


def test_run_scheduled_cancel_before_start() -> None:
    sut = Sut()
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        run_scheduled(sut, SAMPLES, periodic_schedule(1000, 30), cancel=ev)
    assert sut.calls == []


def test_run_scheduled_unset_cancel_runs_to_the_end() -> None:
    r = run_scheduled(Sut(), SAMPLES, periodic_schedule(2000, 10), cancel=threading.Event())
    assert r.latency_ns.size == 10


# ---------------------------------------------------------------- run_scheduled, fake clock


@pytest.fixture
def fake_sched(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(scheduled_mod, "time", fake)
    return fake


def test_run_scheduled_on_time(fake_sched: FakeTime) -> None:
    sut = Sut(fake_sched, service_ns=200_000)
    r = run_scheduled(sut, SAMPLES, periodic_schedule(1000, 10))
    lateness = r.issue_ns - r.scheduled_ns
    assert (lateness >= 0).all()
    assert (lateness <= 3 * fake_sched.tick).all()  # issued at its release, to within a few clock reads
    assert ((r.latency_ns >= 200_000) & (r.latency_ns <= 200_000 + 2 * fake_sched.tick)).all()
    assert len(fake_sched.sleeps) == 10  # slept towards every release ...
    assert all(s * 1e9 < MS - SPIN_NS + 1 for s in fake_sched.sleeps)  # ... but woke early enough to spin
    # the span runs from the first release (1 ms after the call) to the last completion
    assert r.duration_ns == pytest.approx(9 * MS + 200_000, abs=10 * fake_sched.tick)


def test_run_scheduled_late_queries_issue_at_once(fake_sched: FakeTime) -> None:
    sut = Sut(fake_sched, service_ns=2_500_000)  # slower than the 1 ms period: the queue builds up
    r = run_scheduled(sut, SAMPLES, periodic_schedule(1000, 10))
    assert np.diff(r.scheduled_ns).tolist() == [MS] * 9  # the schedule is kept; delay shows as lateness
    gap = r.issue_ns[1:] - (r.issue_ns[:-1] + r.latency_ns[:-1])
    assert (gap >= 0).all() and (gap <= 3 * fake_sched.tick).all()  # next query issued as soon as one ends
    for q in range(10):
        assert r.issue_ns[q] - r.scheduled_ns[q] >= q * 1_500_000
    assert len(fake_sched.sleeps) == 1  # only the first release was ahead


def test_run_scheduled_cancel_during_run(fake_sched: FakeTime) -> None:
    ev = threading.Event()
    sut = Sut(fake_sched, service_ns=100_000, on_call=lambda n: ev.set() if n == 5 else None)
    with pytest.raises(Cancelled):
        run_scheduled(sut, SAMPLES, periodic_schedule(1000, 30), cancel=ev)
    assert len(sut.calls) == 5  # stopped at the next query boundary


def test_run_scheduled_cancel_while_running_late(fake_sched: FakeTime) -> None:
    # An overloaded SUT never gets ahead of the schedule, so it never sleeps: cancel must still be honoured.
    ev = threading.Event()
    sut = Sut(fake_sched, service_ns=2_500_000, on_call=lambda n: ev.set() if n == 3 else None)
    with pytest.raises(Cancelled):
        run_scheduled(sut, SAMPLES, periodic_schedule(1000, 1000), cancel=ev)
    assert len(sut.calls) == 3


# ---------------------------------------------------------------- warm-up (fake clock)


@pytest.fixture
def fake_warm(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime(tick=0)
    monkeypatch.setattr(warmup_mod, "time", fake)
    return fake


def test_warm_up_constant_time_settles_after_two_windows(fake_warm: FakeTime) -> None:
    sut = Sut(fake_warm, service_ns=MS)
    r = warm_up(sut, SAMPLES, min_queries=10, min_ms=0)
    assert r == {"queries": 64, "ms": 64.0, "settled": True, "last_window_median_ms": 1.0}
    assert sut.calls == [SAMPLES[i % len(SAMPLES)] for i in range(64)]  # cycles through the samples


def test_warm_up_respects_min_queries(fake_warm: FakeTime) -> None:
    r = warm_up(Sut(fake_warm, service_ns=MS), SAMPLES, min_queries=100, min_ms=0)
    assert r["queries"] == 100 and r["settled"] is True


def test_warm_up_respects_min_ms(fake_warm: FakeTime) -> None:
    r = warm_up(Sut(fake_warm, service_ns=MS), SAMPLES, min_queries=10, min_ms=150)
    assert r["queries"] == 150 and r["settled"] is True
    assert r["ms"] == 150.0


def test_warm_up_unsettled_stops_at_max_ms(fake_warm: FakeTime) -> None:
    # latency 1 ms + 0.1 ms per query: elapsed after q queries is q + 0.05 q (q - 1) ms, first >= 500 at q = 91
    sut = Sut(fake_warm, service_ns=lambda i: MS + 100_000 * i)
    r = warm_up(sut, SAMPLES, min_queries=10, min_ms=0, max_ms=500)
    assert r["settled"] is False
    assert r["queries"] == 91
    assert r["ms"] == pytest.approx(500.5)


def test_warm_up_max_ms_never_cuts_min_queries(fake_warm: FakeTime) -> None:
    sut = Sut(fake_warm, service_ns=lambda i: MS + 100_000 * i)
    r = warm_up(sut, SAMPLES, min_queries=200, min_ms=0, max_ms=10)
    assert r["queries"] == 200
    assert r["settled"] is False


def test_warm_up_real_clock_structure() -> None:
    sut = Sut()
    r = warm_up(sut, SAMPLES, min_queries=70, min_ms=0, max_ms=2_000)
    assert r["queries"] >= 70
    assert r["queries"] == len(sut.calls)
    assert r["ms"] >= 0 and r["last_window_median_ms"] >= 0
    assert isinstance(r["settled"], bool)


# ---------------------------------------------------------------- conformance


GOLDEN = {
    "scores": np.array([[0.1, 0.7, 0.2, 0.0], [0.5, 0.1, 0.2, 0.2], [2.0, 0.0, 0.0, 4.0]]),
    "aux": np.array([[0.0, 3.0], [1.0, 1.0], [1.0, -2.0]]),
}
GOT = {
    "q0": [np.array([0.1, 0.7, 0.2, 0.0], dtype=np.float32), np.array([1e-7, 3.0])],
    "q1": [np.array([0.1, 0.5, 0.2, 0.2]), np.array([1.0, 1.0])],
    "q2": [np.array([2.5, 0.0, 0.0, 4.0]), np.array([1.0, 1.0])],
    "q3": [np.zeros(4), np.zeros(2)],
}


def test_golden_outputs_issue_only_golden_samples_and_stack_them() -> None:
    calls: list[str] = []

    def issue(sample: str) -> list[Any]:
        calls.append(sample)
        return [x[None, :] for x in GOT[sample]] + [np.array(["ignored"])]  # each output with its batch axis of 1

    outs = golden_outputs(issue, ["q0", "q1", "q2", "q3"], ["scores", "aux", "extra"], GOLDEN)
    assert calls == ["q0", "q1", "q2"]  # as many as the golden file holds
    assert sorted(outs) == ["aux", "scores"]
    assert outs["scores"].shape == (3, 4) and outs["aux"].shape == (3, 2)
    assert outs["scores"][1].tolist() == [0.1, 0.5, 0.2, 0.2]


def test_golden_outputs_through_the_one_rule() -> None:
    outs = golden_outputs(lambda s: GOT[s], ["q0", "q1", "q2", "q3"], ["scores", "aux"], GOLDEN)
    r = conformance.compare(outs, GOLDEN)
    m = conformance.reduce_records(conformance.from_samples(dict(conformance.to_samples(r))))  # type: ignore[arg-type]
    # worst |y-g|: aux of q2 is off by 3; relative to each array's peak: scores 0.5/4, aux 3/3
    assert m["max_abs_err"] == pytest.approx(3.0)
    assert m["max_rel_err"] == pytest.approx(1.0)
    # argmax agrees for scores on q0 and q2 (2/3), for aux on q0 and q1 only (tie at q1: first index) -> min
    assert m["top1_agreement"] == pytest.approx(2 / 3)
    assert m["n"] == 3
    assert m == {**conformance.reduce_records(r)}
    assert conformance.measure_conformance(outs, GOLDEN) == {f"conformance.{k}": v for k, v in m.items() if k != "n"}


def test_golden_outputs_refusals() -> None:
    with pytest.raises(ValueError, match="name none of the model's outputs"):
        golden_outputs(lambda s: [np.zeros(4)], ["q0"], ["logits"], GOLDEN)
    with pytest.raises(ValueError, match="golden arrays aux name no output"):
        golden_outputs(lambda s: [np.zeros(4)], ["q0"], ["scores"], GOLDEN)
    with pytest.raises(ValueError, match="hold 3 samples, the dataset only 2"):
        golden_outputs(lambda s: GOT[s], ["q0", "q1"], ["scores", "aux"], GOLDEN)


# ---------------------------------------------------------------- the scenario plan


def tiny(scenario: str, **kw: Any) -> Settings:
    return Settings.from_requested(scenario, {"repeats": 1, "min_query_count": 12, "min_duration_ms": 0,
                                              "max_query_count": 12, **kw})


class Batched:
    def __init__(self) -> None:
        self.asked: list[int] = []

    def __call__(self, b: int) -> list[dict[str, np.ndarray]]:
        self.asked.append(b)
        return [{"x": np.full(b, q)} for q in range(3)]


def check_set(arrs: dict[str, np.ndarray], n: int) -> None:
    assert set(arrs) == {"index", "sample_index", "t_ns", "value", "aux"}
    for a in arrs.values():
        assert a.shape == (n,) and a.dtype == np.int64
    assert arrs["index"].tolist() == list(range(n))
    assert (np.diff(arrs["t_ns"]) > 0).all()


def test_performance_single_stream() -> None:
    sut = Sut()
    out, _ = performance(tiny("single-stream"), sut, SAMPLES, Batched(), None)
    assert [k for k, _ in out] == ["latency"]
    check_set(out[0][1], 12)
    assert (out[0][1]["aux"] == 0).all()
    assert sut.calls == [SAMPLES[i] for i in out[0][1]["sample_index"].tolist()]  # no warm-up inside the plan


def test_performance_repeats() -> None:
    out, _ = performance(tiny("single-stream", repeats=3), Sut(), SAMPLES, Batched(), None)
    assert [k for k, _ in out] == ["latency;repeat=0", "latency;repeat=1", "latency;repeat=2"]
    orders = [a["sample_index"].tolist() for _, a in out]
    assert orders[0] != orders[1] != orders[2]  # each repeat draws its own sample order (seed + repeat)
    m = compute_metrics("single-stream", tiny("single-stream").effective(), dict(out), None)
    assert m["repeats"]["k"] == 3 and m["validity"]["valid"] is True


def test_performance_offline() -> None:
    batched, sut = Batched(), Sut()
    out, _ = performance(tiny("offline", batch_sizes=[4, 1]), sut, SAMPLES, batched, None)
    assert [k for k, _ in out] == ["latency;batch=1", "latency;batch=4"]
    assert batched.asked == [1, 4]
    for (_, arrs), b in zip(out, (1, 4), strict=True):
        check_set(arrs, 12)
        assert (arrs["sample_index"] % b == 0).all()  # first sample of each batched query
    assert all(c["x"].shape == (4,) for c in sut.calls[12:])  # the batch-4 run issued batch-4 feeds
    m = compute_metrics("offline", tiny("offline").effective(), dict(out), None)
    assert [r["batch"] for r in m["offline"]["by_batch"]] == [1, 4]


def test_performance_offline_with_repeats() -> None:
    out, _ = performance(tiny("offline", batch_sizes=[2, 1], repeats=2), Sut(), SAMPLES, Batched(), None)
    assert [k for k, _ in out] == ["latency;batch=1;repeat=0", "latency;batch=2;repeat=0",
                                   "latency;batch=1;repeat=1", "latency;batch=2;repeat=1"]


def test_performance_multi_stream() -> None:
    batched = Batched()
    out, _ = performance(tiny("multi-stream", samples_per_query=3), Sut(), SAMPLES, batched, None)
    assert [k for k, _ in out] == ["latency"]
    assert batched.asked == [3]


def test_performance_server() -> None:
    s = tiny("server", target_qps=5000.0)
    out, _ = performance(s, Sut(), SAMPLES, Batched(), None)
    assert [k for k, _ in out] == ["latency"]
    arrs = out[0][1]
    check_set(arrs, 12)
    assert (arrs["t_ns"] >= arrs["aux"]).all()  # aux carries the scheduled arrival, never after the issue
    arrivals = arrs["aux"] - arrs["aux"][0]
    assert arrivals.tolist() == (poisson_schedule(5000.0, 12, 0) - poisson_schedule(5000.0, 12, 0)[0]).tolist()
    m = compute_metrics("server", s.effective(), dict(out), None)
    assert m["server"]["target_qps"] == 5000.0 and m["latency_ms"]["n"] == 12


def test_performance_periodic() -> None:
    s = tiny("periodic", rate_hz=2000.0, deadline_ms=100.0, repeats=2)
    out, _ = performance(s, Sut(), SAMPLES, Batched(), None)
    assert [k for k, _ in out] == ["latency;repeat=0", "latency;repeat=1"]
    for _, arrs in out:
        check_set(arrs, 12)
        assert np.diff(arrs["aux"]).tolist() == [500_000] * 11
        assert (arrs["t_ns"] >= arrs["aux"]).all()
    m = compute_metrics("periodic", s.effective(), dict(out), None)
    assert m["periodic"]["n"] == 12 and m["periodic"]["rate_hz"] == 2000.0


def test_performance_periodic_count_covers_duration() -> None:
    s = Settings.from_requested("periodic", {"rate_hz": 2000.0, "min_query_count": 5, "min_duration_ms": 10})
    out, _ = performance(s, Sut(), SAMPLES, Batched(), None)
    assert out[0][1]["value"].size == query_count(2000.0, 5, 10) == 21


def test_performance_unknown_scenario() -> None:
    assert "burst" not in SCENARIOS
    with pytest.raises(ValueError, match="unknown scenario"):
        performance(tiny("burst"), Sut(), SAMPLES, Batched(), None)


def test_performance_cancelled() -> None:
    ev = threading.Event()
    ev.set()
    for scenario, kw in [("single-stream", {}), ("periodic", {"rate_hz": 1000.0}),
                         ("server", {"target_qps": 1000.0})]:
        with pytest.raises(Cancelled):
            performance(tiny(scenario, **kw), Sut(), SAMPLES, Batched(), ev)


def test_audit_same_sample() -> None:
    sut = Sut()
    s = Settings.from_requested("single-stream", {"audit_queries": 25})
    (kind, arrs), (vkind, varied) = audit_same_sample(s, sut, SAMPLES, None)
    assert (kind, vkind) == ("audit-same", "audit-varied")
    check_set(arrs, 25)
    check_set(varied, 25)
    assert (arrs["sample_index"] == 0).all()
    assert sut.calls[0::2] == [SAMPLES[0]] * 25  # one sample, over and over ...
    assert sut.calls[1::2] == [SAMPLES[i] for i in varied["sample_index"]]  # ... interleaved with varied ones
    assert (varied["t_ns"] >= arrs["t_ns"] + arrs["value"]).all()


def test_harness_settings_fall_back_to_the_one_table_of_defaults() -> None:
    """The harness plan's own defaults cannot drift from pilotlab.tasks, where every setting's default lives."""
    from pilotlab.tasks import SCENARIOS as TASK_SCENARIOS
    from pilotlab.tasks import effective, requested

    assert tuple(SCENARIOS) == TASK_SCENARIOS
    # generative runs its own plan from the effective settings (agents/generative_run.py), never this one's
    for scenario in (s for s in TASK_SCENARIOS if s != "generative"):
        req = {"server": {"target_qps": 10.0}, "periodic": {"rate_hz": 100.0, "deadline_ms": 10.0}}.get(scenario, {})
        eff = effective(requested(scenario, req)).to_dict()
        plan = asdict(Settings.from_requested(scenario, req))
        shared = set(plan) & set(eff)
        assert {k: plan[k] for k in shared} == {k: eff[k] for k in shared}, scenario
        built = asdict(Settings.from_requested(scenario, eff))  # what the job runner does: a no-op normalisation
        assert {k: built[k] for k in shared} == {k: eff[k] for k in shared}, scenario


def test_performance_windows_bracket_each_set_and_one_repeat_runs_alone() -> None:
    s = tiny("offline", batch_sizes=[2, 1], repeats=3)
    out, windows = performance(s, Sut(), SAMPLES, Batched(), None, repeat=1)
    assert [k for k, _ in out] == ["latency;batch=1;repeat=1", "latency;batch=2;repeat=1"]
    assert [w["kind"] for w in windows] == [k for k, _ in out]
    for (_, arrs), w in zip(out, windows, strict=True):
        assert w["start_ns"] <= int(arrs["t_ns"].min())
        assert int((arrs["t_ns"] + arrs["value"]).max()) <= w["end_ns"]


def test_performance_min_window_lengthens_the_timed_run() -> None:
    s = tiny("single-stream", max_query_count=1_000_000)
    out, windows = performance(s, Sut(), SAMPLES, Batched(), None, min_window_ms=30)
    assert windows[0]["end_ns"] - windows[0]["start_ns"] >= 30_000_000
    assert out[0][1]["value"].size > 12  # it ran past the query minimum to fill the window
