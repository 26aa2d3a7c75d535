"""Energy arithmetic over sampled traces: pure functions, used by the agent and again by the lab to recompute.

A trace is (t_ns, values) on the harness clock (time.perf_counter_ns), as the Sampler returns it.

* A POWER trace (watts) is integrated with the trapezoidal rule over [start_ns, end_ns]; the
  power at each window edge is linearly interpolated between the samples around it.
* An ENERGY trace (a cumulative joule counter) gives the difference of the counter linearly
  interpolated at the two window edges.

The window must lie within the trace (ValueError otherwise): nothing is extrapolated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

ENERGY = "energy"  # a cumulative joule counter
POWER = "power"  # instantaneous watts

ESTIMATE_METHOD = "estimated:cpu-time-tdp"


def _trace(t_ns: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t_ns, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or t.shape != v.shape:
        raise ValueError(f"t_ns and values must be 1-D arrays of one length (got {t.shape} and {v.shape})")
    if t.size < 2:
        raise ValueError(f"a trace needs at least 2 samples to integrate, got {t.size}")
    if np.any(np.diff(t) < 0):
        raise ValueError("t_ns must be non-decreasing")
    if not np.all(np.isfinite(v)):
        raise ValueError("values must be finite")
    return t, v


def _interp(t_rel: np.ndarray, v: np.ndarray, x: float) -> float:
    return float(np.interp(x, t_rel, v))


def energy_in_window(t_ns: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray, quantity: str,
                     start_ns: int, end_ns: int) -> dict[str, Any]:
    """Joules spent in [start_ns, end_ns] according to one trace.

    Returns {"joules", "avg_power_w", "samples_in_window" (samples with start <= t <= end),
    "duration_s"}. Raises ValueError for an empty or reversed window, a window not covered by
    the trace, or a malformed trace.
    """
    if quantity not in (ENERGY, POWER):
        raise ValueError(f"quantity must be {ENERGY!r} or {POWER!r}, not {quantity!r}")
    t, v = _trace(t_ns, values)
    start_ns, end_ns = int(start_ns), int(end_ns)
    if end_ns <= start_ns:
        raise ValueError(f"the window must end after it starts ({start_ns} .. {end_ns})")
    if start_ns < t[0] or end_ns > t[-1]:
        raise ValueError(f"the trace covers {int(t[0])} .. {int(t[-1])} ns but the window is "
                         f"{start_ns} .. {end_ns} ns: the sampler must run before and after the window")
    # Relative float seconds keep the interpolation exact enough: perf_counter_ns values are large.
    t_rel = (t - t[0]).astype(np.float64) / 1e9
    a, b = (start_ns - int(t[0])) / 1e9, (end_ns - int(t[0])) / 1e9
    if quantity == ENERGY:
        joules = _interp(t_rel, v, b) - _interp(t_rel, v, a)
    else:
        inside = (t > start_ns) & (t < end_ns)
        xs = np.concatenate(([a], t_rel[inside], [b]))
        ys = np.concatenate(([_interp(t_rel, v, a)], v[inside], [_interp(t_rel, v, b)]))
        joules = float(np.sum((ys[1:] + ys[:-1]) * np.diff(xs)) / 2.0)
    duration_s = (end_ns - start_ns) / 1e9
    return {
        "joules": joules,
        "avg_power_w": joules / duration_s,
        "samples_in_window": int(np.count_nonzero((t >= start_ns) & (t <= end_ns))),
        "duration_s": duration_s,
    }


def window_valid(duration_s: float, update_period_s: float, samples: int, min_samples: int = 5) -> list[str]:
    """Why an energy figure over this window is not valid; an empty list when it is.

    Invalid when the window is shorter than ten sensor update periods (the sensor could not see
    it change often enough), or holds fewer than min_samples samples.
    """
    reasons: list[str] = []
    if duration_s < 10 * update_period_s:
        reasons.append(f"the window lasts {duration_s:.3g} s, shorter than 10 update periods of the sensor "
                       f"({10 * update_period_s:.3g} s)")
    if samples < min_samples:
        reasons.append(f"only {samples} sample(s) in the window, at least {min_samples} needed")
    return reasons


def net_energy(gross_j: float, idle_power_w: float, duration_s: float) -> float:
    """Energy above idle: gross minus idle power × duration. May be negative when the load is within idle noise."""
    if duration_s < 0 or idle_power_w < 0:
        raise ValueError("duration_s and idle_power_w must not be negative")
    return gross_j - idle_power_w * duration_s


def per_inference(joules: float, inferences: int) -> float:
    """Joules per inference."""
    if inferences <= 0:
        raise ValueError(f"per-inference energy needs at least one inference, got {inferences}")
    return joules / inferences


def estimate_cpu_energy(cpu_seconds: float, tdp_w: float, cores: int) -> dict[str, Any]:
    """An ESTIMATE, not a measurement: CPU time × the TDP share of one core (tdp_w / cores).

    Only for devices without any meter; it ignores frequency, idle power, memory and accelerators,
    and is labelled with method "estimated:cpu-time-tdp" so that it is never mistaken for a reading.
    """
    if cpu_seconds < 0 or tdp_w <= 0 or cores <= 0:
        raise ValueError("cpu_seconds must be >= 0, tdp_w and cores > 0")
    return {
        "joules": cpu_seconds * tdp_w / cores,
        "method": ESTIMATE_METHOD,
        "estimated": True,
        "cpu_seconds": cpu_seconds,
        "tdp_w": tdp_w,
        "cores": cores,
    }


def _windows_energy(t_ns: np.ndarray, values: np.ndarray, quantity: str, windows: Sequence[tuple[int, int]],
                    update_period_s: float) -> tuple[dict[str, Any], list[str]]:
    """Energy summed over several windows of one trace (the repeats of a timed run, each in its own executor,
    with the gaps between them left out), and why any window is not valid."""
    total: dict[str, Any] = {"joules": 0.0, "samples_in_window": 0, "duration_s": 0.0}
    reasons: list[str] = []
    for k, (a, b) in enumerate(windows):
        one = energy_in_window(t_ns, values, quantity, a, b)
        where = f"repeat {k}: " if len(windows) > 1 else ""
        reasons += [where + r for r in window_valid(one["duration_s"], update_period_s, one["samples_in_window"])]
        for key in total:
            total[key] += one[key]
    total["avg_power_w"] = total["joules"] / total["duration_s"]
    return total, reasons


def energy_metrics(samples: dict[str, dict[str, np.ndarray]], energy: Mapping[str, Any],
                   windows: Sequence[tuple[int, int]] | None, inferences: int) -> dict[str, Any]:
    """The report's energy block from the raw power/energy traces: one window per timed run (each repeat runs in
    its own executor; the gaps between them are left out), summed; the idle baseline was taken before them on the
    same meter. Provenance on every figure. `energy` is what the device observed about its sampling
    (Observations.energy: meter, idle window, sampler errors, estimate)."""
    e = energy
    windows = list(windows or [])
    window = (min(w[0] for w in windows), max(w[1] for w in windows)) if windows else None
    perf, idle = samples.get("power;phase=perf"), samples.get("power;phase=idle")
    none: dict[str, Any] = {"joules_per_inference": None, "avg_power_w": None}
    if not e.get("meter") or perf is None or window is None:
        est = e.get("estimate")
        if est and window is not None and inferences:
            est_j = estimate_cpu_energy(float(est["cpu_seconds"]), float(est["tdp_w"]), int(est["cores"]))
            duration = sum(b - a for a, b in windows) / 1e9
            return {"energy": {"source": ESTIMATE_METHOD, "joules_per_inference": est_j["joules"] / inferences,
                               "avg_power_w": est_j["joules"] / duration if duration > 0 else None,
                               "counts_toward_criteria": False, "basis": est_j}}
        return {"energy": {**none, "source": "unavailable"}}
    source = f"measured:{e['kind']}"
    reasons = [f"the meter failed: {m}" for m in e.get("errors", [])]
    try:
        gross, why = _windows_energy(perf["t_ns"], perf["fvalue"], e["quantity"], windows,
                                     float(e["update_period_s"]))
        reasons += why
    except ValueError as err:
        reasons.append(str(err))
        gross = None
    if reasons or gross is None:
        return {"energy": {**none, "source": source, "meter": e["meter"], "valid": False, "invalid_reasons": reasons}}
    out: dict[str, Any] = {
        "source": source, "meter": e["meter"], "valid": True, "window_s": gross["duration_s"],
        "samples_in_window": gross["samples_in_window"], "update_period_s": e["update_period_s"],
        "inferences": inferences, "joules": gross["joules"], "avg_power_w": gross["avg_power_w"],
        "joules_per_inference": per_inference(gross["joules"], inferences),
        "inferences_per_joule": inferences / gross["joules"] if gross["joules"] > 0 else None,
        "idle_power_w": None, "net_joules_per_inference": None,
    }
    iw = e.get("idle_window_ns")
    if idle is not None and iw and not e.get("idle_errors"):
        try:
            base = energy_in_window(idle["t_ns"], idle["fvalue"], e["quantity"], int(iw[0]), int(iw[1]))
            net = net_energy(gross["joules"], base["avg_power_w"], gross["duration_s"])
            out.update(idle_power_w=base["avg_power_w"], net_joules=net,
                       net_joules_per_inference=per_inference(net, inferences))
        except ValueError as err:
            out["idle_note"] = f"no idle baseline: {err}"
    return {"energy": out}
