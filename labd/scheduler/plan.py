"""A submission made into a run: the suite's tasks as typed specs, one task per target device and suite task, each
refused up front (in error, with the reason) when its data may not go to that device."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from evalsuites import Suite
from labd.scheduler.placement import zone_refusal
from labd.state import Store
from pilotlab import domain as d
from pilotlab.tasks import ArtifactRef, Criterion, TaskSpec, requested


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


_SUITES: dict[tuple[str, str, str], Suite] = {}  # (id, version, digest) -> the suite parsed once
_MAX_SUITES = 64


def load_suite(store: Store, suite_id: str, version: str = "") -> Suite:
    """The registered suite (its highest version when none is given): parsed once per registered content (a suite
    is content-addressed and immutable; its digest names its content), not once per submission."""
    rec = store.get_suite(suite_id, version or None)
    key = (rec.id, rec.version, rec.digest)
    suite = _SUITES.get(key)
    if suite is None:
        suite = Suite.from_json(rec.suite_json)
        if len(_SUITES) >= _MAX_SUITES:
            _SUITES.clear()
        _SUITES[key] = suite
    return suite


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


_PLANS: dict[int, tuple[Suite, tuple[TaskSpec, ...]]] = {}  # id(suite) -> (the suite, its task specs)
_MAX_PLANS = 64


def suite_specs(suite: Suite) -> tuple[TaskSpec, ...]:
    """task_spec of each of the suite's tasks, in order: computed once per (immutable) Suite object, which
    load_suite returns the same for every submission of one registered suite. Specs are frozen and shared."""
    got = _PLANS.get(id(suite))
    if got is not None and got[0] is suite:
        return got[1]
    specs = tuple(task_spec(suite, t.name) for t in suite.tasks)
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[id(suite)] = (suite, specs)  # the suite kept alive with its entry: its id is not reused meanwhile
    return specs


def new_run(suite: Suite, devices: list[d.Device], who: d.Principal, o: SubmitOptions, now_ms: int) -> d.Run:
    """The run to store: every suite task on every device, queued, or in error when a data zone forbids it."""
    run_id = f"run-{uuid.uuid4().hex[:12]}"
    tasks = []
    specs = suite_specs(suite)
    for dev in devices:
        for t, spec in zip(suite.tasks, specs, strict=True):
            refusal = zone_refusal(spec, dev)
            tasks.append(d.Task(id=f"task-{uuid.uuid4().hex[:12]}", run_id=run_id, name=t.name, device_id=dev.id,
                                device_name=dev.name, status=d.Status.ERROR if refusal else d.Status.QUEUED,
                                spec=spec, queued_ms=now_ms, reason=refusal))
    return d.Run(id=run_id, suite_id=suite.id, suite_version=suite.version, suite_digest=suite.digest,
                 status=d.Status.QUEUED, priority=o.priority, submitted_ms=now_ms, submitted_by=who.token_id,
                 tasks=tasks, kind=o.kind, select=o.select, any_device=o.any_device,
                 queue_timeout_ms=int(o.queue_timeout_s * 1000))
