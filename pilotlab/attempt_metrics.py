"""Per-scenario metrics from raw samples, with LoadGen-style validity: the lab and the verifier share this."""

from __future__ import annotations

from typing import Any

import numpy as np

from pilotlab import conformance
from pilotlab.domain import Observations
from pilotlab.energy import energy_metrics
from pilotlab.figures import accuracy_metrics, latency_metrics
from pilotlab.genai_metrics import generative_metrics
from pilotlab.stats import early_stopping, nearest_rank
from pilotlab.tasks import COMMON_SETTINGS

Samples = dict[str, dict[str, np.ndarray]]
TEST04_MIN_RATIO = 0.9  # one sample repeated may not run more than 10% faster than varied samples ...
TEST04_MIN_P50_MS = 1.0  # ... for models slow enough that a hot input cache cannot explain 10% by itself


def parse_kind(kind: str) -> tuple[str, dict[str, str]]:
    """`latency;batch=8;repeat=1` → ("latency", {"batch": "8", "repeat": "1"})."""
    base, *params = kind.split(";")
    return base, dict(p.split("=", 1) for p in params if "=" in p)


def _perf_kinds(samples: Samples) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """Latency sample sets keyed by (batch, repeat)."""
    out = {}
    for kind, arrs in samples.items():
        base, params = parse_kind(kind)
        if base == "latency" and arrs["value"].size:
            out[(int(params.get("batch", 1)), int(params.get("repeat", 0)))] = arrs
    return out


def _us(values_ns: np.ndarray) -> dict[str, float]:
    s = np.sort(values_ns.astype(np.float64)) / 1e3
    return {"p50": nearest_rank(s, 50), "p99": nearest_rank(s, 99), "max": float(s[-1])}


def _one_set(scenario: str, a: dict[str, np.ndarray], settings: dict[str, Any], batch: int) -> dict[str, Any]:
    """Figures of one timed run."""
    t, lat, aux = a["t_ns"], a["value"], a["aux"]
    if scenario in ("server", "periodic"):
        completion = t + lat
        m = latency_metrics(aux, completion - aux)  # latency counts from the scheduled arrival/release
    else:
        m = latency_metrics(t, lat)
    m["throughput_per_s"] *= batch
    n = int(lat.size)
    span_ms = float((t + lat).max() - (aux if scenario in ("server", "periodic") else t).min()) / 1e6
    m["duration_ms"] = span_ms
    if scenario == "single-stream":
        ms = np.sort(lat.astype(np.float64)) / 1e6
        m["latency_ms"]["early_stopping"] = {f"p{p}": early_stopping(ms, p) for p in (90, 99)}
    if scenario == "periodic":
        rate, deadline_ms = float(settings.get("rate_hz", 0)), float(settings.get("deadline_ms", 0))
        response = completion - aux
        misses = int(np.count_nonzero(response > deadline_ms * 1e6)) if deadline_ms else 0
        rel, comp = _us(t - aux), _us(np.abs(response - np.median(response)))
        m["periodic"] = {"rate_hz": rate, "deadline_ms": deadline_ms, "n": n, "deadline_misses": misses,
                         "deadline_miss_rate": misses / n, "release_jitter_us_p50": rel["p50"],
                         "release_jitter_us_p99": rel["p99"], "release_jitter_us_max": rel["max"],
                         "completion_jitter_us_p99": comp["p99"], "completion_jitter_us_max": comp["max"]}
    if scenario == "server":
        bound = float(settings.get("latency_bound_ms", 0))
        p99 = m["latency_ms"]["p99"]
        m["server"] = {"target_qps": float(settings.get("target_qps", 0)), "achieved_qps": n / (span_ms / 1e3),
                       "latency_bound_ms": bound, "p99_within_bound": 1.0 if bound and p99 <= bound else 0.0}
    return m


def _validity(scenario: str, sets: dict[tuple[int, int], dict[str, Any]], settings: dict[str, Any]) -> list[str]:
    reasons = []
    min_q, min_ms = int(settings.get("min_query_count", 0)), float(settings.get("min_duration_ms", 0))
    for (batch, rep), m in sorted(sets.items()):
        where = f"batch {batch}, " if scenario == "offline" else ""
        where += f"repeat {rep}: " if len(sets) > 1 and scenario != "offline" else ""
        n = m["latency_ms"]["n"]
        if n < min_q:
            reasons.append(f"{where}{n} queries, fewer than min_query_count {min_q}")
        if m["duration_ms"] < min_ms:
            reasons.append(f"{where}ran {m['duration_ms']:.0f} ms, shorter than min_duration_ms {min_ms:.0f}")
        if scenario == "server" and m["server"]["latency_bound_ms"] and not m["server"]["p99_within_bound"]:
            reasons.append(f"{where}p99 {m['latency_ms']['p99']:.3f} ms exceeds the latency bound "
                           f"{m['server']['latency_bound_ms']} ms")
    return reasons


def _stability(p50_ms: list[float], settings: dict[str, Any], hint: Any) -> dict[str, Any]:
    """Whether the repeats agree: their p50s' spread (max - min) as a share of their median, against the assigned
    stability_max_spread. Unstable is reported, never invalid: a suite grades it with a criterion on
    repeats.spread_p50."""
    median = _median(p50_ms)
    spread = (max(p50_ms) - min(p50_ms)) / median if median > 0 else 0.0
    max_spread = float(settings.get("stability_max_spread", COMMON_SETTINGS["stability_max_spread"].default))
    stable = spread <= max_spread
    return {"stable": stable, "spread_p50": spread, "max_spread": max_spread,
            "reason": None if stable else f"repeats' p50 spread by {spread:.0%} of their median, more than "
                                          f"{max_spread:.0%}",
            "likely_cause": None if stable or hint is None else str(hint)}


def _median(values: list[float]) -> float:
    """float(np.median(values)) of a few finite floats (the middle one, or the mean of the middle two), without
    numpy's fixed cost on a list of three."""
    s = sorted(values)
    half = len(s) // 2
    return float(s[half]) if len(s) % 2 else float((s[half - 1] + s[half]) / 2)


def _median_repeat(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The graded run among repeats: the median by p50 (the upper median of an even count); the only run when
    there is one."""
    return sorted(runs, key=lambda m: m["latency_ms"]["p50"])[len(runs) // 2]


def _audits(samples: Samples, headline_p50_ms: float | None) -> tuple[dict[str, Any], list[str]]:
    audit: dict[str, Any] = {}
    reasons = []
    perf, acc = samples.get("perf-prediction"), samples.get("prediction")
    if perf is not None and acc is not None and perf["value"].size:
        truth = dict(zip(acc["sample_index"].tolist(), acc["value"].tolist(), strict=True))
        mism = sum(1 for s, v in zip(perf["sample_index"].tolist(), perf["value"].tolist(), strict=True)
                   if truth.get(s, v) != v)
        audit["test01"] = {"checked": int(perf["value"].size), "mismatches": mism, "passed": mism == 0}
        if mism:
            reasons.append(f"audit TEST01: {mism} performance-run outputs differ from the accuracy run")
    same, varied = samples.get("audit-same"), samples.get("audit-varied")
    if varied is not None and varied["value"].size:
        # Interleaved with the repeated sample, so both saw the same machine load.
        headline_p50_ms = nearest_rank(np.sort(varied["value"].astype(np.float64)) / 1e6, 50)
    if same is not None and same["value"].size and headline_p50_ms:
        p50 = nearest_rank(np.sort(same["value"].astype(np.float64)) / 1e6, 50)
        ratio = p50 / headline_p50_ms
        conclusive = headline_p50_ms >= TEST04_MIN_P50_MS
        audit["test04"] = {"same_sample_p50_ms": p50, "varied_p50_ms": headline_p50_ms, "ratio": ratio,
                           "min_ratio": TEST04_MIN_RATIO, "conclusive": conclusive,
                           "passed": ratio >= TEST04_MIN_RATIO or not conclusive}
        if ratio < TEST04_MIN_RATIO and conclusive:
            reasons.append(f"audit TEST04: one repeated sample ran {1 / ratio:.2f}x faster than varied samples "
                           "(caching suspected)")
    return audit, reasons


def compute_metrics(scenario: str, settings: dict[str, Any], samples: Samples, labels: np.ndarray | None,
                    accuracy_name: str = "top1", observations: Observations | None = None) -> dict[str, Any]:
    """Every metric of one attempt, from its raw samples, its effective settings and what the device observed
    (its energy sampling, and a hint at what made repeats differ)."""
    obs = observations or Observations()
    out: dict[str, Any] = {}
    perf = _perf_kinds(samples)
    per_query = int(settings.get("samples_per_query", 1)) if scenario == "multi-stream" else 1
    sets = {key: _one_set(scenario, a, settings, key[0] * per_query) for key, a in perf.items()}
    if sets:
        repeats = sorted({r for _, r in sets})
        batches = sorted({b for b, _ in sets})
        runs = {b: [sets[(b, r)] for r in repeats if (b, r) in sets] for b in batches}
        if scenario == "offline":
            by_batch = []
            for b in batches:
                m = _median_repeat(runs[b])
                by_batch.append({"batch": b, "throughput_per_s": m["throughput_per_s"], "queries": m["latency_ms"]["n"],
                                 "p50_ms": m["latency_ms"]["p50"], "p99_ms": m["latency_ms"]["p99"]})
            best = max(by_batch, key=lambda r: r["throughput_per_s"])
            out["offline"] = {"by_batch": by_batch, "best_batch": best["batch"],
                              "best_throughput_per_s": best["throughput_per_s"]}
            out["latency_ms"] = _median_repeat(runs[batches[0]])["latency_ms"]
            out["throughput_per_s"] = best["throughput_per_s"]
            head = runs[best["batch"]]  # stability: the repeats of the batch size that sets the throughput
        else:
            head = runs[batches[0]]
            out.update({k: v for k, v in _median_repeat(head).items() if k != "duration_ms"})
        if len(head) > 1:
            out["repeats"] = {"k": len(head), "statistic": "median repeat by p50",
                              "p50_ms": [m["latency_ms"]["p50"] for m in head],
                              "p99_ms": [m["latency_ms"]["p99"] for m in head],
                              "throughput_per_s": [m["throughput_per_s"] for m in head]}
            if scenario == "offline":
                out["repeats"]["batch"] = best["batch"]
            p50s = out["repeats"]["p50_ms"]
            out["stability"] = st = _stability(p50s, settings, obs.executor.get("instability_hint"))
            out["repeats"].update({"spread_p50_ms": max(p50s) - min(p50s), "spread_p50": st["spread_p50"],
                                   "max_spread": st["max_spread"], "stable": st["stable"]})
    reasons = _validity(scenario, sets, settings) if sets else ["no performance samples"]
    pred = samples.get("prediction")
    if pred is not None and pred["value"].size and labels is not None:
        out.update(accuracy_metrics(accuracy_name, pred["value"], pred["sample_index"], labels))
    try:
        records = conformance.from_samples(samples)
        if records is not None:
            c = conformance.reduce_records(records)
            out["conformance"] = {"n": int(c.pop("n")), **c}
    except ValueError as e:  # malformed evidence grades as invalid, never as conforming
        reasons.append(f"conformance: {e}")
    if scenario == "generative":
        latency_sets = {r: a for (_, r), a in perf.items()}
        figures, genai_reasons = generative_metrics(settings, samples, latency_sets, obs.executor)
        out.update(figures)
        reasons += genai_reasons
    audit, audit_reasons = _audits(samples, (out.get("latency_ms") or {}).get("p50"))
    if audit:
        out["audit"] = audit
    reasons += audit_reasons
    out["validity"] = {"valid": not reasons, "reasons": reasons}
    out.update(energy_metrics(samples, obs.energy, _perf_windows(scenario, perf), _inferences(perf, per_query)))
    return out


def _perf_windows(scenario: str, perf: dict[tuple[int, int], dict[str, np.ndarray]]) -> list[tuple[int, int]] | None:
    """Each timed run, from its first issue (or scheduled release) to its last completion; the gaps between runs
    (a fresh executor per repeat) are not part of the performance phase."""
    if not perf:
        return None
    return sorted((int((a["aux"] if scenario in ("server", "periodic") else a["t_ns"]).min()),
                   int((a["t_ns"] + a["value"]).max())) for a in perf.values())


def _inferences(perf: dict[tuple[int, int], dict[str, np.ndarray]], per_query: int) -> int:
    return sum(int(a["value"].size) * batch * per_query for (batch, _), a in perf.items())
