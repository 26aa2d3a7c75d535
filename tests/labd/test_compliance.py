"""The lab decides what counts, over the real handlers and store: a correct agent's finish is valid, and one that
claims other settings, leaves out the audit or reports runs outside their windows is graded invalid, never pass."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from labctl.verify import recompute, verify_bundle
from labd.evidence.bundle import report_bundle
from labd.evidence.keys import Issuer, load_or_create_signing_key
from labd.handlers import agents
from labd.results.attempts import task_labels
from pilotlab import domain as d
from pilotlab.compliance import Assigned
from tests.labd.agent_results import Sets, batches, finish, results
from tests.labd.conftest import Parts


def _claimed(parts: Parts) -> tuple[d.Device, d.Attempt, Assigned, np.ndarray]:
    """The smoke task claimed by a device: its attempt, what the lab assigned, and the dataset's labels."""
    dev = parts.enrol("r1")
    parts.queue(dev)
    task, att = parts.claim(dev)
    assert task.spec is not None
    labels = task_labels(parts.store, task.spec)
    assert labels is not None
    return dev, att, Assigned.of(task.spec), labels


def _finish(parts: Parts, dev: d.Device, att: d.Attempt, sets: Sets, fin: d.AttemptFinish) -> d.Task:
    for b in batches(att.id, sets):
        assert agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, b)
    run, ack = agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id,
                             replace(fin, batches=len(sets)))
    assert ack and run is not None and run.status == d.Status.COMPLETED
    return run.tasks[0]


def test_a_correct_agents_finish_is_valid_and_graded_on_its_figures(parts: Parts) -> None:
    dev, att, assigned, labels = _claimed(parts)
    sets, obs = results(assigned, labels)
    task = _finish(parts, dev, att, sets, finish(att.id, assigned, len(sets), obs))
    assert task.metrics["validity"] == {"valid": True, "reasons": []}
    assert task.verdict == d.Verdict.PASS and task.metrics["accuracy"]["value"] == 1.0
    assert task.metrics["repeats"]["k"] == assigned.settings["repeats"] == 3
    assert task.metrics["stability"]["stable"] is True


def test_forged_settings_without_the_audit_are_invalid_and_never_pass(parts: Parts) -> None:
    dev, att, assigned, labels = _claimed(parts)
    sets, obs = results(assigned, labels)
    for kind in ("audit-same", "audit-varied", "perf-prediction"):
        del sets[kind]
    forged = replace(finish(att.id, assigned, len(sets), obs), effective_settings={"min_query_count": 300})
    task = _finish(parts, dev, att, sets, forged)
    reasons = task.metrics["validity"]["reasons"]
    assert task.metrics["validity"]["valid"] is False and task.verdict == d.Verdict.FAIL
    assert reasons[0].startswith("settings: the device reported no audit where the lab assigned true; ")
    assert reasons[1:] == ["missing result set 'audit-same': the lab assigned the TEST04 audit",
                           "missing result set 'audit-varied': the lab assigned the TEST04 audit",
                           "missing result set 'perf-prediction': the lab assigned the TEST01 audit"]
    assert task.metrics["accuracy"]["value"] == 1.0  # every figure holds; the measurement still does not count
    assert parts.store.get_attempt(att.id).effective_settings == {"min_query_count": 300}  # kept for the record


def test_the_lab_grades_with_its_settings_not_the_devices(parts: Parts) -> None:
    dev, att, assigned, labels = _claimed(parts)
    sets, obs = results(assigned, labels, queries=100)  # fewer than the assigned min_query_count 300
    claim = {**assigned.settings, "min_query_count": 100, "min_duration_ms": 50}
    task = _finish(parts, dev, att, sets, replace(finish(att.id, assigned, len(sets), obs),
                                                   effective_settings=claim))
    reasons = task.metrics["validity"]["reasons"]
    assert "repeat 0: 100 queries, fewer than min_query_count 300" in reasons
    assert "repeat 0: ran 100 ms, shorter than min_duration_ms 500" in reasons
    assert reasons[-1] == ("settings: the device ran min_duration_ms=50 where the lab assigned 500; ran "
                           "min_query_count=100 where the lab assigned 300")
    assert task.verdict == d.Verdict.FAIL


def test_timed_runs_outside_their_windows_are_invalid(parts: Parts) -> None:
    dev, att, assigned, labels = _claimed(parts)
    sets, obs = results(assigned, labels)
    windows = [w if w["kind"] != "latency;repeat=2" else {**w, "start_ns": w["start_ns"] + 10_000_000}
               for w in obs.windows if w["kind"] != "latency;repeat=1"]
    task = _finish(parts, dev, att, sets, finish(att.id, assigned, len(sets), d.Observations(windows=windows)))
    assert task.metrics["validity"]["reasons"] == [
        "no performance window reported for 'latency;repeat=1'",
        "10 samples of 'latency;repeat=2' lie outside the reported performance window"]
    assert task.verdict == d.Verdict.FAIL


def _bundle(parts: Parts, run_id: str, root: Path) -> dict[str, Any]:
    (root.parent / "lab").mkdir()
    issuer = Issuer("PilotLab test lab", load_or_create_signing_key(root.parent / "lab"))
    for name, data in report_bundle(parts.store, issuer, parts.clock, run_id).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    report: dict[str, Any] = json.loads((root / "report.json").read_bytes())
    return report


def test_the_verifier_rechecks_compliance_from_the_report(parts: Parts, tmp_path: Path) -> None:
    dev, att, assigned, labels = _claimed(parts)
    sets, obs = results(assigned, labels)
    del sets["audit-same"]
    task = _finish(parts, dev, att, sets, replace(finish(att.id, assigned, len(sets), obs),
                                                   effective_settings={**assigned.settings, "repeats": 1}))
    report = _bundle(parts, task.run_id, tmp_path / "bundle")
    problems, notes = verify_bundle(tmp_path / "bundle")
    assert problems == []  # the lab's record is consistent ...
    reasons = ["settings: the device ran repeats=1 where the lab assigned 3",
               "missing result set 'audit-same': the lab assigned the TEST04 audit"]
    assert f"task digits-single-stream: the lab graded the measurement invalid: {'; '.join(reasons)}" in notes

    [t] = report["tasks"]
    t["metrics"]["validity"] = {"valid": True, "reasons": []}  # a lab that hides why the measurement is invalid
    assert recompute(tmp_path / "bundle", report) == [
        *(f"task digits-single-stream: the report's data gives validity reason {r!r}, which the report omits"
          for r in reasons),
        "task digits-single-stream: verdict 'fail' does not follow from its criteria ('pass')"]
    t["metrics"]["validity"] = {"valid": False, "reasons": reasons}
    t["settings"] = {**t["settings"], "repeats": 1}  # ... or that claims to have assigned what the device ran
    gives = "task digits-single-stream: the report's data gives validity reason"
    assert recompute(tmp_path / "bundle", report) == [
        f"task digits-single-stream: validity reason {reasons[0]!r} does not follow from the report's data",
        f"{gives} \"missing result set 'latency': the lab assigned a timed run\", which the report omits",
        *(f"{gives} \"result set 'latency;repeat={r}' was not assigned by the lab\", which the report omits"
          for r in range(3))]
