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
