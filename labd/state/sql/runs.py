"""The SQL store's runs, tasks and attempts: creating and cancelling runs, claiming and leasing tasks, finishing
attempts, the run status that follows."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import bindparam, func, select, update

from labd.state import rows
from labd.state.base import AuditEntry
from labd.state.sql.engine import SqlEngine, new_id
from labd.state.tables import AttemptRow, DeviceRow, RunRow, TaskRow
from pilotlab import domain as d

_ATTEMPT_OWNER = select(AttemptRow.device_id, AttemptRow.status).where(AttemptRow.id == bindparam("id"))
_RENEW = (update(AttemptRow)
          .where(AttemptRow.device_id == bindparam("device"),
                 AttemptRow.id.in_(bindparam("ids", expanding=True)),  # type: ignore[attr-defined]
                 AttemptRow.status == d.Status.RUNNING.value)
          .values(lease_expires_ms=bindparam("until")))


class RunsSql(SqlEngine):
    # --- runs and tasks -----------------------------------------------------------------------------------
    def create_run(self, run: d.Run, audit: AuditEntry | None = None) -> d.Run:
        with self._tx() as s:
            s.add(RunRow(id=run.id, suite_id=run.suite_id, suite_version=run.suite_version,
                         suite_digest=run.suite_digest, status=run.status.value, priority=run.priority,
                         submitted_ms=run.submitted_ms, submitted_by=run.submitted_by, kind=run.kind,
                         select_expr=run.select, any_device=run.any_device, queue_timeout_ms=run.queue_timeout_ms))
            base_ns = self.clock.now_ns()
            deadline = run.submitted_ms + run.queue_timeout_ms if run.queue_timeout_ms else 0
            for i, t in enumerate(run.tasks):
                status = t.status if t.status == d.Status.ERROR else d.Status.QUEUED
                if t.spec is None:
                    raise d.Invalid(f"task {t.name} has no spec to store")
                s.add(TaskRow(id=t.id, run_id=run.id, ordinal=i, name=t.name, device_id=t.device_id,
                              status=status.value, reason=t.reason,
                              spec_json=json.dumps(t.spec.to_json(), sort_keys=True),
                              priority=run.priority, queued_ms=run.submitted_ms, queue_ns=base_ns + i,
                              queue_deadline_ms=deadline, health=run.kind == "health"))
            rows.add_audit(s, audit)
            s.flush()
            rows.refresh_run_status(s, run.id, run.submitted_ms)
            stored = s.get(RunRow, run.id)
            assert stored is not None
            return rows.load_run(s, stored)  # read in the same transaction, not once more after it

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
        with self._tx() as s:
            dev = s.get(DeviceRow, device_id)
            if dev is None or dev.state == "draining":
                return None
            q = (select(TaskRow)
                 .where(TaskRow.device_id == device_id, TaskRow.status == d.Status.QUEUED.value)
                 .order_by(TaskRow.priority.desc(), TaskRow.queue_ns)  # type: ignore[attr-defined]
                 .limit(1).with_for_update(skip_locked=True))
            if dev.state == "quarantined":
                q = q.where(TaskRow.health.is_(True))  # type: ignore[attr-defined]
            task = s.execute(q).scalars().first()
            if task is None:
                return None
            task.attempts += 1
            task.status = d.Status.RUNNING.value
            task.phase, task.progress = "assigned", 0.0
            att = AttemptRow(id=new_id("att"), task_id=task.id, number=task.attempts, device_id=device_id,
                             status=d.Status.RUNNING.value, started_ms=now_ms, lease_expires_ms=now_ms + lease_ms)
            s.add(task)
            s.add(att)
            run = s.get(RunRow, task.run_id)
            if run is not None and run.status == d.Status.QUEUED.value:
                run.status = d.Status.RUNNING.value
                s.add(run)
            return rows.task(task, dev.name, []), rows.attempt(att, dev.name)

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
        with self._read() as s:
            row = s.get(AttemptRow, attempt_id)
            if row is None:
                raise d.NotFound(f"no attempt {attempt_id}")
            return rows.attempt(row, "")

    def attempt_owner(self, attempt_id: str) -> tuple[str, d.Status]:
        with self._core_read() as c:  # every result batch asks: one prepared statement, two columns
            row = c.execute(_ATTEMPT_OWNER, {"id": attempt_id}).first()
        if row is None:
            raise d.NotFound(f"no attempt {attempt_id}")
        return str(row[0]), d.Status(row[1])

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
        with self._read() as s:
            t = s.get(TaskRow, task_id)
            if t is None:
                raise d.NotFound(f"no task {task_id}")
            dev = s.get(DeviceRow, t.device_id)
            return rows.task(t, dev.name if dev else "", [])


    def finish_attempt(self, finish: d.AttemptFinish, *, task_status: d.Status, verdict: d.Verdict | None,
                       metrics: dict[str, Any], reason: str, now_ms: int, requeue: bool = False) -> d.Run:
        with self._tx() as s:
            a = s.get(AttemptRow, finish.attempt_id)
            if a is None:
                raise d.NotFound(f"no attempt {finish.attempt_id}")
            t = s.get(TaskRow, a.task_id)
            assert t is not None
            a.status = d.Status.ERROR.value if finish.outcome in (d.Outcome.ERROR, d.Outcome.FAULT) \
                else d.Status.COMPLETED.value
            if finish.outcome == d.Outcome.CANCELLED:
                a.status = d.Status.CANCELLED.value
            a.outcome, a.reason, a.finished_ms = finish.outcome.value, finish.reason or reason, now_ms
            a.batches_expected = finish.batches
            a.effective_settings_json = json.dumps(finish.effective_settings, sort_keys=True)
            a.environment_json = json.dumps(finish.environment, sort_keys=True)
            a.execution_provider = finish.execution_provider
            a.providers_used_json = json.dumps(finish.providers_used)
            a.phases_json = json.dumps(finish.phases, sort_keys=True)
            a.observations_json = json.dumps(finish.observations.to_dict(), sort_keys=True)
            s.add(a)
            if not d.Status(t.status).terminal:
                if requeue:
                    t.status, t.phase, t.progress, t.reason = d.Status.QUEUED.value, "", 0.0, reason
                else:
                    t.status, t.reason = task_status.value, reason
                    t.verdict = verdict.value if verdict else None
                    t.metrics_json = json.dumps(metrics, sort_keys=True)
                    t.phase, t.progress = "done", 1.0
                s.add(t)
            rows.refresh_run_status(s, t.run_id, now_ms)
            run_row = s.get(RunRow, t.run_id)
            assert run_row is not None
            return rows.load_run(s, run_row)  # read in the same transaction, not once more after it


    def count_tasks(self) -> dict[str, int]:
        with self._read() as s:
            q = select(TaskRow.status, func.count()).group_by(TaskRow.status)
            return {str(k): int(v) for k, v in s.execute(q).all()}  # type: ignore[call-overload]

