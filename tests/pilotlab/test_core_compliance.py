"""The lab decides what counts: each way a device's report can depart from its assignment gives one reason, a
compliant report gives none, and the lab's metrics use the assigned settings whatever the device claims."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from pilotlab.attempt_metrics import Samples
from pilotlab.compliance import Assigned, Reported, check, graded_metrics, latency_kinds, required_sets
from pilotlab.domain import Observations
from pilotlab.tasks import effective, requested

MS = 1_000_000
BASE = 5_000_000_000_000  # an absolute perf_counter reading
CPU = "CPUExecutionProvider"


def assigned(scenario: str = "single-stream", accuracy: str | None = "top1", golden: bool = False,
             **settings: Any) -> Assigned:
    return Assigned(scenario, effective(requested(scenario, settings)).to_dict(), CPU, accuracy, golden)


def timed(start: int, n: int = 20, lat_ms: float = 1.0, scheduled: bool = False) -> dict[str, np.ndarray]:
    """n queries back to back from `start`; scheduled ones were due 0.1 ms before they were issued."""
    lat = np.full(n, int(lat_ms * MS), dtype=np.int64)
    t = start + np.arange(n, dtype=np.int64) * int(lat_ms * MS)
    aux = t - MS // 10 if scheduled else np.zeros(n, dtype=np.int64)
    return {"index": np.arange(n, dtype=np.int64), "sample_index": np.arange(n, dtype=np.int64), "t_ns": t,
            "value": lat, "aux": aux, "fvalue": np.zeros(n)}


def compliant(a: Assigned) -> tuple[Samples, Reported]:
    """What a correct agent sends for the assignment: every set, each timed run inside its window."""
    scheduled = a.scenario in ("server", "periodic")
    samples: Samples = {}
    windows = []
    for i, kind in enumerate(latency_kinds(a.scenario, a.settings)):
        start = BASE + i * 1_000 * MS
        samples[kind] = timed(start, scheduled=scheduled)
        end = int((samples[kind]["t_ns"] + samples[kind]["value"]).max())
        windows.append({"kind": kind, "start_ns": start - MS, "end_ns": end + MS})
    for kind in required_sets(a):
        samples.setdefault(kind, timed(BASE - 10_000 * MS, n=5))
    return samples, Reported(dict(a.settings), a.execution_provider, Observations(windows=windows))


@pytest.mark.parametrize("a", [
    assigned(),
    assigned(repeats=1),
    assigned(golden=True, accuracy=None),
    assigned("offline", batch_sizes=[1, 8], repeats=2),
    assigned("multi-stream", samples_per_query=4),
    assigned("server", target_qps=100),
    assigned("periodic", rate_hz=50),
], ids=["single-stream", "one-repeat", "golden", "offline", "multi-stream", "server", "periodic"])
def test_a_compliant_report_gives_no_reason(a: Assigned) -> None:
    samples, reported = compliant(a)
    assert check(a, reported, samples) == []


def test_latency_kinds_are_the_agents() -> None:
    assert latency_kinds("single-stream", {"repeats": 1, "batch_sizes": [1]}) == ["latency"]
    assert latency_kinds("server", {"repeats": 2, "batch_sizes": [1]}) == ["latency;repeat=0", "latency;repeat=1"]
    assert latency_kinds("offline", {"repeats": 1, "batch_sizes": [1, 8]}) == ["latency;batch=1", "latency;batch=8"]
    assert latency_kinds("offline", {"repeats": 2, "batch_sizes": [4]}) == ["latency;batch=4;repeat=0",
                                                                             "latency;batch=4;repeat=1"]


def test_required_sets_follow_the_assignment() -> None:
    assert set(required_sets(assigned(repeats=1))) == {"latency", "audit-same", "audit-varied", "perf-prediction",
                                                       "prediction"}
    assert set(required_sets(assigned(repeats=1, accuracy=None))) == {"latency", "audit-same", "audit-varied"}
    assert set(required_sets(assigned("offline", repeats=1, accuracy=None))) == {"latency;batch=1"}
    assert set(required_sets(assigned("periodic", rate_hz=10, repeats=1, accuracy=None, golden=True))) == {
        "latency", "conformance", "conformance-peak"}


# ---------------------------------------------------------------- settings and provider


def test_a_different_setting_is_named_with_both_values() -> None:
    a = assigned(min_query_count=1000)
    samples, reported = compliant(a)
    forged = replace(reported, settings={**reported.settings, "min_query_count": 300})
    assert check(a, forged, samples) == ["settings: the device ran min_query_count=300 where the lab assigned 1000"]


def test_settings_compare_after_json_normalisation() -> None:
    a = assigned("offline", batch_sizes=[1, 8], repeats=1)
    samples, reported = compliant(a)
    same = {**reported.settings, "batch_sizes": (1.0, 8), "min_duration_ms": 500.0, "stability_max_spread": 0.1}
    assert check(a, replace(reported, settings=same), samples) == []
    as_number = {**reported.settings, "audit": 1}  # a flag is not a number
    assert check(a, replace(reported, settings=as_number), samples) == [
        "settings: the device ran audit=1 where the lab assigned true"]


def test_missing_and_extra_settings_count_and_past_three_are_counted() -> None:
    a = assigned()
    samples, reported = compliant(a)
    s = {k: v for k, v in reported.settings.items() if k not in ("seed", "warmup_queries")}
    s |= {"repeats": 1, "turbo": True, "zzz": 0}
    [reason] = check(a, replace(reported, settings=s), samples)
    assert reason == ("settings: the device ran repeats=1 where the lab assigned 3; reported no seed where the lab "
                      "assigned 0; reported no warmup_queries where the lab assigned 50; and 2 more")


def test_a_device_claiming_one_setting_only_is_named() -> None:
    a = assigned(min_query_count=300)
    samples, reported = compliant(a)
    [reason] = check(a, replace(reported, settings={"min_query_count": 300}), samples)
    assert reason.startswith("settings: the device reported no audit where the lab assigned true; ")
    assert reason.endswith(f"and {len(a.settings) - 1 - 3} more")


def test_execution_provider() -> None:
    a = assigned()
    samples, reported = compliant(a)
    assert check(a, replace(reported, execution_provider="CUDAExecutionProvider"), samples) == [
        "execution provider: the device ran CUDAExecutionProvider where the lab assigned CPUExecutionProvider"]
    assert check(a, replace(reported, execution_provider=""), samples) == [
        "execution provider: the device ran no provider where the lab assigned CPUExecutionProvider"]


# ---------------------------------------------------------------- result sets


@pytest.mark.parametrize(("kind", "why"), [
    ("audit-same", "the lab assigned the TEST04 audit"),
    ("audit-varied", "the lab assigned the TEST04 audit"),
    ("perf-prediction", "the lab assigned the TEST01 audit"),
    ("prediction", "the lab assigned an accuracy run"),
    ("conformance", "the lab assigned a conformance check against golden outputs"),
    ("latency;repeat=1", "the lab assigned 3 repeats"),
])
def test_a_missing_result_set_is_named_with_what_called_for_it(kind: str, why: str) -> None:
    a = assigned(golden=True)
    samples, reported = compliant(a)
    del samples[kind]
    assert check(a, reported, samples) == [f"missing result set '{kind}': {why}"]


def test_an_empty_set_counts_as_missing() -> None:
    a = assigned("offline", batch_sizes=[1, 8], repeats=1, accuracy=None)
    samples, reported = compliant(a)
    samples["latency;batch=8"] = timed(BASE, n=0)
    assert check(a, reported, samples) == [
        "missing result set 'latency;batch=8': the lab assigned a timed run of batch sizes [1, 8]"]


def test_latency_sets_the_lab_did_not_assign() -> None:
    a = assigned(repeats=1)
    samples, reported = compliant(a)
    samples["latency;repeat=7"] = timed(BASE)
    samples["power;phase=perf"] = timed(BASE)  # observations beside the results are not result sets
    assert check(a, reported, samples) == ["result set 'latency;repeat=7' was not assigned by the lab"]


def test_one_set_where_three_repeats_were_assigned() -> None:
    a = assigned(accuracy=None)
    samples, reported = compliant(a)
    for r in range(3):
        del samples[f"latency;repeat={r}"]
    samples["latency"] = timed(BASE)
    assert check(a, reported, samples) == [
        *(f"missing result set 'latency;repeat={r}': the lab assigned 3 repeats" for r in range(3)),
        "result set 'latency' was not assigned by the lab"]


# ---------------------------------------------------------------- performance windows


def test_a_latency_set_without_a_window() -> None:
    a = assigned()
    samples, reported = compliant(a)
    obs = Observations(windows=[w for w in reported.observations.windows if w["kind"] != "latency;repeat=1"])
    assert check(a, replace(reported, observations=obs), samples) == [
        "no performance window reported for 'latency;repeat=1'"]


def test_samples_outside_their_window_are_counted() -> None:
    a = assigned()
    samples, reported = compliant(a)
    s = samples["latency;repeat=1"]
    s["t_ns"][:12] -= 100 * MS  # issued before the window began
    s["value"][-1] += 100 * MS  # completed after it ended
    assert check(a, reported, samples) == ["13 samples of 'latency;repeat=1' lie outside the reported performance "
                                           "window"]


def test_a_scheduled_release_before_the_window_counts_as_outside() -> None:
    a = assigned("server", target_qps=100, repeats=1)
    samples, reported = compliant(a)
    samples["latency"]["aux"][:3] -= 5 * MS
    assert check(a, reported, samples) == ["3 samples of 'latency' lie outside the reported performance window"]


def test_a_malformed_window() -> None:
    a = assigned(repeats=1)
    samples, reported = compliant(a)
    obs = Observations(windows=[{"kind": "latency", "start_ns": "soon"}])
    assert check(a, replace(reported, observations=obs), samples) == [
        "the performance window reported for 'latency' has no integer start_ns and end_ns"]


# ---------------------------------------------------------------- what the lab grades


def test_graded_metrics_use_the_assigned_settings_and_append_the_reasons() -> None:
    a = assigned(repeats=1, accuracy=None, min_query_count=1000, min_duration_ms=0)
    samples, reported = compliant(a)
    forged = replace(reported, settings={**reported.settings, "min_query_count": 10})
    m = graded_metrics(a, forged, samples, None)
    assert m["validity"] == {"valid": False, "reasons": [
        "20 queries, fewer than min_query_count 1000",
        "settings: the device ran min_query_count=10 where the lab assigned 1000"]}


def test_graded_metrics_of_a_compliant_attempt_are_valid() -> None:
    a = assigned(repeats=1, accuracy=None, min_query_count=10, min_duration_ms=0)
    samples, reported = compliant(a)
    m = graded_metrics(a, reported, samples, None)
    assert m["validity"] == {"valid": True, "reasons": []} and m["latency_ms"]["n"] == 20
