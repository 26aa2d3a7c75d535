"""Per-scenario metrics and validity from hand-built raw samples, with hand-computed expectations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pilotlab.attempt_metrics import compute_metrics, parse_kind
from pilotlab.domain import Observations
from pilotlab.grading import evaluate
from pilotlab.stats import clopper_pearson, wilson_interval

MS = 1_000_000
US = 1_000
BASE = 7_000_000_000_000  # an absolute perf_counter reading: nothing may assume the clock starts at 0


def raw(t_ns: Any, value: Any, aux: Any = None, sample_index: Any = None, fvalue: Any = None) -> dict[str, np.ndarray]:
    value = np.asarray(value, dtype=np.int64)
    n = value.size
    return {"index": np.arange(n, dtype=np.int64),
            "sample_index": np.asarray(sample_index if sample_index is not None else np.arange(n), dtype=np.int64),
            "t_ns": np.asarray(t_ns, dtype=np.int64), "value": value,
            "aux": np.asarray(aux if aux is not None else np.zeros(n), dtype=np.int64),
            "fvalue": np.asarray(fvalue if fvalue is not None else np.zeros(n), dtype=np.float64)}


def back_to_back(latencies_ns: Any, start: int = BASE) -> dict[str, np.ndarray]:
    """A single-stream set: each query issued the moment the previous one completed."""
    lat = np.asarray(latencies_ns, dtype=np.int64)
    t = start + np.concatenate([[0], np.cumsum(lat)[:-1]])
    return raw(t, lat)


def constant(n: int, lat_ms: float) -> dict[str, np.ndarray]:
    return back_to_back(np.full(n, int(lat_ms * MS)))


# 1..100 ms in a scrambled (but fixed) order: percentiles must not depend on issue order.
ONE_TO_100_NS = np.random.default_rng(3).permutation(np.arange(1, 101)) * MS


def test_parse_kind() -> None:
    assert parse_kind("latency") == ("latency", {})
    assert parse_kind("latency;batch=8;repeat=1") == ("latency", {"batch": "8", "repeat": "1"})
    assert parse_kind("audit-same") == ("audit-same", {})
    assert parse_kind("x;a=b=c;junk") == ("x", {"a": "b=c"})


# ---------------------------------------------------------------- single-stream


def single(settings: dict[str, Any] | None = None) -> dict[str, Any]:
    s = {"min_query_count": 100, "min_duration_ms": 5000, **(settings or {})}
    return compute_metrics("single-stream", s, {"latency": back_to_back(ONE_TO_100_NS)}, None)


def test_single_stream_percentiles_and_throughput() -> None:
    m = single()
    lat = m["latency_ms"]
    assert (lat["p50"], lat["p90"], lat["p99"]) == (50.0, 90.0, 99.0)
    assert lat["mean"] == pytest.approx(50.5)
    assert (lat["min"], lat["max"], lat["n"]) == (1.0, 100.0, 100)
    assert lat["method"] == "nearest-rank"
    assert m["throughput_per_s"] == pytest.approx(100 / 5.050)  # span = sum of latencies, back to back
    assert m["validity"] == {"valid": True, "reasons": []}
    assert "duration_ms" not in m
    assert m["energy"]["source"] == "unavailable"


def test_single_stream_early_stopping() -> None:
    es = single()["latency_ms"]["early_stopping"]
    assert set(es) == {"p90", "p99"}
    assert es["p90"]["overlatency_allowed"] == 3  # BinomCDF(3; 100, .1) = .0078 <= .01 < BinomCDF(4; ...) = .024
    assert es["p90"]["estimate"] == 97.0  # in ms, like the percentiles
    assert es["p90"]["n"] == 100
    assert es["p99"]["estimate"] is None  # 100 < 459 queries
    assert es["p99"]["min_queries"] == 459


def test_single_stream_too_few_queries() -> None:
    m = single({"min_query_count": 101})
    assert m["validity"]["valid"] is False
    assert m["validity"]["reasons"] == ["100 queries, fewer than min_query_count 101"]


def test_single_stream_too_short() -> None:
    m = single({"min_duration_ms": 5051})
    assert m["validity"]["valid"] is False
    assert len(m["validity"]["reasons"]) == 1
    assert "ran 5050 ms, shorter than min_duration_ms 5051" in m["validity"]["reasons"][0]


def test_single_stream_exactly_at_minimums_is_valid() -> None:
    assert single({"min_query_count": 100, "min_duration_ms": 5050})["validity"]["valid"] is True


def test_single_stream_both_reasons() -> None:
    reasons = single({"min_query_count": 1000, "min_duration_ms": 60_000})["validity"]["reasons"]
    assert len(reasons) == 2
    assert "fewer than min_query_count" in reasons[0]
    assert "shorter than min_duration_ms" in reasons[1]


def test_no_performance_samples_is_invalid() -> None:
    m = compute_metrics("single-stream", {}, {"latency": back_to_back([])}, None)
    assert m["validity"] == {"valid": False, "reasons": ["no performance samples"]}
    assert "latency_ms" not in m


# ---------------------------------------------------------------- offline


@pytest.mark.parametrize(("lat8_ms", "best", "best_tp"), [(10, 8, 800.0), (20, 1, 500.0)])
def test_offline_by_batch(lat8_ms: int, best: int, best_tp: float) -> None:
    samples = {"latency;batch=8": constant(10, lat8_ms), "latency;batch=1": constant(10, 2)}
    m = compute_metrics("offline", {"min_query_count": 10}, samples, None)
    off = m["offline"]
    tp8 = 10 * 8 / (10 * lat8_ms / 1000)
    assert off["by_batch"] == [
        {"batch": 1, "throughput_per_s": pytest.approx(500.0), "queries": 10, "p50_ms": 2.0, "p99_ms": 2.0},
        {"batch": 8, "throughput_per_s": pytest.approx(tp8), "queries": 10, "p50_ms": float(lat8_ms),
         "p99_ms": float(lat8_ms)},
    ]
    assert off["best_batch"] == best
    assert off["best_throughput_per_s"] == pytest.approx(best_tp)
    assert m["throughput_per_s"] == off["best_throughput_per_s"]
    assert m["latency_ms"]["p50"] == 2.0  # the smallest batch's per-query latency
    assert m["validity"]["valid"] is True


def test_offline_repeats_grade_each_batch_on_its_median_repeat() -> None:
    lat = {1: [2, 3, 4], 8: [10, 30, 12]}  # ms per query, by batch size and repeat
    samples = {f"latency;batch={b};repeat={r}": constant(10, ms) for b, per in lat.items() for r, ms in enumerate(per)}
    m = compute_metrics("offline", {"min_query_count": 10, "stability_max_spread": 0.1}, samples, None)
    by = {row["batch"]: row for row in m["offline"]["by_batch"]}
    assert by[1]["p50_ms"] == 3.0 and by[8]["p50_ms"] == 12.0  # the median repeat of each batch size
    assert m["offline"]["best_batch"] == 8 and m["throughput_per_s"] == pytest.approx(8 * 1000 / 12)
    assert m["latency_ms"]["p50"] == 3.0
    rep = m["repeats"]
    assert rep["batch"] == 8 and rep["p50_ms"] == [10.0, 30.0, 12.0]
    assert rep["spread_p50"] == pytest.approx(20 / 12) and m["stability"]["stable"] is False


def test_offline_validity_names_the_batch() -> None:
    samples = {"latency;batch=1": constant(20, 2), "latency;batch=8": constant(10, 10)}
    m = compute_metrics("offline", {"min_query_count": 20}, samples, None)
    assert m["validity"]["reasons"] == ["batch 8, 10 queries, fewer than min_query_count 20"]


# ---------------------------------------------------------------- server


def server_samples() -> dict[str, dict[str, np.ndarray]]:
    """Arrivals every 200 ms; query i responds (i+1) ms after its arrival: half queueing, half service."""
    n = 100
    aux = BASE + np.arange(n) * 200 * MS
    response = (np.arange(n) + 1) * MS
    delay = response // 2
    return {"latency": raw(aux + delay, response - delay, aux)}


@pytest.mark.parametrize(("bound", "within"), [(99.0, 1.0), (150.0, 1.0), (98.9, 0.0)])
def test_server_latency_counts_from_arrival(bound: float, within: float) -> None:
    m = compute_metrics("server", {"target_qps": 5, "latency_bound_ms": bound, "min_query_count": 100},
                        server_samples(), None)
    lat = m["latency_ms"]
    assert (lat["p50"], lat["p90"], lat["p99"], lat["max"]) == (50.0, 90.0, 99.0, 100.0)  # not the service time
    span_s = (99 * 200 + 100) / 1000  # last completion minus first arrival
    assert m["throughput_per_s"] == pytest.approx(100 / span_s)
    srv = m["server"]
    assert srv["target_qps"] == 5.0
    assert srv["achieved_qps"] == pytest.approx(100 / span_s)
    assert srv["latency_bound_ms"] == bound
    assert srv["p99_within_bound"] == within
    assert m["validity"]["valid"] is bool(within)
    if not within:
        assert m["validity"]["reasons"] == ["p99 99.000 ms exceeds the latency bound 98.9 ms"]


# ---------------------------------------------------------------- periodic


def periodic_samples() -> dict[str, dict[str, np.ndarray]]:
    """51 releases every 10 ms; release jitter (i % 5) * 20 µs; 2 ms service, 12 ms for queries 7, 23, 41."""
    n = 51
    aux = BASE + np.arange(n) * 10 * MS
    jitter = (np.arange(n) % 5) * 20 * US
    service = np.full(n, 2 * MS)
    service[[7, 23, 41]] = 12 * MS
    return {"latency": raw(aux + jitter, service, aux)}


def test_periodic_metrics() -> None:
    m = compute_metrics("periodic", {"rate_hz": 100, "deadline_ms": 5, "min_query_count": 51},
                        periodic_samples(), None)
    per = m["periodic"]
    assert per["rate_hz"] == 100.0 and per["deadline_ms"] == 5.0 and per["n"] == 51
    assert per["deadline_misses"] == 3
    assert per["deadline_miss_rate"] == pytest.approx(3 / 51)
    # release jitter µs: 11 x 0, 10 x 20, 10 x 40, 10 x 60, 10 x 80 -> rank 26 is 40, rank 51 is 80
    assert (per["release_jitter_us_p50"], per["release_jitter_us_p99"], per["release_jitter_us_max"]) == (40, 80, 80)
    # responses µs (completion - release): 11 x 2000, 9 x 2020, 9 x 2040, 9 x 2060, 10 x 2080, 12020, 12040,
    # 12060; median 2040; worst deviation 12060 - 2040
    assert per["completion_jitter_us_max"] == 10_020.0
    assert per["completion_jitter_us_p99"] == 10_020.0
    assert m["latency_ms"]["p50"] == 2.04  # response, counted from the release
    assert m["latency_ms"]["max"] == 12.06
    assert m["throughput_per_s"] == pytest.approx(51 / 0.502)  # last completion: release 500 ms + 2 ms
    assert m["validity"]["valid"] is True  # misses are a figure to grade, not a validity rule


def test_periodic_deadline_is_strict() -> None:
    # deadline exactly 2 ms: the 11 on-time, zero-jitter responses of exactly 2 ms are not misses
    m = compute_metrics("periodic", {"rate_hz": 100, "deadline_ms": 2}, periodic_samples(), None)
    assert m["periodic"]["deadline_misses"] == 40


def test_periodic_without_deadline_counts_no_misses() -> None:
    m = compute_metrics("periodic", {"rate_hz": 100}, periodic_samples(), None)
    assert m["periodic"]["deadline_misses"] == 0
    assert m["periodic"]["deadline_ms"] == 0.0


# ---------------------------------------------------------------- repeats


def test_repeats_take_the_median_repeat_by_p50() -> None:
    samples = {"latency;repeat=0": constant(10, 3), "latency;repeat=1": constant(10, 1),
               "latency;repeat=2": constant(10, 2)}
    m = compute_metrics("single-stream", {"min_query_count": 10}, samples, None)
    assert m["latency_ms"]["p50"] == 2.0
    assert m["throughput_per_s"] == pytest.approx(500.0)  # repeat 2's, not another's
    rep = m["repeats"]
    assert rep["k"] == 3
    assert rep["statistic"] == "median repeat by p50"
    assert rep["p50_ms"] == [3.0, 1.0, 2.0]  # in repeat order
    assert rep["throughput_per_s"] == pytest.approx([1000 / 3, 1000.0, 500.0])
    assert rep["spread_p50_ms"] == 2.0
    assert m["validity"]["valid"] is True


@pytest.mark.parametrize("k", [2, 3])
def test_repeats_validity_names_each_repeat(k: int) -> None:
    samples = {f"latency;repeat={r}": constant(10, r + 1) for r in range(k)}
    m = compute_metrics("single-stream", {"min_query_count": 11}, samples, None)
    assert m["validity"]["reasons"] == [f"repeat {r}: 10 queries, fewer than min_query_count 11" for r in range(k)]


def test_single_repeat_has_no_repeats_block() -> None:
    m = compute_metrics("single-stream", {}, {"latency": constant(10, 1)}, None)
    assert "repeats" not in m and "stability" not in m


def test_repeats_that_spread_are_unstable_with_the_agents_hint_but_still_valid() -> None:
    samples = {"latency;repeat=0": constant(10, 3), "latency;repeat=1": constant(10, 1),
               "latency;repeat=2": constant(10, 2)}
    obs = Observations(executor={"instability_hint": "CPU frequency changed between repeats"})
    m = compute_metrics("single-stream", {"min_query_count": 10}, samples, None, observations=obs)
    assert m["stability"] == {"stable": False, "spread_p50": 1.0, "max_spread": 0.10,
                              "reason": "repeats' p50 spread by 100% of their median, more than 10%",
                              "likely_cause": "CPU frequency changed between repeats"}
    rep = m["repeats"]
    assert (rep["spread_p50"], rep["max_spread"], rep["stable"]) == (1.0, 0.10, False)
    assert m["validity"]["valid"] is True  # unstable is reported, never invalid


@pytest.mark.parametrize(("max_spread", "stable"), [(0.10, True), (0.04, False)])
def test_stability_is_judged_against_the_assigned_max_spread(max_spread: float, stable: bool) -> None:
    samples = {"latency;repeat=0": constant(10, 2.0), "latency;repeat=1": constant(10, 2.1),
               "latency;repeat=2": constant(10, 2.05)}
    obs = Observations(executor={"instability_hint": "another process ran"})
    m = compute_metrics("single-stream", {"stability_max_spread": max_spread}, samples, None, observations=obs)
    st = m["stability"]
    assert st["spread_p50"] == pytest.approx(0.1 / 2.05) and st["stable"] is stable
    assert st["max_spread"] == max_spread and m["repeats"]["stable"] is stable
    assert (st["reason"] is None, st["likely_cause"] is None) == (stable, stable)


# ---------------------------------------------------------------- audits


def with_predictions(perf_values: list[int]) -> dict[str, dict[str, np.ndarray]]:
    acc = raw(np.zeros(10), [5, 4, 3, 2, 1, 0, 9, 8, 7, 6])
    perf = raw(np.zeros(3), perf_values, sample_index=[3, 5, 7])
    return {"latency": constant(10, 2), "prediction": acc, "perf-prediction": perf}


def test_audit_test01_matching() -> None:
    m = compute_metrics("single-stream", {}, with_predictions([2, 0, 8]), None)
    assert m["audit"]["test01"] == {"checked": 3, "mismatches": 0, "passed": True}
    assert m["validity"]["valid"] is True


def test_audit_test01_mismatch() -> None:
    m = compute_metrics("single-stream", {}, with_predictions([2, 1, 8]), None)
    assert m["audit"]["test01"] == {"checked": 3, "mismatches": 1, "passed": False}
    assert m["validity"]["valid"] is False
    assert m["validity"]["reasons"] == ["audit TEST01: 1 performance-run outputs differ from the accuracy run"]


def audit_same(headline_ms: float, same_ms: float) -> dict[str, Any]:
    samples = {"latency": constant(20, headline_ms), "audit-same": constant(10, same_ms)}
    return compute_metrics("single-stream", {}, samples, None)


def test_audit_test04_caching_suspected() -> None:
    m = audit_same(2.0, 1.5)
    t4 = m["audit"]["test04"]
    assert t4["same_sample_p50_ms"] == 1.5 and t4["varied_p50_ms"] == 2.0
    assert t4["ratio"] == pytest.approx(0.75)
    assert t4["conclusive"] is True and t4["passed"] is False
    assert m["validity"]["valid"] is False
    assert len(m["validity"]["reasons"]) == 1
    assert "TEST04" in m["validity"]["reasons"][0]
    assert "1.33x faster" in m["validity"]["reasons"][0]


def test_audit_test04_at_min_ratio_passes() -> None:
    m = audit_same(2.0, 1.8)
    assert m["audit"]["test04"]["passed"] is True
    assert m["validity"]["valid"] is True


def test_audit_test04_inconclusive_for_fast_models() -> None:
    m = audit_same(0.5, 0.1)
    t4 = m["audit"]["test04"]
    assert t4["ratio"] == pytest.approx(0.2)
    assert t4["conclusive"] is False
    assert t4["passed"] is True
    assert m["validity"]["valid"] is True


def test_audit_absent_without_audit_sets() -> None:
    assert "audit" not in compute_metrics("single-stream", {}, {"latency": constant(10, 1)}, None)


# ---------------------------------------------------------------- conformance and accuracy


def test_conformance() -> None:
    # rows: (sample, array 0 "p" with a class axis / array 1 "z" without): agree, abs err; peaks 0.5 and 0.1
    conf = raw(np.zeros(6), [1, -1, 1, -1, 0, -1], aux=[0, 1, 0, 1, 0, 1], sample_index=[0, 0, 1, 1, 2, 2],
               fvalue=[0.1, 0.25, 0.5, 0.0, 0.2, 0.05])
    peaks = raw(np.zeros(2), [0, 0], fvalue=[0.5, 0.1])
    m = compute_metrics("single-stream", {}, {"latency": constant(5, 1), "conformance": conf,
                                              "conformance-peak": peaks}, None)
    assert m["conformance"] == {"n": 3, "max_abs_err": 0.5, "max_rel_err": 2.5, "top1_agreement": 2 / 3}


def test_conformance_without_peaks_is_refused() -> None:
    conf = raw(np.zeros(1), [1], fvalue=[0.1])
    m = compute_metrics("single-stream", {}, {"latency": constant(5, 1), "conformance": conf}, None)
    assert "conformance" not in m
    assert not m["validity"]["valid"]
    assert any("without their 'conformance-peak' set" in r for r in m["validity"]["reasons"])


def test_accuracy_with_labels() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    order = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    predicted = labels[order].copy()
    predicted[[0, 4, 8]] = 7  # three wrong, seven right
    pred = raw(np.zeros(10), predicted, sample_index=order)
    m = compute_metrics("single-stream", {}, {"latency": constant(5, 1), "prediction": pred}, labels, "top1")
    acc = m["accuracy"]
    assert (acc["name"], acc["value"], acc["k"], acc["n"]) == ("top1", 0.7, 7, 10)
    assert acc["ci95"] == list(wilson_interval(7, 10))
    assert acc["ci95"] == pytest.approx([0.396778, 0.892209], abs=1e-6)
    assert acc["ci95_exact"] == pytest.approx([0.347547, 0.933260], abs=1e-6)
    assert acc["interval"] == "wilson"


def test_no_accuracy_without_labels() -> None:
    pred = raw(np.zeros(3), [0, 1, 2])
    assert "accuracy" not in compute_metrics("single-stream", {}, {"latency": constant(5, 1), "prediction": pred},
                                             None)


# ---------------------------------------------------------------- grading


def test_invalid_measurement_fails_even_when_every_criterion_passes() -> None:
    m = single({"min_query_count": 1000})
    criteria = [{"metric": "latency_ms.p99", "op": "<=", "threshold": 1000}]
    verdict, results = evaluate(m, criteria)
    assert verdict == "fail"
    assert [r["metric"] for r in results] == ["validity", "latency_ms.p99"]
    assert results[0]["verdict"] == "fail"
    assert "fewer than min_query_count 1000" in results[0]["value"]
    assert results[1]["verdict"] == "pass" and results[1]["value"] == 99.0


def test_valid_measurement_passes_without_validity_entry() -> None:
    verdict, results = evaluate(single(), [{"metric": "latency_ms.p99", "op": "<=", "threshold": 1000}])
    assert verdict == "pass"
    assert [r["metric"] for r in results] == ["latency_ms.p99"]


def test_ci95_lower_uses_the_exact_interval() -> None:
    wl, _ = wilson_interval(346, 360)
    cl, cu = clopper_pearson(346, 360)
    assert cl < 0.9357 < wl  # a threshold between the two lower bounds
    acc = {"value": 346 / 360, "k": 346, "n": 360, "ci95": [wl, wilson_interval(346, 360)[1]],
           "ci95_exact": [cl, cu]}
    crit = [{"metric": "accuracy", "op": ">=", "threshold": 0.9357, "rule": "ci95_lower"}]
    verdict, results = evaluate({"accuracy": acc}, crit)
    assert verdict == "fail"
    assert results[0]["value"] == cl
    wilson_only = {k: v for k, v in acc.items() if k != "ci95_exact"}
    verdict, results = evaluate({"accuracy": wilson_only}, crit)
    assert verdict == "pass"
    assert results[0]["value"] == wl


def test_ci95_lower_from_compute_metrics() -> None:
    labels = np.zeros(360, dtype=np.int64)
    predicted = np.zeros(360, dtype=np.int64)
    predicted[:14] = 1  # 346 of 360 right
    m = compute_metrics("single-stream", {}, {"latency": constant(5, 1), "prediction": raw(np.zeros(360), predicted)},
                        labels)
    crit = [{"metric": "accuracy", "op": ">=", "threshold": 0.9357, "rule": "ci95_lower"}]
    verdict, results = evaluate(m, crit)
    assert results[0]["value"] == pytest.approx(0.93561, abs=1e-5)
    assert verdict == "fail"
