"""Task metrics from raw samples: latency percentiles (ms), throughput, accuracy with Wilson interval, energy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilotlab.figures import accuracy_metrics, latency_metrics
from pilotlab.stats import nearest_rank, wilson_interval

I64 = np.int64


def test_latency_known_values_in_ms() -> None:
    lat = np.arange(100, 0, -1, dtype=I64) * 1_000_000  # 100 ms .. 1 ms, unsorted on purpose
    t = np.arange(100, dtype=I64) * 200_000_000  # a query issued every 200 ms
    m = latency_metrics(t, lat)
    lm = m["latency_ms"]
    assert (lm["p50"], lm["p90"], lm["p99"]) == (50.0, 90.0, 99.0)
    assert lm["min"] == 1.0 and lm["max"] == 100.0
    assert lm["mean"] == pytest.approx(50.5)
    assert lm["n"] == 100
    assert lm["method"] == "nearest-rank"
    # span: first issue at 0; the last completion is max(t + lat) = 99*200 ms + 1 ms = 19.801 s
    span_s = (99 * 200_000_000 + 1_000_000) / 1e9
    assert m["throughput_per_s"] == pytest.approx(100 / span_s)


def test_throughput_span_uses_latest_completion_not_last_issue() -> None:
    t = np.array([1_000, 2_000, 3_000], dtype=I64)
    lat = np.array([5_000_000_000, 10, 10], dtype=I64)  # the first query finishes last
    m = latency_metrics(t, lat)
    assert m["throughput_per_s"] == pytest.approx(3 / ((1_000 + 5_000_000_000 - 1_000) / 1e9))


def test_latency_sub_ms_precision() -> None:
    m = latency_metrics(np.array([0], dtype=I64), np.array([1_234_567], dtype=I64))
    lm = m["latency_ms"]
    assert lm["p50"] == lm["p99"] == lm["mean"] == pytest.approx(1.234567)
    assert m["throughput_per_s"] == pytest.approx(1 / 0.001234567)


def test_latency_zero_span_gives_zero_throughput() -> None:
    m = latency_metrics(np.array([5, 5], dtype=I64), np.array([0, 0], dtype=I64))
    assert m["throughput_per_s"] == 0.0
    assert m["latency_ms"]["n"] == 2


def test_latency_empty_is_empty() -> None:
    assert latency_metrics(np.array([], dtype=I64), np.array([], dtype=I64)) == {}


def test_latency_large_ns_stamps_keep_precision() -> None:
    base = 2**60  # monotonic-clock stamps far beyond 2**53
    t = base + np.array([0, 1_000_000_000], dtype=I64)
    lat = np.array([1_000_000, 1_000_000], dtype=I64)
    m = latency_metrics(t, lat)
    assert m["throughput_per_s"] == pytest.approx(2 / 1.001)


@given(st.lists(st.integers(1, 10**10), min_size=1, max_size=300))
def test_latency_percentiles_match_nearest_rank(lats: list[int]) -> None:
    lat = np.array(lats, dtype=I64)
    t = np.arange(lat.size, dtype=I64) * 10**10
    lm = latency_metrics(t, lat)["latency_ms"]
    ms = sorted(x / 1e6 for x in lats)
    for p in (50, 90, 99):
        assert lm[f"p{p}"] == nearest_rank(ms, p)
    assert lm["min"] <= lm["p50"] <= lm["p90"] <= lm["p99"] <= lm["max"]
    assert lm["n"] == len(lats)


def test_accuracy_indexes_labels_by_sample_index() -> None:
    labels = np.array([0, 1, 2, 3, 4], dtype=I64)
    sample_index = np.array([4, 4, 0, 2, 1], dtype=I64)
    predicted = np.array([4, 3, 0, 2, 0], dtype=I64)  # right, wrong, right, right, wrong
    acc = accuracy_metrics("top1", predicted, sample_index, labels)["accuracy"]
    assert acc["k"] == 3 and acc["n"] == 5
    assert acc["value"] == pytest.approx(0.6)
    assert acc["ci95"] == list(wilson_interval(3, 5))
    assert acc["name"] == "top1"
    assert acc["interval"] == "wilson"


def test_accuracy_would_differ_if_labels_read_in_order() -> None:
    labels = np.array([1, 0], dtype=I64)
    acc = accuracy_metrics("top1", np.array([0, 1], dtype=I64), np.array([1, 0], dtype=I64), labels)["accuracy"]
    assert acc["k"] == 2  # position-wise it would be 0 of 2


def test_accuracy_empty_is_empty() -> None:
    assert accuracy_metrics("top1", np.array([], dtype=I64), np.array([], dtype=I64), np.array([1, 2])) == {}


