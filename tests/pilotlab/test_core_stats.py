"""Nearest-rank percentiles and Wilson score intervals: known values and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilotlab.stats import nearest_rank, wilson_interval

ONE_TO_100 = list(range(1, 101))

samples = st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=200).map(sorted)
percent = st.floats(min_value=0.0, max_value=100.0, exclude_min=True, allow_nan=False)
trials = st.integers(min_value=1, max_value=5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@pytest.mark.parametrize(("p", "expected"), [(50, 50), (90, 90), (99, 99), (100, 100), (1, 1), (0.5, 1),
                                             (50.5, 51), (99.9, 100)])
def test_nearest_rank_1_to_100(p: float, expected: float) -> None:
    assert nearest_rank(ONE_TO_100, p) == expected


@pytest.mark.parametrize("p", [0.001, 1, 50, 99, 100])
def test_nearest_rank_single_value(p: float) -> None:
    assert nearest_rank([7.5], p) == 7.5


def test_nearest_rank_ten_values() -> None:
    ten = [10.0 * i for i in range(1, 11)]
    assert nearest_rank(ten, 99) == 100.0  # ceil(9.9) = rank 10
    assert nearest_rank(ten, 90) == 90.0  # rank 9 exactly, no spill into rank 10
    assert nearest_rank(ten, 50) == 50.0
    assert nearest_rank(ten, 10) == 10.0
    assert nearest_rank(ten, 10.01) == 20.0


def test_nearest_rank_numpy_input_returns_python_float() -> None:
    v = nearest_rank(np.arange(1, 1001, dtype=np.float64), 99.9)
    assert v == 999.0  # 99.9% of 1000 is 999, not 1000, despite float error in 0.999 * 1000
    assert type(v) is float


@pytest.mark.parametrize("p", [0, -1, 100.0001, 101, float("nan")])
def test_nearest_rank_rejects_p_outside(p: float) -> None:
    with pytest.raises(ValueError):
        nearest_rank([1, 2, 3], p)


def test_nearest_rank_rejects_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        nearest_rank([], 50)
    with pytest.raises(ValueError):
        nearest_rank(np.array([]), 50)


@given(samples, percent)
def test_nearest_rank_is_an_element_between_min_and_max(xs: list[float], p: float) -> None:
    v = nearest_rank(xs, p)
    assert v in xs
    assert xs[0] <= v <= xs[-1]


@given(samples, percent, percent)
def test_nearest_rank_monotone_in_p(xs: list[float], p: float, q: float) -> None:
    lo, hi = min(p, q), max(p, q)
    assert nearest_rank(xs, lo) <= nearest_rank(xs, hi)


@given(samples)
def test_nearest_rank_100_is_max(xs: list[float]) -> None:
    assert nearest_rank(xs, 100) == xs[-1]


@given(st.integers(1, 10_000), st.integers(1, 100))
def test_nearest_rank_integer_p_matches_exact_rank(n: int, p: int) -> None:
    xs = list(range(1, n + 1))
    assert nearest_rank(xs, p) == -(-p * n // 100)  # exact ceil(p*n/100) in integers


def test_wilson_known_value() -> None:
    lo, hi = wilson_interval(346, 360)
    assert lo == pytest.approx(0.93579, abs=1e-5)
    assert hi == pytest.approx(0.97670, abs=1e-5)


def test_wilson_extremes() -> None:
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0
    assert hi == pytest.approx(0.27753, abs=1e-5)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0
    assert lo == pytest.approx(0.72247, abs=1e-5)


@pytest.mark.parametrize("n", [1, 3, 6, 7, 10, 13, 25, 27, 360, 1000, 4999])
def test_wilson_bounds_exact_at_zero_and_all(n: int) -> None:
    # Floating error once gave lower bounds like 1e-17 for k=0 and upper bounds 0.9999999999999999 for k=n.
    assert wilson_interval(0, n)[0] == 0.0
    assert wilson_interval(n, n)[1] == 1.0


@pytest.mark.parametrize(("k", "n"), [(0, 0), (1, 0), (-1, 10), (11, 10), (3, -2)])
def test_wilson_rejects_bad_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError):
        wilson_interval(k, n)


@given(trials)
def test_wilson_contains_point_estimate(kn: tuple[int, int]) -> None:
    k, n = kn
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


@given(trials, st.integers(2, 50))
def test_wilson_narrows_as_n_grows(kn: tuple[int, int], m: int) -> None:
    k, n = kn
    lo1, hi1 = wilson_interval(k, n)
    lo2, hi2 = wilson_interval(k * m, n * m)
    assert hi2 - lo2 < hi1 - lo1


def test_wilson_matches_closed_form_for_wider_z() -> None:
    k, n, z = 30, 100, 2.575829
    phat = k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(k, n, z) == pytest.approx((centre - half, centre + half))
    lo99, hi99 = wilson_interval(k, n, z)
    lo95, hi95 = wilson_interval(k, n)
    assert hi99 - lo99 > hi95 - lo95
