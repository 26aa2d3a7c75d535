"""Energy arithmetic against hand-computed values: integration, window edges, counters, idle subtraction."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.meters.energy import (
    ESTIMATE_METHOD,
    energy_in_window,
    estimate_cpu_energy,
    net_energy,
    per_inference,
    window_valid,
)

S = 1_000_000_000
T0 = 7_654_321_000_000_000  # perf_counter_ns values are large: about 89 days of uptime


def ns(*seconds: float) -> np.ndarray:
    return np.array([T0 + round(s * S) for s in seconds], dtype=np.int64)


def test_constant_power() -> None:
    t = ns(*np.linspace(0.0, 2.0, 21))
    e = energy_in_window(t, np.full(21, 10.0), "power", T0, T0 + 2 * S)
    assert e == {"joules": pytest.approx(20.0), "avg_power_w": pytest.approx(10.0),
                 "samples_in_window": 21, "duration_s": 2.0}


def test_ramp() -> None:
    e = energy_in_window(ns(0.0, 0.5, 1.0), [0.0, 5.0, 10.0], "power", T0, T0 + S)
    assert e["joules"] == pytest.approx(5.0) and e["avg_power_w"] == pytest.approx(5.0)
    assert e["samples_in_window"] == 3


def test_idle_subtraction() -> None:
    gross = energy_in_window(ns(0, 1, 2), [10.0, 10.0, 10.0], "power", T0, T0 + 2 * S)["joules"]
    assert net_energy(gross, idle_power_w=2.0, duration_s=2.0) == pytest.approx(16.0)
    assert net_energy(3.0, 2.0, 2.0) == pytest.approx(-1.0)  # within idle noise: shown, not hidden
    with pytest.raises(ValueError):
        net_energy(1.0, -2.0, 1.0)


def test_window_edges_are_interpolated() -> None:
    t, p = ns(0, 1, 2, 3), [0.0, 10.0, 10.0, 0.0]
    e = energy_in_window(t, p, "power", T0 + S // 2, T0 + 5 * S // 2)
    # edges at 5 W: 0.5 s × (5 + 10) / 2 + 1 s × 10 + 0.5 s × (10 + 5) / 2
    assert e["joules"] == pytest.approx(3.75 + 10.0 + 3.75)
    assert e["samples_in_window"] == 2 and e["duration_s"] == 2.0
    assert e["avg_power_w"] == pytest.approx(17.5 / 2)


def test_window_between_two_samples() -> None:
    e = energy_in_window(ns(0, 1), [0.0, 10.0], "power", T0 + S // 5, T0 + 3 * S // 5)
    assert e["joules"] == pytest.approx(0.4 * (2.0 + 6.0) / 2)  # 1.6 J
    assert e["samples_in_window"] == 0


def test_energy_counter_difference() -> None:
    t, j = ns(0, 1, 2), [100.0, 110.0, 130.0]
    e = energy_in_window(t, j, "energy", T0 + S // 2, T0 + 3 * S // 2)
    assert e["joules"] == pytest.approx(120.0 - 105.0)
    assert e["avg_power_w"] == pytest.approx(15.0) and e["samples_in_window"] == 1
    assert energy_in_window(t, j, "energy", T0, T0 + 2 * S)["joules"] == 30.0


@pytest.mark.parametrize("t, v, q, start, end, message", [
    (ns(0, 1), [1.0, 1.0], "volts", T0, T0 + S, "quantity"),
    (ns(0), [1.0], "power", T0, T0, "at least 2 samples"),
    (ns(0, 1), [1.0], "power", T0, T0 + S, "one length"),
    (ns(1, 0), [1.0, 1.0], "power", T0, T0 + S, "non-decreasing"),
    (ns(0, 1), [1.0, float("nan")], "power", T0, T0 + S, "finite"),
    (ns(0, 1), [1.0, 1.0], "power", T0 + S, T0, "must end after it starts"),
    (ns(0, 1), [1.0, 1.0], "power", T0 - 1, T0 + S, "the sampler must run before and after"),
    (ns(0, 1), [1.0, 1.0], "energy", T0, T0 + S + 1, "the sampler must run before and after"),
])
def test_bad_input(t: np.ndarray, v: list[float], q: str, start: int, end: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        energy_in_window(t, v, q, start, end)


def test_window_valid() -> None:
    assert window_valid(1.0, 0.1, 5) == []
    assert window_valid(0.5, 0.1, 50) == [
        "the window lasts 0.5 s, shorter than 10 update periods of the sensor (1 s)"]
    assert window_valid(20.0, 0.001, 4) == ["only 4 sample(s) in the window, at least 5 needed"]
    assert len(window_valid(0.05, 0.1, 1, min_samples=3)) == 2
    assert window_valid(2.0, 0.1, 3, min_samples=3) == []


def test_per_inference_and_estimate() -> None:
    assert per_inference(20.0, 4) == 5.0
    with pytest.raises(ValueError, match="at least one inference"):
        per_inference(1.0, 0)
    est = estimate_cpu_energy(cpu_seconds=2.0, tdp_w=65.0, cores=8)
    assert est["joules"] == pytest.approx(16.25)
    assert est["method"] == ESTIMATE_METHOD == "estimated:cpu-time-tdp" and est["estimated"] is True
    with pytest.raises(ValueError):
        estimate_cpu_energy(1.0, 65.0, 0)


durations = st.lists(st.integers(1, 10 * S // 1000), min_size=2, max_size=40)  # gaps up to 10 ms


@settings(max_examples=60, deadline=None)
@given(gaps=durations, watts=st.lists(st.floats(0, 500), min_size=41, max_size=41),
       cut=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)))
def test_power_windows_add_up(gaps: list[int], watts: list[float], cut: tuple[float, float, float]) -> None:
    t = T0 + np.concatenate(([0], np.cumsum(gaps))).astype(np.int64)
    p = np.array(watts[: t.size])
    a, b, c = sorted(int(t[0] + x * (t[-1] - t[0])) for x in cut)
    if not a < b < c:
        return
    whole = energy_in_window(t, p, "power", a, c)["joules"]
    parts = energy_in_window(t, p, "power", a, b)["joules"] + energy_in_window(t, p, "power", b, c)["joules"]
    assert whole == pytest.approx(parts, rel=1e-9, abs=1e-9)
    assert 0.0 <= whole <= 500.0 * (c - a) / S + 1e-9


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.integers(S // 1000, 10 * S // 1000), min_size=2, max_size=40),
       watts=st.floats(0.5, 500), base=st.floats(0, 1e4))
def test_linear_counter_gives_constant_power(gaps: list[int], watts: float, base: float) -> None:
    t = T0 + np.concatenate(([0], np.cumsum(gaps))).astype(np.int64)
    counter = base + watts * (t - t[0]) / S
    mid = int(t[0] + (t[-1] - t[0]) // 3)
    e = energy_in_window(t, counter, "energy", mid, int(t[-1]))
    assert e["avg_power_w"] == pytest.approx(watts, rel=1e-6)
    power = energy_in_window(t, np.full(t.size, watts), "power", mid, int(t[-1]))
    assert power["joules"] == pytest.approx(e["joules"], rel=1e-6)
