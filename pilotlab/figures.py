"""Task metrics computed from raw samples alone, so the lab and an offline verifier get the same figures."""

from __future__ import annotations

from typing import Any

import numpy as np

from pilotlab.stats import clopper_pearson, nearest_rank, wilson_interval

PERCENTILES = (50, 90, 99)
PERCENTILE_METHOD = "nearest-rank"


def latency_metrics(t_ns: np.ndarray, latency_ns: np.ndarray) -> dict[str, Any]:
    """Latency percentiles (ms, nearest rank) and throughput from issue stamps and per-query latencies."""
    n = int(latency_ns.size)
    if n == 0:
        return {}
    lat_ms = np.sort(latency_ns.astype(np.float64)) / 1e6
    out: dict[str, Any] = {f"p{p}": nearest_rank(lat_ms, p) for p in PERCENTILES}
    out["mean"] = float(lat_ms.mean())
    out["min"] = float(lat_ms[0])
    out["max"] = float(lat_ms[-1])
    out["n"] = n
    out["method"] = PERCENTILE_METHOD
    span_ns = int((t_ns + latency_ns).max() - t_ns.min())
    throughput = n / (span_ns / 1e9) if span_ns > 0 else 0.0
    return {"latency_ms": out, "throughput_per_s": throughput}


def accuracy_metrics(name: str, predicted: np.ndarray, sample_index: np.ndarray,
                     labels: np.ndarray) -> dict[str, Any]:
    """Top-1 accuracy of predictions against dataset labels, with its Wilson 95% interval and k/n."""
    n = int(predicted.size)
    if n == 0:
        return {}
    k = int(np.count_nonzero(labels[sample_index] == predicted))
    lo, hi = wilson_interval(k, n)
    return {"accuracy": {"name": name, "value": k / n, "ci95": [lo, hi], "n": n, "k": k,
                         "interval": "wilson", "ci95_exact": list(clopper_pearson(k, n))}}
