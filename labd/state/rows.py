"""Row ⇄ domain mapping and run-status bookkeeping shared by the SQL store's methods."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from labd.state.base import AuditEntry, TokenRecord
from labd.state.tables import AttemptRow, AuditRow, DeviceRow, RunRow, TaskRow, TokenRow
from pilotlab import domain as d
from pilotlab.tasks import TaskSpec


class Prefixed:
    """The columns of one table in a joined row, each labelled prefix + its name, read by their names (what
    attempt() and task() read of a row)."""

    __slots__ = ("_m", "_p")

    def __init__(self, row: Row[Any], prefix: str) -> None:
        self._m = row._mapping
        self._p = prefix

    def __getattr__(self, name: str) -> Any:
        return self._m[self._p + name]


def token(r: TokenRow, issuer: TokenRow | None, device_name: str = "") -> TokenRecord:
    """The record of a token row; a device credential counts as revoked from when its issuer was."""
    revoked = [t for t in (r.revoked_ms, issuer.revoked_ms if issuer else 0) if t]
    return TokenRecord(id=r.id, role=d.Role(r.role), device_id=r.device_id, revoked=bool(revoked) or r.revoked,
                       created_ms=r.created_ms, expires_ms=r.expires_ms, revoked_ms=min(revoked, default=0),
                       uses=r.uses, max_uses=r.max_uses, issued_by=r.issued_by, device_name=device_name)


def add_audit(s: Session, entry: AuditEntry | None) -> None:
    """Append an audit entry inside the caller's transaction (nothing when None)."""
    if entry is not None:
        s.add(AuditRow(time_ms=entry.time_ms, actor=entry.actor, role=entry.role, action=entry.action,
                       target=entry.target, detail=entry.detail))


def audit(r: AuditRow) -> AuditEntry:
    return AuditEntry(time_ms=r.time_ms, actor=r.actor, role=r.role, action=r.action, target=r.target,
                      detail=r.detail, seq=r.seq or 0)


def device(r: DeviceRow | Row[Any]) -> d.Device:
    return d.Device(id=r.id, name=r.name, device_class=r.device_class, region=r.region,
                    tags=json.loads(r.tags_json or "{}"),
                    capabilities=d.Capabilities.from_dict(json.loads(r.capabilities_json or "{}")),
                    status=r.status, last_seen_ms=r.last_seen_ms, public_key=bytes(r.public_key or b""),
                    state=r.state, infra_errors=r.infra_errors)


def attempt(r: AttemptRow | Row[Any], device_name: str) -> d.Attempt:
    return d.Attempt(
        id=r.id, task_id=r.task_id, number=r.number, device_id=r.device_id, device_name=device_name,
        status=d.Status(r.status), outcome=r.outcome, reason=r.reason, started_ms=r.started_ms,
        finished_ms=r.finished_ms, lease_expires_ms=r.lease_expires_ms, batches_expected=r.batches_expected,
        effective_settings=json.loads(r.effective_settings_json or "{}"),
        environment=json.loads(r.environment_json or "{}"), execution_provider=r.execution_provider,
        providers_used=json.loads(r.providers_used_json or "[]"), phases=json.loads(r.phases_json or "{}"),
        observations=d.Observations.from_dict(json.loads(r.observations_json or "{}")),
    )


@lru_cache(maxsize=256)
def _spec(spec_json: str) -> TaskSpec:
    """A stored task spec, decoded once per distinct text (every task of a suite's runs has one of a few): TaskSpec
    and what it holds are immutable (frozen dataclasses, mappings), so tasks may share one."""
    return TaskSpec.from_json(json.loads(spec_json))


def task(r: TaskRow | Row[Any], device_name: str, history: list[d.Attempt]) -> d.Task:
    return d.Task(
        id=r.id, run_id=r.run_id, name=r.name, device_id=r.device_id, device_name=device_name,
        status=d.Status(r.status), spec=_spec(r.spec_json),
        verdict=d.Verdict(r.verdict) if r.verdict else None, attempts=r.attempts,
        metrics=json.loads(r.metrics_json or "{}"), reason=r.reason, phase=r.phase, progress=r.progress,
        queued_ms=r.queued_ms, history=history,
    )


def load_run(s: Session, r: RunRow, history: bool = True) -> d.Run:
    trows = list(s.execute(select(TaskRow).where(TaskRow.run_id == r.id).order_by(TaskRow.ordinal)).scalars())
    dev_ids = {t.device_id for t in trows}
    names = {}
    if dev_ids:
        q = select(DeviceRow.id, DeviceRow.name).where(DeviceRow.id.in_(dev_ids))  # type: ignore[attr-defined]
        names = {i: n for i, n in s.execute(q).all()}
    hist: dict[str, list[d.Attempt]] = {}
    if history and trows:
        q2 = (select(AttemptRow).where(AttemptRow.task_id.in_([t.id for t in trows]))  # type: ignore[attr-defined]
              .order_by(AttemptRow.number))
        for a in s.execute(q2).scalars():
            hist.setdefault(a.task_id, []).append(attempt(a, names.get(a.device_id, "")))
    tasks = [task(t, names.get(t.device_id, ""), hist.get(t.id, [])) for t in trows]
    return d.Run(id=r.id, suite_id=r.suite_id, suite_version=r.suite_version, suite_digest=r.suite_digest,
                 status=d.Status(r.status), priority=r.priority, verdict=d.Verdict(r.verdict) if r.verdict else None,
                 submitted_ms=r.submitted_ms, finished_ms=r.finished_ms, reason=r.reason,
                 submitted_by=r.submitted_by, tasks=tasks, kind=r.kind, select=r.select_expr,
                 any_device=r.any_device, queue_timeout_ms=r.queue_timeout_ms)


def refresh_run_status(s: Session, run_id: str, at_ms: int) -> None:
    """A run is done when all its tasks are; error if any errored, else completed with pass only if all pass.
    (The per-task paths do the same in Core: labd.state.sql.runs._refresh.)"""
    run = s.get(RunRow, run_id)
    if run is None or d.Status(run.status).terminal:
        return
    q = select(TaskRow).where(TaskRow.run_id == run_id).order_by(TaskRow.ordinal)  # the first error by ordinal
    statuses = [(d.Status(t.status), t.verdict, t.reason) for t in s.execute(q).scalars()]
    if all(st.terminal for st, _, _ in statuses):
        errors = [reason for st, _, reason in statuses if st == d.Status.ERROR]
        if errors:
            run.status, run.verdict, run.reason = d.Status.ERROR.value, None, errors[0]
        else:
            run.status = d.Status.COMPLETED.value
            run.verdict = "pass" if all(v == "pass" for _, v, _ in statuses) else "fail"
        run.finished_ms = at_ms
    elif any(st != d.Status.QUEUED for st, _, _ in statuses):
        run.status = d.Status.RUNNING.value
    s.add(run)
