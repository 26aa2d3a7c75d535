"""Builds a run's evidence bundle: report.json, raw samples, report.html and the signed attestation."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any

from labd.evidence.html import render_html
from labd.lab import Lab
from labd.results.grade import attempt_samples, grade, task_labels
from pilotlab import __version__, dsse
from pilotlab import domain as d
from pilotlab.samples import kind_filename, samples_csv
from pilotlab.scenarios import parse_kind

REPORT_SCHEMA = "pilotlab.report/v1"
ATTESTATION = "attestation.dsse.json"
STATEMENT = ("The results in this report relate only to the item tested, under the conditions recorded here.")


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def iso(ms: int) -> str | None:
    if not ms:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _final_attempt(task: d.Task) -> d.Attempt | None:
    done = [a for a in task.history if a.outcome == d.Outcome.OK.value]
    return done[-1] if done else (task.history[-1] if task.history else None)


def _device_json(dev: d.Device) -> dict[str, Any]:
    c = dev.capabilities
    return {"name": dev.name, "class": dev.device_class, "region": dev.region, "tags": dev.tags,
            "agent_version": c.agent_version, "onnxruntime_version": c.onnxruntime_version,
            "providers": c.providers, "os": c.os, "os_release": c.os_release, "arch": c.arch,
            "cpu_model": c.cpu_model, "cpu_cores": c.cpu_cores, "memory_bytes": c.memory_bytes,
            "hostname": c.hostname,
            "energy_sensors": [{"kind": s.kind, "name": s.name, "readable": s.readable} for s in c.energy_sensors]}


def _task_files(lab: Lab, task: d.Task, att: d.Attempt, files: dict[str, bytes]) -> dict[str, str]:
    """One CSV per kind of raw sample; predictions carry the dataset label of each sample."""
    out: dict[str, str] = {}
    labels = task_labels(lab.store, task.spec)
    for kind, arrays in attempt_samples(lab.store, att.id).items():
        path = f"samples/{task.name}/{kind_filename(kind)}"
        with_labels = None
        if labels is not None and parse_kind(kind)[0] in ("prediction", "perf-prediction"):
            with_labels = labels[arrays["sample_index"]]
        files[path] = samples_csv(arrays, with_labels)
        out[kind] = path
    return out


def _task_json(lab: Lab, task: d.Task, files: dict[str, bytes]) -> dict[str, Any]:
    spec = task.spec
    att = _final_attempt(task)
    samples = _task_files(lab, task, att, files) if att and att.outcome == d.Outcome.OK.value else {}
    criteria = grade(task.metrics, spec)[1] if task.metrics else []
    model = spec["model"]
    dataset = spec.get("dataset")
    return {
        "id": task.id, "name": task.name, "device": task.device_name, "status": task.status.value,
        "verdict": task.verdict.value if task.verdict else None, "reason": task.reason,
        "model": {"name": model["name"], "sha256": model["sha256"], "size": model["size"]},
        "dataset": {"name": dataset["name"], "sha256": dataset["sha256"],
                    "classification": dataset.get("classification", "public")} if dataset else None,
        "scenario": spec["scenario"],
        "execution_provider": (att.execution_provider if att and att.execution_provider
                               else spec.get("execution_provider", "")),
        "providers_used": att.providers_used if att else [],
        "settings": att.effective_settings if att and att.effective_settings else spec.get("settings", {}),
        "requested_settings": spec.get("settings", {}),
        "metrics": task.metrics, "criteria": criteria, "attempts": task.attempts,
        "attempt_history": [{"number": a.number, "device": a.device_name, "status": a.status.value,
                             "outcome": a.outcome, "reason": a.reason, "started": iso(a.started_ms),
                             "finished": iso(a.finished_ms)} for a in task.history],
        "environment": att.environment if att else {}, "phases": att.phases if att else {},
        "samples": samples,
    }


def build_report(lab: Lab, run: d.Run) -> dict[str, bytes]:
    """All bundle files except the attestation, keyed by relative path."""
    if not run.status.terminal:
        raise d.Conflict(f"run {run.id} is {run.status.value}; pull its report once it has ended "
                         f"(`labctl run watch {run.id}`)")
    files: dict[str, bytes] = {}
    suite = lab.store.get_suite(run.suite_id, run.suite_version)
    devices = {t.device_id: lab.store.get_device(t.device_id) for t in run.tasks}
    first = devices[run.tasks[0].device_id] if run.tasks else None
    report = {
        "schema": REPORT_SCHEMA,
        "report_id": f"rep-{uuid.uuid4().hex[:16]}",
        "lab": {"name": lab.config.lab_name, "software": f"pilotlab {__version__}",
                "key_id": dsse.key_id(lab.signing_key.public_key())},
        "issued": iso(int(dt.datetime.now(dt.UTC).timestamp() * 1000)),
        "run": {"id": run.id, "status": run.status.value, "verdict": run.verdict.value if run.verdict else None,
                "reason": run.reason, "priority": run.priority, "submitted": iso(run.submitted_ms),
                "finished": iso(run.finished_ms),
                "suite": {"id": run.suite_id, "version": run.suite_version, "digest": run.suite_digest,
                          "title": suite.title}},
        "device": _device_json(first) if first else {},
        "devices": [_device_json(dv) for dv in devices.values()],
        "tasks": [_task_json(lab, t, files) for t in run.tasks],
        "statement": STATEMENT,
    }
    files["report.json"] = canonical_json(report)
    files["report.html"] = render_html(report, files).encode()
    files["lab.pub.pem"] = dsse.public_pem(lab.signing_key.public_key()).encode()
    return files


def sign_bundle(lab: Lab, files: dict[str, bytes]) -> dict[str, bytes]:
    subjects = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    report = json.loads(files["report.json"])
    stmt = dsse.statement(subjects, {"report_id": report["report_id"], "run_id": report["run"]["id"],
                                     "verdict": report["run"]["verdict"], "issued": report["issued"]})
    out = dict(files)
    out[ATTESTATION] = json.dumps(dsse.sign_envelope(lab.signing_key, stmt), indent=2).encode()
    return out


def report_bundle(lab: Lab, run_id: str) -> dict[str, bytes]:
    return sign_bundle(lab, build_report(lab, lab.store.get_run(run_id)))


