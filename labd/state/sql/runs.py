"""The SQL store's runs, tasks and attempts: creating and cancelling runs, claiming and leasing tasks, finishing
attempts, the run status that follows."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import replace
from typing import Any

from sqlalchemy import Table, bindparam, case, func, insert, or_, select, true, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from labd.state import rows
from labd.state.base import AuditEntry, RunEnd
from labd.state.sql.engine import SqlEngine, new_id
from labd.state.tables import AttemptRow, AuditRow, DeviceRow, RunRow, TaskRow
from pilotlab import domain as d
from pilotlab.tasks import TaskSpec

# Prepared Core statements for the per-task paths (submit, claim, finish): compiled once and cached by SQLAlchemy,
# no ORM objects built, and a finish reads back only what its caller needs of the run.
_RUNS: Table = RunRow.__table__  # type: ignore[attr-defined]
_TASKS: Table = TaskRow.__table__  # type: ignore[attr-defined]
_ATTEMPTS: Table = AttemptRow.__table__  # type: ignore[attr-defined]
_DEVICES: Table = DeviceRow.__table__  # type: ignore[attr-defined]
_AUDIT: Table = AuditRow.__table__  # type: ignore[attr-defined]
_R, _T, _A = _RUNS.c, _TASKS.c, _ATTEMPTS.c
_TERMINAL = [s.value for s in d.Status if s.terminal]
_QUEUED, _RUNNING = d.Status.QUEUED.value, d.Status.RUNNING.value

_ATTEMPT_OWNERS = select(AttemptRow.id, AttemptRow.device_id, AttemptRow.status).where(
    AttemptRow.id.in_(bindparam("ids", expanding=True)))  # type: ignore[attr-defined]
_INSERT_RUN = insert(_RUNS)
_INSERT_TASKS = insert(_TASKS)
_INSERT_ATTEMPT = insert(_ATTEMPTS)
_INSERT_AUDIT = insert(_AUDIT)
# A device's next queued task with the device's name, in one statement: none while the device drains, only a health
# check while it is quarantined (the device's row is read, not locked: FOR UPDATE OF the task only).
_NEXT_TASK_OF_DEVICE = (
    select(_TASKS, _DEVICES.c.name.label("device_name"))
    .select_from(_TASKS.join(_DEVICES, _DEVICES.c.id == _T.device_id))
    .where(_T.device_id == bindparam("device"), _T.status == _QUEUED, _DEVICES.c.state != "draining",
           or_(_DEVICES.c.state != "quarantined", _T.health.is_(True)))
    .order_by(_T.priority.desc(), _T.queue_ns).limit(1).with_for_update(of=_TASKS, skip_locked=True))
_TAKE_TASK = (update(_TASKS).where(_T.id == bindparam("t_id"))
              .values(attempts=bindparam("t_attempts"), status=_RUNNING, phase="assigned", progress=0.0))
_RUN_STARTS = update(_RUNS).where(_R.id == bindparam("r_id"), _R.status == _QUEUED).values(status=_RUNNING)
_CLOSING = (select(_A.task_id, _T.status, _T.run_id)
            .select_from(_ATTEMPTS.outerjoin(_TASKS, _T.id == _A.task_id)).where(_A.id == bindparam("id")))
_CLOSE_ATTEMPT = (update(_ATTEMPTS).where(_A.id == bindparam("a_id"))
                  .values(status=bindparam("a_status"), outcome=bindparam("a_outcome"),
                          reason=bindparam("a_reason"), finished_ms=bindparam("a_finished_ms"),
                          batches_expected=bindparam("a_batches"),
                          effective_settings_json=bindparam("a_settings"), environment_json=bindparam("a_env"),
                          execution_provider=bindparam("a_provider"), providers_used_json=bindparam("a_used"),
                          phases_json=bindparam("a_phases"), observations_json=bindparam("a_obs")))
_REQUEUE_TASK = (update(_TASKS).where(_T.id == bindparam("t_id"))
                 .values(status=_QUEUED, phase="", progress=0.0, reason=bindparam("t_reason")))
_END_TASK = (update(_TASKS).where(_T.id == bindparam("t_id"))
             .values(status=bindparam("t_status"), reason=bindparam("t_reason"), verdict=bindparam("t_verdict"),
                     metrics_json=bindparam("t_metrics"), phase="done", progress=1.0))
_RUN_STATE = select(_R.status, _R.kind, _R.verdict, _R.reason, _R.finished_ms).where(_R.id == bindparam("run"))
_DEVICE_NAMES = select(_DEVICES.c.id, _DEVICES.c.name).where(_DEVICES.c.id.in_(bindparam("ids", expanding=True)))
_ATTEMPT = select(_ATTEMPTS).where(_A.id == bindparam("id"))
_TASK_AND_DEVICE = (select(_TASKS, _DEVICES.c.name.label("device_name"))
                    .select_from(_TASKS.outerjoin(_DEVICES, _DEVICES.c.id == _T.device_id))
                    .where(_T.id == bindparam("id")))


def _count(cond: Any) -> Any:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


# A run's tasks counted by what decides its status, in the database: no task row comes back to Python.
_TASK_COUNTS = (select(func.count(), _count(or_(*(_T.status == s for s in _TERMINAL))), _count(_T.status == _QUEUED),
                       _count(_T.status == d.Status.ERROR.value), _count(_T.verdict == d.Verdict.PASS.value))
                .where(_T.run_id == bindparam("run")))
# A closing attempt's run with its tasks counted as _TASK_COUNTS counts them, in one statement: the counts (always
# one row) joined to the run's row.
_COUNTED = _TASK_COUNTS.subquery()
_RUN_STATE_COUNTED = (select(_R.status, _R.kind, _R.verdict, _R.reason, _R.finished_ms, *_COUNTED.c)
                      .select_from(_RUNS.join(_COUNTED, true())).where(_R.id == bindparam("run")))
_FIRST_ERROR = (select(_T.reason).where(_T.run_id == bindparam("run"), _T.status == d.Status.ERROR.value)
                .order_by(_T.ordinal).limit(1))
_RUN_ERROR = (update(_RUNS).where(_R.id == bindparam("r_id"))
              .values(status=d.Status.ERROR.value, verdict=None, reason=bindparam("r_reason"),
                      finished_ms=bindparam("r_finished_ms")))
_RUN_COMPLETED = (update(_RUNS).where(_R.id == bindparam("r_id"))
                  .values(status=d.Status.COMPLETED.value, verdict=bindparam("r_verdict"),
                          finished_ms=bindparam("r_finished_ms")))
_RUN_RUNNING = update(_RUNS).where(_R.id == bindparam("r_id")).values(status=_RUNNING)
_RENEW = (update(AttemptRow)
          .where(AttemptRow.device_id == bindparam("device"),
                 AttemptRow.id.in_(bindparam("ids", expanding=True)),  # type: ignore[attr-defined]
                 AttemptRow.status == d.Status.RUNNING.value)
          .values(lease_expires_ms=bindparam("until")))


class RunsSql(SqlEngine):
    # --- runs and tasks -----------------------------------------------------------------------------------
    def create_run(self, run: d.Run, audit: AuditEntry | None = None) -> d.Run:
        """The run and its tasks in one multi-row insert each (prepared Core statements, no ORM object per task);
        the run returned is built from what was written, not read back."""
        base_ns = self.clock.now_ns()
        deadline = run.submitted_ms + run.queue_timeout_ms if run.queue_timeout_ms else 0
        tasks: list[dict[str, Any]] = []
        for i, t in enumerate(run.tasks):
            status = t.status if t.status == d.Status.ERROR else d.Status.QUEUED
            if t.spec is None:
                raise d.Invalid(f"task {t.name} has no spec to store")
            tasks.append({"id": t.id, "run_id": run.id, "ordinal": i, "name": t.name, "device_id": t.device_id,
                          "status": status.value, "verdict": None, "attempts": 0,
                          "spec_json": _spec_json(t.spec), "metrics_json": "{}",
                          "reason": t.reason, "phase": "", "progress": 0.0, "priority": run.priority,
                          "queued_ms": run.submitted_ms, "queue_ns": base_ns + i, "queue_deadline_ms": deadline,
                          "health": run.kind == "health"})
        with self._core_tx() as c:
            c.execute(_INSERT_RUN, {"id": run.id, "suite_id": run.suite_id, "suite_version": run.suite_version,
                                    "suite_digest": run.suite_digest, "status": run.status.value, "verdict": None,
                                    "priority": run.priority, "submitted_ms": run.submitted_ms, "finished_ms": 0,
                                    "reason": "", "submitted_by": run.submitted_by, "kind": run.kind,
                                    "select_expr": run.select, "any_device": run.any_device,
                                    "queue_timeout_ms": run.queue_timeout_ms})
            if tasks:
                c.execute(_INSERT_TASKS, tasks)
            _add_audit(c, audit)
            end = _created(c, run, tasks)
            # The devices' names: as the run's tasks carry them (a submission's devices were just read from this
            # store, by name or selector), read only for tasks that come without one.
            ids = sorted({t.device_id for t in run.tasks if not t.device_name})
            names = {i: n for i, n in c.execute(_DEVICE_NAMES, {"ids": ids}).all()} if ids else {}
            names.update((t.device_id, t.device_name) for t in run.tasks if t.device_name)
        return d.Run(id=run.id, suite_id=run.suite_id, suite_version=run.suite_version,
                     suite_digest=run.suite_digest, status=end.status, priority=run.priority, verdict=end.verdict,
                     submitted_ms=run.submitted_ms, finished_ms=end.finished_ms, reason=end.reason,
                     submitted_by=run.submitted_by, kind=run.kind, select=run.select, any_device=run.any_device,
                     queue_timeout_ms=run.queue_timeout_ms,
                     tasks=[d.Task(id=t.id, run_id=run.id, name=t.name, device_id=t.device_id,
                                   device_name=names.get(t.device_id, ""), status=d.Status(row["status"]),
                                   spec=t.spec, verdict=None, attempts=0, metrics={}, reason=t.reason, phase="",
                                   progress=0.0, queued_ms=run.submitted_ms, history=[])
                            for t, row in zip(run.tasks, tasks, strict=True)])

    def get_run(self, run_id: str) -> d.Run:
        with self._read() as s:
            row = s.get(RunRow, run_id)
            if row is None:
                raise d.NotFound(f"no run {run_id} in this lab; see `labctl run list`")
            return rows.load_run(s, row)

    def list_runs(self, limit: int = 100) -> list[d.Run]:
        with self._read() as s:
            q = select(RunRow).order_by(RunRow.submitted_ms.desc(), RunRow.id).limit(limit)  # type: ignore[attr-defined]
            return [rows.load_run(s, r, history=False) for r in s.execute(q).scalars()]

    def cancel_run(self, run_id: str, reason: str, now_ms: int,
                   audit: AuditEntry | None = None) -> tuple[d.Run, list[d.Attempt]]:
        running: list[d.Attempt] = []
        with self._tx() as s:
            run = s.get(RunRow, run_id)
            if run is None:
                raise d.NotFound(f"no run {run_id} in this lab; see `labctl run list`")
            if d.Status(run.status).terminal:
                raise d.Conflict(f"run {run_id} has already ended ({run.status}); nothing to cancel")
            for t in s.execute(select(TaskRow).where(TaskRow.run_id == run_id)).scalars():
                if d.Status(t.status).terminal:
                    continue
                for a in s.execute(select(AttemptRow).where(AttemptRow.task_id == t.id,
                                                         AttemptRow.status == d.Status.RUNNING.value)).scalars():
                    a.status, a.outcome, a.reason, a.finished_ms = "cancelled", "cancelled", reason, now_ms
                    s.add(a)
                    running.append(rows.attempt(a, ""))
                t.status, t.reason = d.Status.CANCELLED.value, reason
                s.add(t)
            run.status, run.reason, run.finished_ms = d.Status.CANCELLED.value, reason, now_ms
            s.add(run)
            rows.add_audit(s, audit)
        return self.get_run(run_id), running

    def claim_next_task(self, device_id: str, now_ms: int, lease_ms: int) -> tuple[d.Task, d.Attempt] | None:
        with self._core_tx() as c:  # every assignment: prepared Core statements, the task row read once
            # The device's state and its next task in one statement: none for a draining (or unknown) device, only
            # a health check for a quarantined one. SKIP LOCKED: labd replicas on one PostgreSQL never claim the
            # same task (SQLite ignores it).
            t = c.execute(_NEXT_TASK_OF_DEVICE, {"device": device_id}).first()
            if t is None:
                return None
            number = t.attempts + 1
            c.execute(_TAKE_TASK, {"t_id": t.id, "t_attempts": number})
            att_id = new_id("att")
            c.execute(_INSERT_ATTEMPT, {"id": att_id, "task_id": t.id, "number": number, "device_id": device_id,
                                        "status": _RUNNING, "outcome": "", "reason": "", "started_ms": now_ms,
                                        "finished_ms": 0, "lease_expires_ms": now_ms + lease_ms,
                                        "batches_expected": -1, "effective_settings_json": "{}",
                                        "environment_json": "{}", "execution_provider": "",
                                        "providers_used_json": "[]", "phases_json": "{}", "observations_json": "{}"})
            c.execute(_RUN_STARTS, {"r_id": t.run_id})
        task = replace(rows.task(t, t.device_name, []), status=d.Status.RUNNING, attempts=number, phase="assigned",
                       progress=0.0)
        att = d.Attempt(id=att_id, task_id=t.id, number=number, device_id=device_id, device_name=t.device_name,
                        status=d.Status.RUNNING, outcome="", reason="", started_ms=now_ms, finished_ms=0,
                        lease_expires_ms=now_ms + lease_ms, batches_expected=-1, effective_settings={},
                        environment={}, execution_provider="", providers_used=[], phases={},
                        observations=d.Observations.from_dict({}))
        return task, att

    def queued_devices(self) -> set[str]:
        with self._read() as s:
            q = select(TaskRow.device_id).where(TaskRow.status == d.Status.QUEUED.value).distinct()
            return {str(x) for x in s.execute(q).scalars()}

    def expire_queued(self, now_ms: int) -> list[str]:
        changed = []
        with self._tx() as s:
            q = select(TaskRow).where(TaskRow.status == d.Status.QUEUED.value, TaskRow.queue_deadline_ms > 0,
                                      TaskRow.queue_deadline_ms < now_ms)
            for t in s.execute(q).scalars():
                t.status = d.Status.ERROR.value
                t.reason = "queue timeout: no device took the task before the run's --queue-timeout"
                s.add(t)
                changed.append(t.run_id)
            s.flush()
            for run_id in set(changed):
                rows.refresh_run_status(s, run_id, now_ms)
        return sorted(set(changed))

    def move_task(self, task_id: str, device_id: str) -> None:
        with self._tx() as s:
            t = s.get(TaskRow, task_id)
            if t is None:
                raise d.NotFound(f"no task {task_id}")
            t.device_id = device_id
            s.add(t)

    def get_attempt(self, attempt_id: str) -> d.Attempt:
        with self._core_read() as c:  # every finish and progress report asks: one prepared statement
            row = c.execute(_ATTEMPT, {"id": attempt_id}).first()
        if row is None:
            raise d.NotFound(f"no attempt {attempt_id}")
        return rows.attempt(row, "")

    def attempt_owners(self, attempt_ids: Collection[str]) -> dict[str, tuple[str, d.Status]]:
        if not attempt_ids:
            return {}
        with self._core_read() as c:  # a group of result batches asks once: one prepared statement
            return {str(a): (str(dev), d.Status(st))
                    for a, dev, st in c.execute(_ATTEMPT_OWNERS, {"ids": sorted(set(attempt_ids))})}

    def running_attempts(self, device_id: str | None = None) -> list[d.Attempt]:
        with self._read() as s:
            q = select(AttemptRow).where(AttemptRow.status == d.Status.RUNNING.value)
            if device_id is not None:
                q = q.where(AttemptRow.device_id == device_id)
            return [rows.attempt(r, "") for r in s.execute(q).scalars()]

    def renew_leases(self, device_id: str, attempt_ids: list[str], until_ms: int) -> None:
        if not attempt_ids:
            return
        with self._core_tx() as c:  # every busy device's heartbeat: one prepared UPDATE, no rows loaded
            c.execute(_RENEW, {"device": device_id, "ids": list(attempt_ids), "until": until_ms})

    def set_progress(self, attempt_id: str, phase: str, fraction: float) -> str:
        with self._tx() as s:
            a = s.get(AttemptRow, attempt_id)
            if a is None:
                raise d.NotFound(f"no attempt {attempt_id}")
            t = s.get(TaskRow, a.task_id)
            assert t is not None
            if t.status == d.Status.RUNNING.value:
                t.phase, t.progress = phase, fraction
                s.add(t)
            return t.run_id

    def get_task(self, task_id: str) -> d.Task:
        with self._core_read() as c:  # every finish asks: the task and its device's name in one statement
            t = c.execute(_TASK_AND_DEVICE, {"id": task_id}).first()
        if t is None:
            raise d.NotFound(f"no task {task_id}")
        return rows.task(t, t.device_name or "", [])


    def close_attempt(self, finish: d.AttemptFinish, *, task_status: d.Status, verdict: d.Verdict | None,
                      metrics: dict[str, Any], reason: str, now_ms: int, requeue: bool = False) -> RunEnd:
        """finish_attempt without reading the run back: a few prepared Core statements, and of the run only what
        its callers need (id, kind, status, verdict, reason, finish time)."""
        with self._core_tx() as c:
            return _close(c, finish, task_status=task_status, verdict=verdict, metrics=metrics, reason=reason,
                          now_ms=now_ms, requeue=requeue)

    def finish_attempt(self, finish: d.AttemptFinish, *, task_status: d.Status, verdict: d.Verdict | None,
                       metrics: dict[str, Any], reason: str, now_ms: int, requeue: bool = False) -> d.Run:
        with self._core_tx() as c:
            end = _close(c, finish, task_status=task_status, verdict=verdict, metrics=metrics, reason=reason,
                         now_ms=now_ms, requeue=requeue)
            with Session(bind=c) as s:  # read in the same transaction, not once more after it
                run_row = s.get(RunRow, end.id)
                assert run_row is not None
                return rows.load_run(s, run_row)

    def count_tasks(self) -> dict[str, int]:
        with self._read() as s:
            q = select(TaskRow.status, func.count()).group_by(TaskRow.status)
            return {str(k): int(v) for k, v in s.execute(q).all()}  # type: ignore[call-overload]



_SPEC_JSON: dict[int, tuple[TaskSpec, str]] = {}  # id(spec) -> (the spec, its stored JSON)
_MAX_SPECS = 1024


def _spec_json(spec: TaskSpec) -> str:
    """The spec as stored (sorted JSON), encoded once per spec object: a submission's specs are shared by every run
    of its suite (labd.scheduler.plan.suite_specs), and frozen."""
    got = _SPEC_JSON.get(id(spec))
    if got is not None and got[0] is spec:
        return got[1]
    text = json.dumps(spec.to_json(), sort_keys=True)
    if len(_SPEC_JSON) >= _MAX_SPECS:
        _SPEC_JSON.clear()
    _SPEC_JSON[id(spec)] = (spec, text)  # the spec kept alive with its entry: its id is not reused meanwhile
    return text


def _created(c: Connection, run: d.Run, tasks: list[dict[str, Any]]) -> RunEnd:
    """_refresh of a run just inserted, decided from the task rows written rather than read back: its tasks are all
    queued or in error (refused), none has a verdict. The same rule and the same UPDATE when the status changes."""
    status, verdict, reason, finished_ms = run.status, None, "", 0
    if not status.terminal:
        n = len(tasks)
        errors = [t for t in tasks if t["status"] == d.Status.ERROR.value]
        queued = n - len(errors)
        if len(errors) == n:
            if errors:
                reason = errors[0]["reason"]  # the first error by ordinal (tasks are in ordinal order)
                status, verdict, finished_ms = d.Status.ERROR, None, run.submitted_ms
                c.execute(_RUN_ERROR, {"r_id": run.id, "r_reason": reason, "r_finished_ms": run.submitted_ms})
            else:
                status, finished_ms = d.Status.COMPLETED, run.submitted_ms
                verdict = d.Verdict.PASS.value  # no task: all of them (none) pass
                c.execute(_RUN_COMPLETED, {"r_id": run.id, "r_verdict": verdict, "r_finished_ms": run.submitted_ms})
        elif queued != n and status != d.Status.RUNNING:
            status = d.Status.RUNNING
            c.execute(_RUN_RUNNING, {"r_id": run.id})
    return RunEnd(id=run.id, kind=str(run.kind), status=status, verdict=d.Verdict(verdict) if verdict else None,
                  reason=str(reason), finished_ms=int(finished_ms))


def _add_audit(c: Connection, entry: AuditEntry | None) -> None:
    """Append an audit entry inside the caller's transaction (nothing when None)."""
    if entry is not None:
        c.execute(_INSERT_AUDIT, {"time_ms": entry.time_ms, "actor": entry.actor, "role": entry.role,
                                  "action": entry.action, "target": entry.target, "detail": entry.detail})


def _refresh(c: Connection, run_id: str, at_ms: int, counted: bool = False) -> RunEnd | None:
    """rows.refresh_run_status in Core: a run is done when all its tasks are; error if any errored (the reason of
    the first, by ordinal), else completed with pass only if all pass. The tasks are counted in the database (counted:
    in the statement that reads the run, one statement where there would be two when the run has not ended, as it
    has not when one of its attempts closes). Returns the run's state after it (None: no such run)."""
    found = c.execute(_RUN_STATE_COUNTED if counted else _RUN_STATE, {"run": run_id}).first()
    if found is None:
        return None
    status, kind, verdict, reason, finished_ms = found[:5]
    status = d.Status(status)
    if not status.terminal:
        n, terminal, queued, errors, passed = found[5:] if counted else c.execute(_TASK_COUNTS, {"run": run_id}).one()
        if terminal == n:
            if errors:
                reason = c.execute(_FIRST_ERROR, {"run": run_id}).scalar_one()
                status, verdict, finished_ms = d.Status.ERROR, None, at_ms
                c.execute(_RUN_ERROR, {"r_id": run_id, "r_reason": reason, "r_finished_ms": at_ms})
            else:
                status, finished_ms = d.Status.COMPLETED, at_ms
                verdict = d.Verdict.PASS.value if passed == n else d.Verdict.FAIL.value
                c.execute(_RUN_COMPLETED, {"r_id": run_id, "r_verdict": verdict, "r_finished_ms": at_ms})
        elif queued != n and status != d.Status.RUNNING:
            status = d.Status.RUNNING
            c.execute(_RUN_RUNNING, {"r_id": run_id})
    return RunEnd(id=run_id, kind=str(kind), status=status, verdict=d.Verdict(verdict) if verdict else None,
                  reason=str(reason), finished_ms=int(finished_ms))


def _close(c: Connection, finish: d.AttemptFinish, *, task_status: d.Status, verdict: d.Verdict | None,
           metrics: dict[str, Any], reason: str, now_ms: int, requeue: bool) -> RunEnd:
    """Close the attempt with its outcome, set its task's result (or requeue it) and the run's status."""
    found = c.execute(_CLOSING, {"id": finish.attempt_id}).first()
    if found is None:
        raise d.NotFound(f"no attempt {finish.attempt_id}")
    task_id, task_was, run_id = found
    assert task_was is not None, "an attempt's task is never deleted"
    status = d.Status.ERROR if finish.outcome in (d.Outcome.ERROR, d.Outcome.FAULT) else d.Status.COMPLETED
    if finish.outcome == d.Outcome.CANCELLED:
        status = d.Status.CANCELLED
    c.execute(_CLOSE_ATTEMPT, {
        "a_id": finish.attempt_id, "a_status": status.value, "a_outcome": finish.outcome.value,
        "a_reason": finish.reason or reason, "a_finished_ms": now_ms, "a_batches": finish.batches,
        "a_settings": json.dumps(finish.effective_settings, sort_keys=True),
        "a_env": json.dumps(finish.environment, sort_keys=True), "a_provider": finish.execution_provider,
        "a_used": json.dumps(finish.providers_used), "a_phases": json.dumps(finish.phases, sort_keys=True),
        "a_obs": json.dumps(finish.observations.to_dict(), sort_keys=True)})
    if not d.Status(task_was).terminal:
        if requeue:
            c.execute(_REQUEUE_TASK, {"t_id": task_id, "t_reason": reason})
        else:
            c.execute(_END_TASK, {"t_id": task_id, "t_status": task_status.value, "t_reason": reason,
                                  "t_verdict": verdict.value if verdict else None,
                                  "t_metrics": json.dumps(metrics, sort_keys=True)})
    end = _refresh(c, run_id, now_ms, counted=True)
    assert end is not None, "an attempt's run is never deleted"
    return end
