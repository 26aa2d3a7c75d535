"""Statistics used for certification figures: nearest-rank percentiles and binomial confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

Z95 = 1.959963984540054


def nearest_rank(sorted_values: Sequence[float] | np.ndarray, p: float) -> float:
    """The p-th percentile by the nearest-rank method: the value at rank ceil(p/100 * n), 1-based."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of an empty sample")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} outside (0, 100]")
    rank = max(1, math.ceil(p / 100.0 * n - 1e-9))
    return float(sorted_values[rank - 1])


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n trials."""
    if n <= 0:
        raise ValueError("interval of zero trials")
    if not 0 <= k <= n:
        raise ValueError(f"{k} successes out of {n} trials")
    phat = k / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def binom_cdf(n: int, p: float) -> np.ndarray:
    """P(X <= k) for k = 0..n, X ~ Binomial(n, p), summed from the log-pmf (no scipy: the agent, the lab and the
    offline verifier compute the same figures with numpy alone)."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"binomial({n}, {p})")
    if p == 0.0:
        return np.ones(n + 1)
    if p == 1.0:
        out = np.zeros(n + 1)
        out[-1] = 1.0
        return out
    return _binom_cdf_head(n, p, n)


def _binom_cdf_head(n: int, p: float, m: int) -> np.ndarray:
    """binom_cdf(n, p)[:m + 1] for 0 < p < 1, bit for bit, from the first m + 1 terms alone, where m lies past the
    mode far enough (_head_end) that no later term is the largest: every step is elementwise or a running sum (each
    element the same whatever follows it), and the largest log-term, which scales them all, is among the first."""
    k = np.arange(m + 1, dtype=np.float64)
    steps = np.log(np.arange(n, n - m, -1, dtype=np.float64)) - np.log(np.arange(1, m + 1, dtype=np.float64))
    log_pmf = n * math.log1p(-p) + np.concatenate([[0.0], np.cumsum(steps)]) + k * (math.log(p) - math.log1p(-p))
    top = float(log_pmf.max())
    cdf = np.cumsum(np.exp(log_pmf - top)) * math.exp(top)
    return np.minimum(cdf, 1.0)


def _head_end(n: int, p: float) -> int:
    """A term index past which binom_cdf's log-terms only fall: 8 standard deviations and 10 terms past the mode,
    where each next term is smaller by a factor of about exp(-8/sd) and more, far beyond the terms' rounding."""
    return int((n + 1) * p) + int(8 * math.sqrt(n * p * (1 - p))) + 10


def _count_at_most(n: int, p: float, level: float) -> int:
    """int(np.searchsorted(binom_cdf(n, p)[:n], level, side="right")): how many of P(X <= k), k = 0..n-1, are at
    most level. Where the answer lies among the first terms (a tail probability: the usual case), only those are
    computed (_binom_cdf_head); else all of them."""
    if 0.0 < p < 1.0:
        m = _head_end(n, p)
        if m < n:
            found = int(np.searchsorted(_binom_cdf_head(n, p, m), level, side="right"))
            if found <= m:  # a term of the head is above level: so are all after it (the CDF never falls)
                return found
    return int(np.searchsorted(binom_cdf(n, p)[:n], level, side="right"))


_LOG_2PI = math.log(2 * math.pi)


def _stirlerr(n: int) -> float:
    """log(n!) - log(sqrt(2 pi n) (n/e)^n), accurate to double precision (Loader 2000; what R and SciPy use)."""
    if n <= 15:
        return math.lgamma(n + 1) - (n + 0.5) * math.log(n) + n - _LOG_2PI / 2
    nn = float(n) * n
    s0, s1, s2, s3, s4 = 1 / 12, 1 / 360, 1 / 1260, 1 / 1680, 1 / 1188
    if n > 500:
        return (s0 - s1 / nn) / n
    if n > 80:
        return (s0 - (s1 - s2 / nn) / nn) / n
    if n > 35:
        return (s0 - (s1 - (s2 - s3 / nn) / nn) / nn) / n
    return (s0 - (s1 - (s2 - (s3 - s4 / nn) / nn) / nn) / nn) / n


def _bd0(x: float, mean: float) -> float:
    """x log(x/mean) + mean - x without the cancellation when x is near mean (Loader 2000)."""
    if abs(x - mean) < 0.1 * (x + mean):
        v = (x - mean) / (x + mean)
        total, ej, v2 = (x - mean) * v, 2 * x * v, v * v
        for j in range(1, 1000):
            ej *= v2
            nxt = total + ej / (2 * j + 1)
            if nxt == total:
                return nxt
            total = nxt
        return total
    return x * math.log(x / mean) + mean - x


def _binom_pmf(x: int, n: int, p: float) -> float:
    """P(X = x) for X ~ Binomial(n, p), 0 < p < 1, to a relative error of a few ulp (Loader's saddle-point form:
    no lgamma differences, which lose digits as n grows)."""
    q = 1.0 - p
    if x == 0:
        return math.exp(-_bd0(n, n * q) - n * p if p < 0.1 else n * math.log1p(-p))
    if x == n:
        return math.exp(-_bd0(n, n * p) - n * q if q < 0.1 else n * math.log(p))
    lc = _stirlerr(n) - _stirlerr(x) - _stirlerr(n - x) - _bd0(x, n * p) - _bd0(n - x, n * q)
    return math.exp(lc - 0.5 * (_LOG_2PI + math.log(x) + math.log1p(-x / n)))


def _binom_le(n: int, m: int, p: float) -> float:
    """P(X <= m) for X ~ Binomial(n, p), 0 <= m < n, 0 < p < 1: the shorter tail (terms 0..m, or 1 minus terms
    m+1..n), each term its largest one (at the mode, or the end nearest it) times products of consecutive pmf
    ratios, summed over the span where terms are not negligible (40 standard deviations and more)."""
    lower = m + 1 <= n - m
    lo_j, hi_j = (0, m) if lower else (m + 1, n)
    q = 1.0 - p
    width = int(40 * math.sqrt(n * p * q)) + 60
    anchor = min(max(int((n + 1) * p), lo_j), hi_j)
    lo_j, hi_j = max(lo_j, anchor - width), min(hi_j, anchor + width)
    odds = p / q
    total = 1.0
    if anchor > lo_j:  # P(j-1)/P(j) = j/(n-j+1) · q/p
        j = np.arange(anchor, lo_j, -1, dtype=np.float64)
        total += float(np.cumprod(j / ((n + 1.0 - j) * odds)).sum())
    if hi_j > anchor:  # P(j+1)/P(j) = (n-j)/(j+1) · p/q
        j = np.arange(anchor, hi_j, dtype=np.float64)
        total += float(np.cumprod((n - j) * odds / (j + 1.0)).sum())
    tail = _binom_pmf(anchor, n, p) * total
    return min(tail, 1.0) if lower else max(0.0, 1.0 - tail)


def _binom_le_slope(n: int, m: int, p: float) -> float:
    """d/dp P(X <= m; n, p) = -n C(n-1, m) p^m (1-p)^(n-1-m) (minus the Beta(m+1, n-m) density)."""
    return -math.exp(math.log(n) + math.lgamma(n) - math.lgamma(m + 1) - math.lgamma(n - m)
                     + m * math.log(p) + (n - 1 - m) * math.log1p(-p))


def _solve_p(n: int, m: int, target: float, guess: float) -> float:
    """The p in (0, 1) where P(X <= m; n, p), decreasing in p, equals target, to double precision: Newton's method
    on the exact tail with its exact slope, kept inside a bracket that every step narrows (bisecting whenever
    Newton would leave it). The same root the bisection on binom_cdf finds, in a handful of evaluations."""
    lo, hi = 0.0, 1.0
    p = min(max(guess, 1e-300), 1.0 - 1e-16)
    for _ in range(400):
        f = _binom_le(n, m, p) - target
        if f == 0.0:
            return p
        if f > 0:
            lo = p
        else:
            hi = p
        slope = _binom_le_slope(n, m, p)
        nxt = p - f / slope if slope < 0.0 and math.isfinite(slope) else math.nan
        if abs(nxt - p) <= 4e-16 * p:  # converged: the step is below the tail's own rounding
            return p
        if not lo < nxt < hi:
            nxt = (lo + hi) / 2
            if nxt in (lo, hi):
                return p
        p = nxt
    return p


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) binomial interval: conservative, used where a criterion decides conformity.

    lo solves P(X >= k; n, lo) = alpha/2 and hi solves P(X <= k; n, hi) = alpha/2 (the beta-quantile form's
    binomial identity), each by a bracketed Newton iteration on the exact binomial tail, started at the Wilson
    interval's end (tests/pilotlab/test_core_stats.py checks it against bisection on binom_cdf to 1e-9)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"{k} successes out of {n} trials")
    alpha = 1 - confidence
    w_lo, w_hi = wilson_interval(k, n, NormalDist().inv_cdf(1 - alpha / 2) if 0 < alpha < 1 else Z95)
    lo = 0.0 if k == 0 else _solve_p(n, k - 1, 1.0 - alpha / 2, w_lo)
    hi = 1.0 if k == n else _solve_p(n, k, alpha / 2, w_hi)
    return lo, hi


def early_stopping_min_queries(percentile: float, confidence: float = 0.99) -> int:
    """Fewest queries for which an early-stopping estimate of the percentile exists (no query over it)."""
    p = percentile / 100.0
    return math.ceil(math.log(1 - confidence) / math.log(p) - 1e-12)


def early_stopping(sorted_values: Sequence[float] | np.ndarray, percentile: float,
                   confidence: float = 0.99) -> dict[str, float | int | None]:
    """LoadGen-style early-stopping estimate: the smallest latency L such that, with the given confidence, the
    true fraction of queries slower than L is at most 1 - percentile/100. The number t of queries allowed over L
    is the largest with BinomCDF(t; n, 1 - p) <= 1 - confidence; L is the (n - t)-th smallest latency."""
    n = len(sorted_values)
    need = early_stopping_min_queries(percentile, confidence)
    out: dict[str, float | int | None] = {"min_queries": need, "n": n, "confidence": confidence,
                                          "estimate": None, "overlatency_allowed": None}
    if n < need:
        return out
    q = 1 - percentile / 100.0
    t = _count_at_most(n, q, 1 - confidence) - 1  # over binom_cdf(n, q)[:n]
    if t < 0:
        return out
    out["overlatency_allowed"] = t
    out["estimate"] = float(sorted_values[n - t - 1])
    return out
