"""Submitting, cancelling and reading runs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import lru_cache

from evalsuites import Suite
from labd.lab import Lab
from labd.scheduler.select import select_devices
from labd.state.rows import now_ms
from pilotlab import domain as d
from pilotlab.tasks import ArtifactRef, Criterion, TaskSpec, requested


def task_spec(suite: Suite, task_name: str) -> TaskSpec:
    """What a device needs to run one task, plus the criteria the lab grades it with."""
    t = next(t for t in suite.tasks if t.name == task_name)

    def ref(name: str | None) -> ArtifactRef | None:
        if name is None:
            return None
        a = suite.artifacts[name]
        return ArtifactRef(name=a.name, kind=a.kind, sha256=a.sha256, size=a.size, classification=a.classification,
                           regions=tuple(a.regions))

    # With a grading table, the verdict rests on the basic level's criteria; the others decide the grade.
    basic = set(suite.grading.levels[0].criteria) if suite.grading and suite.grading.levels else None
    criteria = [{**c.canonical(), "required": basic is None or c.id in basic}
                for c in suite.criteria if c.task == t.name]
    conformance = dict(t.conformance or {})
    for key, op in (("max_abs_err", "<="), ("max_rel_err", "<="), ("top1_agreement", ">=")):
        if key in conformance and not any(c["metric"] == f"conformance.{key}" for c in criteria):
            criteria.append({"task": t.name, "metric": f"conformance.{key}", "op": op,
                             "threshold": float(conformance[key]), "rule": "point",
                             "description": f"numerical conformance to the suite's golden outputs ({key})"})
    model = ref(t.model)
    assert model is not None
    return TaskSpec(name=t.name, scenario=t.scenario, model=model, dataset=ref(t.dataset),
                    settings=requested(t.scenario, t.settings), execution_provider=t.execution_provider,
                    accuracy=dict(t.accuracy) if t.accuracy else None, golden=ref(t.golden),
                    conformance={k: float(v) for k, v in conformance.items()} or None,
                    criteria=tuple(Criterion.from_dict(c) for c in criteria))


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


def zone_refusal(spec: TaskSpec, dev: d.Device) -> str:
    """Why the task's data may not go to this device ('' when it may): each dataset's allowed regions."""
    for key, ref in spec.data_refs():
        regions = ref.regions or ("*",)
        if "*" not in regions and dev.region not in regions:
            where = f"region {dev.region!r}" if dev.region else "no declared region"
            return (f"data zone: {key} {ref.name} ({ref.classification}) may only be sent to "
                    f"{', '.join(regions)}; device {dev.name} has {where}")
    return ""


def pick_one(lab: Lab, devices: list[d.Device], exclude: str = "") -> d.Device | None:
    """For any-device runs: an active device, connected and idle first."""
    def rank(dev: d.Device) -> tuple[int, int, str]:
        sess = lab.sessions.get(dev.id)
        return (0 if sess is not None else 1, 0 if sess is not None and sess.free_slots > 0 else 1, dev.name)

    usable = [dv for dv in devices if dv.state == "active" and dv.id != exclude]
    return min(usable, key=rank) if usable else None


@dataclass
class SubmitOptions:
    suite_id: str
    version: str = ""
    device: str = ""
    select: str = ""
    priority: int = 0
    any_device: bool = False
    queue_timeout_s: float = 0.0
    kind: str = "test"


@lru_cache(maxsize=64)
def _suite(suite_json: str) -> Suite:
    return Suite.from_json(suite_json)


def submit_run(lab: Lab, who: d.Principal, o: SubmitOptions) -> d.Run:
    rec = lab.store.get_suite(o.suite_id, o.version or None)
    suite = _suite(rec.suite_json)
    devices = targets(lab, suite, o.device, o.select)
    if o.any_device:
        if not o.select:
            raise d.Invalid("--any needs --select: it runs the suite on one device the selector matches")
        one = pick_one(lab, devices)
        if one is None:
            raise d.Invalid(f"every device matching {o.select!r} is drained or quarantined")
        devices = [one]
    now = now_ms()
    run_id = f"run-{uuid.uuid4().hex[:12]}"
    tasks = []
    for dev in devices:
        for t in suite.tasks:
            spec = task_spec(suite, t.name)
            refusal = zone_refusal(spec, dev)
            tasks.append(d.Task(id=f"task-{uuid.uuid4().hex[:12]}", run_id=run_id, name=t.name, device_id=dev.id,
                                device_name=dev.name, status=d.Status.ERROR if refusal else d.Status.QUEUED,
                                spec=spec, queued_ms=now, reason=refusal))
    run = d.Run(id=run_id, suite_id=suite.id, suite_version=suite.version, suite_digest=suite.digest,
                status=d.Status.QUEUED, priority=o.priority, submitted_ms=now, submitted_by=who.token_id,
                tasks=tasks, kind=o.kind, select=o.select, any_device=o.any_device,
                queue_timeout_ms=int(o.queue_timeout_s * 1000))
    return lab.store.create_run(run)


def cancel_run(lab: Lab, run_id: str, reason: str) -> tuple[d.Run, list[d.Attempt]]:
    return lab.store.cancel_run(run_id, reason or "cancelled by a user", now_ms())
