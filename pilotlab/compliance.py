"""The lab decides what counts: what a device reports it ran is checked against what the lab assigned, and the
attempt is graded with the lab's settings, never the device's. labd and `labctl report verify` share this."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from pilotlab import conformance, genai
from pilotlab.attempt_metrics import Samples, compute_metrics, parse_kind
from pilotlab.domain import Observations
from pilotlab.tasks import EffectiveSettings, TaskSpec, effective

AUDITED_SCENARIOS = ("single-stream", "server", "multi-stream")  # where the agent runs TEST04 (and TEST01)
SCHEDULED_SCENARIOS = ("server", "periodic")  # samples carry their scheduled time in `aux`
NAMED = 3  # settings named in one reason; the rest are counted


@dataclass(frozen=True)
class Assigned:
    """What the lab assigned one task: its effective settings and provider, and which result sets it must return."""

    scenario: str
    settings: Mapping[str, Any]  # pilotlab.tasks.effective(spec.settings).to_dict()
    execution_provider: str
    accuracy: str | None = None  # the accuracy metric ("top1") when the task has a labelled dataset
    golden: bool = False  # the task compares outputs against golden arrays (numerical conformance)

    @classmethod
    def of(cls, spec: TaskSpec) -> Assigned:
        return cls(spec.scenario, _settings_dict(effective(spec.settings)), spec.execution_provider,
                   str(spec.accuracy.get("metric", "top1")) if spec.accuracy else None, spec.golden is not None)


_SCALARS = (str, int, float, bool, type(None))


def _settings_dict(s: EffectiveSettings) -> dict[str, Any]:
    """s.to_dict() without dataclasses.asdict's deep copy (a finish's largest single cost in building the
    assignment): the same dict where every field but batch_sizes is a plain scalar, as EffectiveSettings' are; else
    to_dict itself."""
    out = {f.name: getattr(s, f.name) for f in fields(s)}
    sizes = out.get("batch_sizes")
    if type(sizes) is not tuple or any(type(v) not in _SCALARS for k, v in out.items() if k != "batch_sizes") \
            or any(type(b) not in _SCALARS for b in sizes):
        return s.to_dict()
    out["batch_sizes"] = list(sizes)
    return out


@dataclass(frozen=True)
class Reported:
    """What the device says it did: its effective settings, its execution provider and its observations."""

    settings: Mapping[str, Any]
    execution_provider: str
    observations: Observations


def latency_kinds(scenario: str, settings: Mapping[str, Any]) -> list[str]:
    """The latency sets a correct agent sends: one per repeat (and per batch size, offline), as agents/measure.py
    names them."""
    repeats = int(settings["repeats"])
    suffixes = [f";repeat={r}" for r in range(repeats)] if repeats > 1 else [""]
    bases = [f"latency;batch={b}" for b in settings["batch_sizes"]] if scenario == "offline" else ["latency"]
    return [base + suffix for base in bases for suffix in suffixes]


def required_sets(a: Assigned) -> dict[str, str]:
    """Every result set the assignment calls for → what in the assignment calls for it."""
    s = a.settings
    timed = f"{s['repeats']} repeats" if int(s["repeats"]) > 1 else "a timed run"
    if a.scenario == "offline":
        timed += f" of batch sizes {list(s['batch_sizes'])}"
    out = {kind: f"the lab assigned {timed}" for kind in latency_kinds(a.scenario, s)}
    if s["audit"] and a.scenario in AUDITED_SCENARIOS:
        out |= {"audit-same": "the lab assigned the TEST04 audit", "audit-varied": "the lab assigned the TEST04 audit"}
        if a.accuracy:
            out["perf-prediction"] = "the lab assigned the TEST01 audit"
    if a.accuracy:
        out["prediction"] = "the lab assigned an accuracy run"
    if a.scenario == "generative":
        out |= {kind: f"the lab assigned {timed} of generated tokens" for kind in token_kinds(s)}
        if int(s["perplexity_windows"]):
            why = f"the lab assigned perplexity over {s['perplexity_windows']} windows"
            out[genai.LL_KIND] = why  # the reference log-likelihoods are the lab's own (genai_metrics.with_reference)
    elif a.golden:
        why = "the lab assigned a conformance check against golden outputs"
        out |= {conformance.RECORD_KIND: why, conformance.PEAK_KIND: why}
    return out


def token_kinds(settings: Mapping[str, Any]) -> list[str]:
    """The token sets of a generative task, one beside each latency set (pilotlab.genai)."""
    return [genai.TOKEN_KIND + kind[len("latency"):] for kind in latency_kinds("generative", settings)]


def _canon(v: Any) -> str:
    """JSON text with every number a float and tuples as lists, so 1 and 1.0, (1,) and [1] compare equal."""
    def norm(x: Any) -> Any:
        t = type(x)  # the usual types first, each as the isinstance chain below treats it
        if t is float:
            return x
        if t is int:
            return float(x)
        if t is str or t is bool or x is None:
            return x
        if isinstance(x, bool) or x is None or isinstance(x, str):
            return x
        if isinstance(x, int | float):
            return float(x)
        if isinstance(x, list | tuple):
            return [norm(y) for y in x]
        if isinstance(x, Mapping):
            return {str(k): norm(y) for k, y in x.items()}
        return str(x)
    return json.dumps(norm(v), sort_keys=True)


def _settings(assigned: Mapping[str, Any], reported: Mapping[str, Any]) -> list[str]:
    def show(v: Any) -> str:
        return json.dumps(v, default=str)

    lab, dev = set(assigned), set(reported)
    if lab == dev and _canon(assigned) == _canon(reported):
        return []  # what every conforming device reports: one comparison, not one per setting
    items = [f"ran {k}={show(reported[k])} where the lab assigned {show(assigned[k])}"
             for k in sorted(lab & dev) if _canon(assigned[k]) != _canon(reported[k])]
    items += [f"reported no {k} where the lab assigned {show(assigned[k])}" for k in sorted(lab - dev)]
    items += [f"ran {k}={show(reported[k])}, which the lab did not assign" for k in sorted(dev - lab)]
    if not items:
        return []
    more = f"; and {len(items) - NAMED} more" if len(items) > NAMED else ""
    return [f"settings: the device {'; '.join(items[:NAMED])}{more}"]


def _window(scenario: str, kind: str, a: Mapping[str, np.ndarray], w: Mapping[str, Any] | None) -> list[str]:
    if w is None:
        return [f"no performance window reported for '{kind}'"]
    try:
        start, end = int(w["start_ns"]), int(w["end_ns"])
    except (KeyError, TypeError, ValueError):
        return [f"the performance window reported for '{kind}' has no integer start_ns and end_ns"]
    t, lat = a["t_ns"], a["value"]
    inside = (t >= start) & (t + lat <= end)
    if scenario in SCHEDULED_SCENARIOS:
        inside &= a["aux"] >= start
    outside = int(np.count_nonzero(~inside))
    return [f"{outside} samples of '{kind}' lie outside the reported performance window"] if outside else []


def check(assigned: Assigned, reported: Reported, samples: Samples) -> list[str]:
    """One line per way the device's report departs from the assignment: its settings and execution provider,
    missing or unassigned result sets, and latency sets without a performance window that holds every sample."""
    reasons = _settings(assigned.settings, reported.settings)
    if reported.execution_provider != assigned.execution_provider:
        ran = reported.execution_provider or "no provider"
        reasons.append(f"execution provider: the device ran {ran} where the lab assigned {assigned.execution_provider}")
    required = required_sets(assigned)
    present = {kind for kind, a in samples.items() if a["value"].size}
    reasons += [f"missing result set '{kind}': {why}" for kind, why in required.items() if kind not in present]
    reasons += [f"result set '{kind}' was not assigned by the lab" for kind in sorted(present - set(required))
                if parse_kind(kind)[0] == "latency"]
    windows = {str(w.get("kind")): w for w in reported.observations.windows}
    for kind in latency_kinds(assigned.scenario, assigned.settings):
        if kind in present:
            reasons += _window(assigned.scenario, kind, samples[kind], windows.get(kind))
    if assigned.scenario == "generative":
        for kind, latency in zip(token_kinds(assigned.settings), latency_kinds("generative", assigned.settings),
                                 strict=True):
            if kind in present and latency in present:
                reasons += _token_window(kind, samples[kind], windows.get(latency))
    return reasons


def _token_window(kind: str, a: Mapping[str, np.ndarray], w: Mapping[str, Any] | None) -> list[str]:
    """Every token of a timed run was produced inside that run's performance window."""
    if w is None:
        return []  # the latency set's check names the missing window
    try:
        start, end = int(w["start_ns"]), int(w["end_ns"])
    except (KeyError, TypeError, ValueError):
        return []  # and a malformed one
    t = a["t_ns"]
    outside = int(np.count_nonzero((t < start) | (t > end)))
    return [f"{outside} samples of '{kind}' lie outside the reported performance window"] if outside else []


def graded_metrics(assigned: Assigned, reported: Reported, samples: Samples,
                   labels: np.ndarray | None) -> dict[str, Any]:
    """The metrics the lab grades an attempt with: computed with the assigned settings, and invalid, naming each
    reason, where the device's report does not comply with the assignment."""
    metrics = compute_metrics(assigned.scenario, dict(assigned.settings), samples, labels, assigned.accuracy or "top1",
                              observations=reported.observations)
    reasons = metrics["validity"]["reasons"] + check(assigned, reported, samples)
    metrics["validity"] = {"valid": not reasons, "reasons": reasons}
    return metrics
