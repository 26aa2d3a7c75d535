"""report.json's content, laid out after ISO/IEC 17025 clause 7.8: method, item, conditions, equipment,
results with units and intervals, decision rules and conformity statements, history, amendments."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from labd.evidence.explain import figure_notes
from labd.evidence.int8 import task_notes
from labd.evidence.keys import Issuer
from labd.results.attempts import attempt_samples, grade, graded_samples, task_labels
from labd.state import Store
from pilotlab import __version__, dsse
from pilotlab import domain as d
from pilotlab.attempt_metrics import parse_kind
from pilotlab.compliance import Assigned
from pilotlab.genai_metrics import REFERENCE_COLUMN
from pilotlab.samples import kind_filename, samples_npy

SCHEMA = "pilotlab.report/v2"  # v2: tasks[].settings is what the lab assigned; device_settings what the device ran
STATEMENT = "The results in this report relate only to the item tested, under the conditions recorded here."
UNITS = {"latency_ms": "ms", "throughput_per_s": "samples/s", "accuracy": "fraction of samples",
         "energy.joules_per_inference": "J", "energy.avg_power_w": "W", "periodic.release_jitter_us_p99": "µs",
         "periodic.completion_jitter_us_p99": "µs", "conformance.max_abs_err": "output units"}
ITEM_TAGS = ("make", "model", "serial", "firmware")
# The health quarantine a run's last attempt triggers is recorded just after the run ended: still the run's.
AFTER_END_MS = 5_000
AUDIT_LIMIT = 1000
AUTHORISED_MEANS = "the lab's Ed25519 signature over every file of the bundle (attestation.dsse.json)"


def key_fingerprint(issuer: Issuer) -> str:
    """sha256 of the lab's public key exactly as `labctl lab pubkey` prints it (and as lab.pub.pem holds it)."""
    return hashlib.sha256(dsse.public_pem(issuer.key.public_key()).encode()).hexdigest()


def iso(ms: int) -> str | None:
    if not ms:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _final_attempt(task: d.Task) -> d.Attempt | None:
    done = [a for a in task.history if a.outcome == d.Outcome.OK.value]
    return done[-1] if done else (task.history[-1] if task.history else None)


def _device(dev: d.Device) -> dict[str, Any]:
    c = dev.capabilities
    out = {"name": dev.name, "class": dev.device_class, "region": dev.region, "tags": dev.tags,
           "agent_version": c.agent_version, "onnxruntime_version": c.onnxruntime_version,
           "providers": c.providers, "os": c.os, "os_release": c.os_release, "arch": c.arch,
           "cpu_model": c.cpu_model, "cpu_cores": c.cpu_cores, "memory_bytes": c.memory_bytes, "hostname": c.hostname,
           "cpu_flags": c.cpu_flags,
           "public_key": base64.b64encode(dev.public_key).decode() if dev.public_key else None}
    out.update({k: dev.tags[k] for k in ITEM_TAGS if k in dev.tags})
    return out


def _statement(c: dict[str, Any]) -> str:
    what = {"ci95_lower": "95% lower confidence bound (Clopper-Pearson)", "ci95_upper":
            "95% upper confidence bound (Clopper-Pearson)"}.get(c["rule"], "measured value")
    if c["metric"] == "validity":
        return f"the measurement broke its validity rules ({c['value']}): does not conform"
    value = "not measured" if c["value"] is None else f"{c['value']:.6g}"
    verdict = "conforms" if c["verdict"] == "pass" else "does not conform"
    return f"{c['metric']} {what} {value} {c['op']} {c['threshold']}: {verdict}"


def _samples(store: Store, task: d.Task, att: d.Attempt, files: dict[str, bytes], folder: str) -> dict[str, str]:
    """The attempt's sample files (under samples/FOLDER/), each with what the lab adds from its own artifacts: the
    `label` column (the dataset label beside predictions, the golden decode's token beside a generative task's
    tokens) and the float `reference` column (the golden's log-likelihood beside a generative task's), written by
    samples_npy from graded_samples' arrays; the device's signed columns as it sent them."""
    out: dict[str, str] = {}
    spec = task.spec
    labels = task_labels(store, spec) if spec is not None else None
    samples = graded_samples(store, att.id, spec) if spec is not None else attempt_samples(store, att.id)
    for kind, arrays in samples.items():
        path = f"samples/{folder}/{kind_filename(kind)}"
        with_labels = arrays.get(REFERENCE_COLUMN)
        if labels is not None and parse_kind(kind)[0] in ("prediction", "perf-prediction"):
            with_labels = labels[arrays["sample_index"]]
        files[path] = samples_npy(arrays, with_labels)
        out[kind] = path
    return out


def _folder(run: d.Run, task: d.Task) -> str:
    """Where a task's samples go in the bundle: samples/TASK/, or samples/TASK@DEVICE/ when the run gives the same
    task to several devices (a run on a --select of several), so no device's samples overwrite another's."""
    if sum(1 for t in run.tasks if t.name == task.name) > 1:
        return f"{task.name}@{task.device_name}"
    return task.name


def _destinations(store: Store, task: d.Task) -> list[dict[str, str]]:
    """Every device the task's data was sent to (one per attempt's device), with its region."""
    seen: dict[str, dict[str, str]] = {}
    for a in task.history:
        if a.device_id and a.device_id not in seen:
            dev = store.get_device(a.device_id)
            seen[a.device_id] = {"device": dev.name, "region": dev.region}
    return list(seen.values())


def _model_path(store: Store, sha256: str) -> Path | None:
    try:
        return Path(store.get_artifact(sha256).path)
    except d.NotFound:
        return None


def _task(store: Store, task: d.Task, dev: d.Device | None, files: dict[str, bytes],
          sigs: dict[str, Any], folder: str = "") -> dict[str, Any]:
    spec, att = task.spec, _final_attempt(task)
    assert spec is not None, "a stored task always has its spec"
    samples = {}
    if att is not None and att.outcome == d.Outcome.OK.value:
        samples = _samples(store, task, att, files, folder or task.name)
        sigs[att.id] = [{"seq": seq, "kind": kind, "n": n, "signature": base64.b64encode(sig).decode()}
                        for seq, kind, n, sig in store.batches(att.id)]
    criteria = grade(task.metrics, spec)[1] if task.metrics else []
    for c in criteria:
        c["statement"] = _statement(c)
    model, dataset, assigned = spec.model, spec.dataset, Assigned.of(spec)
    out: dict[str, Any] = {
        "id": task.id, "name": task.name, "device": task.device_name, "status": task.status.value,
        "verdict": task.verdict.value if task.verdict else None, "reason": task.reason,
        "attempt_id": att.id if att else None,
        "model": {"name": model.name, "sha256": model.sha256, "size": model.size},
        "dataset": {"name": dataset.name, "sha256": dataset.sha256,
                    "classification": dataset.classification,
                    "allowed_regions": list(dataset.regions),
                    "sent_to": _destinations(store, task),
                    "withheld": task.reason if task.reason.startswith("data zone") else None} if dataset else None,
        "scenario": spec.scenario,
        # What the lab assigned, which it grades with, beside what the device reported it ran.
        "execution_provider": assigned.execution_provider,
        "device_execution_provider": att.execution_provider if att else None,
        "providers_used": att.providers_used if att else [],
        "settings": assigned.settings,
        "device_settings": att.effective_settings if att else None,
        "requested_settings": spec.settings.to_dict(),
        "accuracy_metric": assigned.accuracy,
        "golden": {"name": spec.golden.name, "sha256": spec.golden.sha256} if spec.golden else None,
        "observations": att.observations.to_dict() if att else {},
        "metrics": task.metrics, "units": UNITS, "criteria": criteria, "attempts": task.attempts,
        "attempt_history": [{"number": a.number, "device": a.device_name, "status": a.status.value,
                             "outcome": a.outcome, "reason": a.reason, "started": iso(a.started_ms),
                             "finished": iso(a.finished_ms)} for a in task.history],
        "environment": att.environment if att else {}, "phases": att.phases if att else {},
        "samples": samples,
    }
    out["notes"] = task_notes(out, dev.capabilities.cpu_flags if dev else [], lambda: _model_path(store, model.sha256))
    sensors = [{"kind": s.kind, "name": s.name, "readable": s.readable} for s in dev.capabilities.energy_sensors] \
        if dev else []
    out["figure_notes"] = figure_notes(out, sensors, dev.tags if dev else {})
    return out


def _grade(suite_json: str, tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The level each device reached in the suite's own grading table (levels are cumulative)."""
    from evalsuites import Suite

    grading = Suite.from_json(suite_json).grading
    if grading is None:
        return None
    by_device: dict[str, set[str]] = {}
    for t in tasks:
        passed = by_device.setdefault(t["device"], set())
        if (t["metrics"].get("validity") or {}).get("valid", True):  # an invalid measurement reaches no level
            passed.update(c["id"] for c in t["criteria"] if c.get("id") and c["verdict"] == "pass")
    levels = {dev: grading.level_reached(ids) for dev, ids in by_device.items()}
    first = next(iter(levels.values()), None) if levels else None
    return {"scheme": grading.scheme, "level": first.name if first else None,
            "by_device": {dev: (lv.name if lv else None) for dev, lv in levels.items()},
            "levels": [{"name": lv.name, "description": lv.description, "criteria": list(lv.criteria)}
                       for lv in grading.levels]}


def _audit(store: Store, run: d.Run, issued_ms: int) -> list[dict[str, Any]]:
    """The audit-log entries of the actions that touched the run, oldest first: those about it (submission,
    cancellation, amendments; not report pulls) and the quarantines, while it ran, of a device that ran one of its
    tasks."""
    found = [e for e in store.list_audit(run.id, AUDIT_LIMIT) if e.action != "report.pull"]
    until = run.finished_ms + AFTER_END_MS if run.finished_ms else issued_ms
    for device_id in sorted({a.device_id for t in run.tasks for a in t.history if a.device_id}):
        name = store.get_device(device_id).name
        found += [e for e in store.list_audit(name, AUDIT_LIMIT, since_ms=run.submitted_ms, until_ms=until)
                  if e.action == "device.quarantine"]
    return [{"time": iso(e.time_ms), "actor": e.actor, "role": e.role, "action": e.action, "target": e.target,
             "detail": e.detail} for e in sorted(found, key=lambda e: e.seq)]


def build(store: Store, issuer: Issuer, run: d.Run, report_id: str, amends: dict[str, Any] | None,
          files: dict[str, bytes], issued_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report.json content, device signatures by attempt); raw sample files are added to `files`."""
    suite = store.get_suite(run.suite_id, run.suite_version)
    devices = {t.device_id: store.get_device(t.device_id) for t in run.tasks}
    first = devices[run.tasks[0].device_id] if run.tasks else None
    sigs: dict[str, Any] = {}
    tasks = [_task(store, t, devices.get(t.device_id), files, sigs, _folder(run, t)) for t in run.tasks]
    starts = [a.started_ms for t in run.tasks for a in t.history if a.started_ms]
    ends = [a.finished_ms for t in run.tasks for a in t.history if a.finished_ms]
    equipment = [{"device": dv.name, "kind": s.kind, "name": s.name, "readable": s.readable}
                 for dv in devices.values() for s in dv.capabilities.energy_sensors]
    lab = {"name": issuer.lab_name, "software": f"pilotlab {__version__}",
           "key_id": dsse.key_id(issuer.key.public_key()), "public_key_sha256": key_fingerprint(issuer)}
    report = {
        "schema": SCHEMA, "report_id": report_id, "grade": _grade(suite.suite_json, tasks),
        "lab": lab,
        # ISO/IEC 17025 7.8.2.1 (o): no person signs; the lab does, with its key (attestation.dsse.json).
        "authorised_by": {"name": issuer.lab_name, "key_id": lab["key_id"],
                          "public_key_sha256": lab["public_key_sha256"], "means": AUTHORISED_MEANS},
        "issued": iso(issued_ms),
        "dates": {"submitted": iso(run.submitted_ms), "tested_from": iso(min(starts)) if starts else None,
                  "tested_to": iso(max(ends)) if ends else None},
        "run": {"id": run.id, "status": run.status.value, "verdict": run.verdict.value if run.verdict else None,
                "reason": run.reason, "priority": run.priority, "submitted": iso(run.submitted_ms),
                "finished": iso(run.finished_ms),
                "suite": {"id": run.suite_id, "version": run.suite_version, "digest": run.suite_digest,
                          "title": suite.title}},
        "method": {"suite": run.suite_id, "version": run.suite_version, "digest": run.suite_digest,
                   "percentiles": "nearest-rank", "accuracy_interval": "Wilson 95%; conformity decided on the "
                   "exact Clopper-Pearson 95% bound",
                   "settings": "metrics are computed with the settings the lab assigned (tasks[].settings), never "
                   "the device's (tasks[].device_settings)",
                   "repeats": "the graded latency is the median repeat by p50; repeats are stable when their p50s "
                   "spread (max - min) by at most stability_max_spread of their median",
                   "validity": "minimum query count and duration, audits, and the device's compliance with the "
                   "assignment: the exact assigned settings and execution provider, every assigned result set, "
                   "and each timed run's samples inside its reported performance window"},
        "device": _device(first) if first else {},
        "devices": [_device(dv) for dv in devices.values()],
        "equipment": equipment,
        "tasks": tasks,
        "amends": amends,
        "audit": _audit(store, run, issued_ms),
        "statement": STATEMENT,
    }
    return report, sigs
