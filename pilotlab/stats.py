"""Statistics used for certification figures: nearest-rank percentiles and binomial confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence

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
    k = np.arange(n + 1, dtype=np.float64)
    steps = np.log(np.arange(n, 0, -1, dtype=np.float64)) - np.log(np.arange(1, n + 1, dtype=np.float64))
    log_pmf = n * math.log1p(-p) + np.concatenate([[0.0], np.cumsum(steps)]) + k * (math.log(p) - math.log1p(-p))
    top = float(log_pmf.max())
    cdf = np.cumsum(np.exp(log_pmf - top)) * math.exp(top)
    return np.minimum(cdf, 1.0)


def _bisect_p(f: object, target: float) -> float:
    """The p in [0, 1] where the decreasing function f(p) crosses target, to double precision."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if f(mid) > target:  # type: ignore[operator]
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) binomial interval: conservative, used where a criterion decides conformity.

    lo solves P(X >= k; n, lo) = alpha/2 and hi solves P(X <= k; n, hi) = alpha/2 (the beta-quantile form's
    binomial identity), both by bisection on binom_cdf."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"{k} successes out of {n} trials")
    alpha = 1 - confidence
    lo = 0.0 if k == 0 else _bisect_p(lambda p: float(binom_cdf(n, p)[k - 1]), 1.0 - alpha / 2)
    hi = 1.0 if k == n else _bisect_p(lambda p: float(binom_cdf(n, p)[k]), alpha / 2)
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
    cdf = binom_cdf(n, q)[:n]
    t = int(np.searchsorted(cdf, 1 - confidence, side="right")) - 1
    if t < 0:
        return out
    out["overlatency_allowed"] = t
    out["estimate"] = float(sorted_values[n - t - 1])
    return out
