"""Submitting, cancelling and reading runs."""

from __future__ import annotations

import uuid
from typing import Any

from evalsuites import Suite
from labd.lab import Lab
from labd.scheduler.select import select_devices
from labd.state.rows import now_ms
from pilotlab import domain as d


def task_spec(suite: Suite, task_name: str) -> dict[str, Any]:
    """What a device needs to run one task, plus the criteria the lab grades it with."""
    t = next(t for t in suite.tasks if t.name == task_name)

    def ref(name: str | None) -> dict[str, Any] | None:
        if name is None:
            return None
        a = suite.artifacts[name]
        return {"name": a.name, "kind": a.kind, "sha256": a.sha256, "size": a.size,
                "classification": a.classification, "regions": list(a.regions)}

    criteria = [c.canonical() for c in suite.criteria if c.task == t.name]
    conformance = dict(getattr(t, "conformance", None) or {})
    for key, op in (("max_abs_err", "<="), ("max_rel_err", "<="), ("top1_agreement", ">=")):
        if key in conformance and not any(c["metric"] == f"conformance.{key}" for c in criteria):
            criteria.append({"task": t.name, "metric": f"conformance.{key}", "op": op,
                             "threshold": float(conformance[key]), "rule": "point",
                             "description": f"numerical conformance to the suite's golden outputs ({key})"})
    return {
        "name": t.name, "model": ref(t.model), "dataset": ref(t.dataset), "scenario": t.scenario,
        "settings": dict(t.settings), "execution_provider": t.execution_provider,
        "accuracy": dict(t.accuracy) if t.accuracy else None,
        "golden": ref(getattr(t, "golden", None)), "conformance": conformance or None,
        "criteria": criteria,
    }


def targets(lab: Lab, suite: Suite, device: str, select: str) -> list[d.Device]:
    if bool(device) == bool(select):
        raise d.Invalid("name the target with exactly one of --device NAME or --select EXPR")
    if device:
        devices = [lab.store.get_device_by_name(device)]
    else:
        devices = select_devices(lab.store.list_devices(), select)
        if not devices:
            raise d.Invalid(f"no enrolled device matches {select!r}; see `labctl devices list`")
    wrong = [dev.name for dev in devices if dev.device_class not in suite.device_classes]
    if wrong:
        raise d.Invalid(f"suite {suite.id} applies to {', '.join(suite.device_classes)}; "
                        f"{', '.join(wrong)} is of another class")
    return devices


def submit_run(lab: Lab, who: d.Principal, suite_id: str, version: str, device: str, select: str,
               priority: int) -> d.Run:
    rec = lab.store.get_suite(suite_id, version or None)
    suite = Suite.from_json(rec.suite_json)
    devices = targets(lab, suite, device, select)
    now = now_ms()
    run_id = f"run-{uuid.uuid4().hex[:12]}"
    tasks = [
        d.Task(id=f"task-{uuid.uuid4().hex[:12]}", run_id=run_id, name=t.name, device_id=dev.id,
               device_name=dev.name, status=d.Status.QUEUED, spec=task_spec(suite, t.name), queued_ms=now)
        for dev in devices for t in suite.tasks
    ]
    run = d.Run(id=run_id, suite_id=suite.id, suite_version=suite.version, suite_digest=suite.digest,
                status=d.Status.QUEUED, priority=priority, submitted_ms=now, submitted_by=who.token_id,
                tasks=tasks)
    return lab.store.create_run(run)


def cancel_run(lab: Lab, run_id: str, reason: str) -> tuple[d.Run, list[d.Attempt]]:
    return lab.store.cancel_run(run_id, reason or "cancelled by a user", now_ms())
