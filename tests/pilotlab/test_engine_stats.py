"""Clopper-Pearson intervals and LoadGen-style early-stopping estimates: known values and properties."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from pilotlab.stats import (
    Z95,
    binom_cdf,
    clopper_pearson,
    early_stopping,
    early_stopping_min_queries,
    nearest_rank,
    wilson_interval,
)

# A deterministic grid of (k, n): every k for small n, and a spread of k for a few large n.
GRID = [(k, n) for n in range(1, 61) for k in range(n + 1)]
GRID += [(k, n) for n in (97, 160, 360, 1000, 5000) for k in sorted({0, 1, 2, n // 3, n // 2, n - 2, n - 1, n})]


def wilson_centre(k: int, n: int) -> float:
    z2 = Z95 * Z95
    return (k / n + z2 / (2 * n)) / (1 + z2 / n)


# ---------------------------------------------------------------- Clopper-Pearson


def test_clopper_pearson_known_value() -> None:
    lo, hi = clopper_pearson(346, 360)
    assert lo == pytest.approx(0.93561, abs=1e-5)
    assert hi == pytest.approx(0.97858, abs=1e-5)


def test_clopper_pearson_seven_of_ten() -> None:
    lo, hi = clopper_pearson(7, 10)
    assert lo == pytest.approx(0.347547, abs=1e-6)
    assert hi == pytest.approx(0.933260, abs=1e-6)


@pytest.mark.parametrize("n", [1, 2, 10, 100, 360])
def test_clopper_pearson_zero_successes(n: int) -> None:
    lo, hi = clopper_pearson(0, n)
    assert lo == 0.0
    assert hi == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-9)  # closed form of the one-sided bound


@pytest.mark.parametrize("n", [1, 2, 10, 100, 360])
def test_clopper_pearson_all_successes(n: int) -> None:
    lo, hi = clopper_pearson(n, n)
    assert hi == 1.0
    assert lo == pytest.approx(0.025 ** (1 / n), rel=1e-9)


def test_clopper_pearson_confidence_widens_interval() -> None:
    lo95, hi95 = clopper_pearson(30, 100, 0.95)
    lo99, hi99 = clopper_pearson(30, 100, 0.99)
    assert lo99 < lo95 < 0.3 < hi95 < hi99


def test_clopper_pearson_returns_python_floats() -> None:
    lo, hi = clopper_pearson(3, 9)
    assert type(lo) is float and type(hi) is float


@pytest.mark.parametrize(("k", "n"), [(0, 0), (1, 0), (-1, 5), (6, 5), (0, -3)])
def test_clopper_pearson_rejects_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError):
        clopper_pearson(k, n)


def test_clopper_pearson_contains_point_and_wilson_centre() -> None:
    for k, n in GRID:
        lo, hi = clopper_pearson(k, n)
        assert 0.0 <= lo <= k / n <= hi <= 1.0, (k, n)
        assert lo <= wilson_centre(k, n) <= hi, (k, n)


def test_clopper_pearson_at_least_as_wide_as_wilson_inside() -> None:
    # Checked empirically for every 0 < k < n, n <= 1000. It does NOT hold at k = 0 or k = n for n >= 46 (the
    # exact one-sided bound 1 - 0.025**(1/n) is then tighter than Wilson's), nor does CP contain Wilson
    # everywhere (k = 1 from n = 97 on); only the width ordering is asserted, and only inside.
    for k, n in GRID:
        if 0 < k < n:
            c_lo, c_hi = clopper_pearson(k, n)
            w_lo, w_hi = wilson_interval(k, n)
            assert c_hi - c_lo >= w_hi - w_lo, (k, n)


def test_clopper_pearson_monotone_in_k() -> None:
    n = 50
    bounds = [clopper_pearson(k, n) for k in range(n + 1)]
    los, his = [b[0] for b in bounds], [b[1] for b in bounds]
    assert all(a < b for a, b in zip(los, los[1:], strict=False))
    assert all(a < b for a, b in zip(his, his[1:], strict=False))


def test_clopper_pearson_coverage_identity() -> None:
    # By construction: P(X >= k | p = lo) = alpha/2 and P(X <= k | p = hi) = alpha/2.
    for k, n in [(3, 20), (346, 360), (500, 1000)]:
        lo, hi = clopper_pearson(k, n)
        assert binom.sf(k - 1, n, lo) == pytest.approx(0.025, rel=1e-6)
        assert binom.cdf(k, n, hi) == pytest.approx(0.025, rel=1e-6)


# ---------------------------------------------------------------- early stopping


@pytest.mark.parametrize(("p", "conf", "expected"), [(90, 0.99, 44), (99, 0.99, 459), (50, 0.99, 7),
                                                     (90, 0.95, 29), (99.9, 0.99, 4603)])
def test_early_stopping_min_queries(p: float, conf: float, expected: int) -> None:
    assert early_stopping_min_queries(p, conf) == expected


@pytest.mark.parametrize(("p", "conf"), [(90, 0.99), (99, 0.99), (50, 0.99), (90, 0.95), (97, 0.9)])
def test_early_stopping_min_queries_is_the_threshold(p: float, conf: float) -> None:
    need = early_stopping_min_queries(p, conf)
    q = p / 100
    assert q**need <= 1 - conf < q ** (need - 1)  # n queries none over L: enough exactly from `need` on


@pytest.mark.parametrize(("p", "n"), [(90, 43), (99, 458), (90, 0), (99, 1)])
def test_early_stopping_none_below_min_queries(p: float, n: int) -> None:
    r = early_stopping(np.arange(1, n + 1, dtype=np.float64), p)
    assert r["estimate"] is None
    assert r["overlatency_allowed"] is None
    assert r["n"] == n
    assert r["min_queries"] == early_stopping_min_queries(p)


def test_early_stopping_at_min_queries_allows_no_overlatency() -> None:
    r = early_stopping(np.arange(1, 45, dtype=np.float64), 90)
    assert r["overlatency_allowed"] == 0
    assert r["estimate"] == 44.0  # the maximum


def test_early_stopping_1_to_100_p90() -> None:
    # BinomCDF(3; 100, 0.1) = 0.0078 <= 0.01 < BinomCDF(4; 100, 0.1) = 0.0237: three may exceed; L = 97th smallest
    r = early_stopping(np.arange(1, 101, dtype=np.float64), 90)
    assert r["overlatency_allowed"] == 3
    assert r["estimate"] == 97.0
    assert r["confidence"] == 0.99
    assert r["min_queries"] == 44


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("p", [90, 99])
def test_early_stopping_large_uniform_sample(seed: int, p: float) -> None:
    n = 10_000
    xs = np.sort(np.random.default_rng(seed).uniform(1.0, 2.0, size=n))
    r = early_stopping(xs, p)
    assert r["estimate"] is not None and r["overlatency_allowed"] is not None
    est, t = float(r["estimate"]), int(r["overlatency_allowed"])
    assert est in xs
    assert est == xs[n - t - 1]
    assert est >= nearest_rank(xs, p)
    q = 1 - p / 100
    assert binom.cdf(t, n, q) <= 0.01 < binom.cdf(t + 1, n, q)
    assert t < n * q  # fewer over-latency queries allowed than the point estimate would
    assert r["n"] == n


@pytest.mark.parametrize("n", [44, 100, 459, 1000, 3000])
def test_early_stopping_count_is_largest_allowed(n: int) -> None:
    for p in (90, 99):
        r = early_stopping(np.arange(n, dtype=np.float64), p)
        if n < early_stopping_min_queries(p):
            assert r["estimate"] is None
            continue
        assert r["overlatency_allowed"] is not None
        t = int(r["overlatency_allowed"])
        q = 1 - p / 100
        assert binom.cdf(t, n, q) <= 0.01 < binom.cdf(t + 1, n, q)
        assert r["estimate"] == float(n - t - 1)


def test_early_stopping_lower_confidence_is_less_conservative() -> None:
    xs = np.sort(np.random.default_rng(9).exponential(1.0, size=2000))
    strict, loose = early_stopping(xs, 99, 0.99), early_stopping(xs, 99, 0.9)
    assert None not in (strict["estimate"], loose["estimate"], strict["overlatency_allowed"],
                        loose["overlatency_allowed"], loose["confidence"])
    assert int(loose["overlatency_allowed"] or 0) > int(strict["overlatency_allowed"] or 0)
    assert float(loose["estimate"] or 0) < float(strict["estimate"] or 0)
    assert math.isclose(float(loose["confidence"] or 0), 0.9)


# --- Clopper-Pearson: the bracketed Newton iteration finds the bisection's bounds ---------------------------------
def _bisect_p(f: Callable[[float], float], target: float) -> float:
    """The implementation before issue 16's phase 2, kept as the reference: bisection to double precision."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson_by_bisection(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    alpha = 1 - confidence
    lo = 0.0 if k == 0 else _bisect_p(lambda p: float(binom_cdf(n, p)[k - 1]), 1.0 - alpha / 2)
    hi = 1.0 if k == n else _bisect_p(lambda p: float(binom_cdf(n, p)[k]), alpha / 2)
    return lo, hi


trials = st.integers(min_value=1, max_value=20_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))
few_or_most = st.integers(min_value=1, max_value=20_000).flatmap(
    lambda n: st.tuples(st.one_of(st.integers(0, min(n, 5)), st.integers(max(0, n - 5), n)), st.just(n)))


@settings(max_examples=300, deadline=None)
@given(st.one_of(trials, few_or_most),
       st.one_of(st.sampled_from([0.95, 0.9, 0.99, 0.999, 0.5]), st.floats(min_value=0.5, max_value=0.9999)))
def test_clopper_pearson_matches_bisection_on_binom_cdf(kn: tuple[int, int], confidence: float) -> None:
    k, n = kn
    got = clopper_pearson(k, n, confidence)
    want = clopper_pearson_by_bisection(k, n, confidence)
    assert abs(got[0] - want[0]) <= 1e-9 and abs(got[1] - want[1]) <= 1e-9, (got, want)
    assert all(type(x) is float for x in got)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (1, 2), (346, 360), (999, 1000), (1, 1_000_000),
                                      (999_999, 1_000_000), (500_000, 1_000_000), (3, 200_000)])
def test_clopper_pearson_matches_bisection_at_the_edges(k: int, n: int) -> None:
    got, want = clopper_pearson(k, n), clopper_pearson_by_bisection(k, n)
    assert abs(got[0] - want[0]) <= 1e-9 and abs(got[1] - want[1]) <= 1e-9, (got, want)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=2_000_000).flatmap(
    lambda n: st.tuples(st.one_of(st.integers(0, n), st.integers(0, min(n, 3)), st.integers(max(0, n - 3), n)),
                        st.just(n))),
    st.sampled_from([0.95, 0.9, 0.99, 0.999]))
def test_clopper_pearson_is_the_beta_quantile(kn: tuple[int, int], confidence: float) -> None:
    """The exact interval is the Beta quantile pair; SciPy's betaincinv (tests only: pilotlab needs numpy alone)
    agrees to 1e-12 up to two million trials, where bisection on binom_cdf's log-space cumsum drifts."""
    from scipy.special import betaincinv

    k, n = kn
    alpha = 1 - confidence
    lo, hi = clopper_pearson(k, n, confidence)
    assert abs(lo - (betaincinv(k, n - k + 1, alpha / 2) if k else 0.0)) <= 1e-12
    assert abs(hi - (betaincinv(k + 1, n - k, 1 - alpha / 2) if k < n else 1.0)) <= 1e-12
