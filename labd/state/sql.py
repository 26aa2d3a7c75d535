"""The SQL store: SQLModel over SQLite (one file, WAL) or PostgreSQL (several labd replicas)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import create_engine, event, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labd.state import rows
from labd.state.base import Store, TokenRecord
from labd.state.tables import (
    ArtifactRow,
    AttemptRow,
    DeviceRow,
    LogRow,
    ReportRow,
    ResultBatchRow,
    RunRow,
    SuiteRow,
    TaskRow,
    TokenRow,
)
from pilotlab import domain as d


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _semver_key(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("-")[0].split("."))
    except ValueError:
        return (0,)


class SqlStore(Store):
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        # SQLite has one writer: serialise writers here rather than retrying on "database is locked".
        self._write_lock = threading.RLock() if self.is_sqlite else None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                yield s
        finally:
            if lock is not None:
                lock.release()

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    # --- tokens -------------------------------------------------------------------------------------------
    def create_token(self, role: d.Role, token_hash: str, device_id: str | None = None) -> str:
        tid = _new_id("tok")
        with self._tx() as s:
            s.add(TokenRow(id=tid, hash=token_hash, role=role.value, device_id=device_id,
                           created_ms=rows.now_ms()))
        return tid

    def find_token(self, token_hash: str) -> TokenRecord | None:
        with self._read() as s:
            row = s.execute(select(TokenRow).where(TokenRow.hash == token_hash)).scalars().first()
            if row is None:
                return None
            return TokenRecord(id=row.id, role=d.Role(row.role), device_id=row.device_id, revoked=row.revoked)

    # --- devices ------------------------------------------------------------------------------------------
    def enrol_device(self, name: str, device_class: str, region: str, tags: dict[str, str],
                     capabilities: d.Capabilities, public_key: bytes, now_ms: int) -> d.Device:
        row = DeviceRow(id=_new_id("dev"), name=name, device_class=device_class, region=region,
                        tags_json=json.dumps(tags, sort_keys=True),
                        capabilities_json=json.dumps(capabilities.to_dict(), sort_keys=True),
                        status="offline", last_seen_ms=now_ms, enrolled_ms=now_ms, public_key=public_key)
        try:
            with self._tx() as s:
                if s.execute(select(DeviceRow.id).where(DeviceRow.name == name)).first() is not None:
                    raise d.Conflict(f"a device named {name!r} is already enrolled; pick another --name, "
                                     "or reuse the agent's --work-dir that holds its credential")
                s.add(row)
        except IntegrityError as e:
            raise d.Conflict(f"a device named {name!r} is already enrolled") from e
        return rows.device(row)

    def get_device(self, device_id: str) -> d.Device:
        with self._read() as s:
            row = s.get(DeviceRow, device_id)
            if row is None:
                raise d.NotFound(f"no device with id {device_id}")
            return rows.device(row)

    def get_device_by_name(self, name: str) -> d.Device:
        with self._read() as s:
            row = s.execute(select(DeviceRow).where(DeviceRow.name == name)).scalars().first()
            if row is None:
                raise d.NotFound(f"no device named {name!r} is enrolled; see `labctl devices list`")
            return rows.device(row)

    def list_devices(self) -> list[d.Device]:
        with self._read() as s:
            return [rows.device(r) for r in s.execute(select(DeviceRow).order_by(DeviceRow.name)).scalars()]

    def update_device(self, device_id: str, *, status: str, now_ms: int,
                      capabilities: d.Capabilities | None = None) -> None:
        with self._tx() as s:
            row = s.get(DeviceRow, device_id)
            if row is None:
                raise d.NotFound(f"no device with id {device_id}")
            row.status = status
            row.last_seen_ms = now_ms
            if capabilities is not None:
                row.capabilities_json = json.dumps(capabilities.to_dict(), sort_keys=True)
            s.add(row)

    # --- suites and artifacts -----------------------------------------------------------------------------
    def put_suite(self, suite: d.SuiteRecord) -> None:
        with self._tx() as s:
            row = s.get(SuiteRow, (suite.id, suite.version))
            if row is not None:
                if row.digest != suite.digest:
                    raise d.Conflict(
                        f"suite {suite.id}@{suite.version} is already registered with digest {row.digest}, "
                        f"not {suite.digest}; publish the change under a new version")
                return
            s.add(SuiteRow(id=suite.id, version=suite.version, title=suite.title, digest=suite.digest,
                           suite_json=suite.suite_json))

    def get_suite(self, suite_id: str, version: str | None = None) -> d.SuiteRecord:
        with self._read() as s:
            found = list(s.execute(select(SuiteRow).where(SuiteRow.id == suite_id)).scalars())
        if version:
            found = [r for r in found if r.version == version]
        if not found:
            at = f"@{version}" if version else ""
            raise d.NotFound(f"no suite {suite_id}{at} in this lab; see `labctl suites list`")
        row = max(found, key=lambda r: _semver_key(r.version))
        return d.SuiteRecord(id=row.id, version=row.version, title=row.title, digest=row.digest,
                             suite_json=row.suite_json)

    def list_suites(self) -> list[d.SuiteRecord]:
        with self._read() as s:
            rs = list(s.execute(select(SuiteRow)).scalars())
        rs.sort(key=lambda r: (r.id, _semver_key(r.version)))
        return [d.SuiteRecord(id=r.id, version=r.version, title=r.title, digest=r.digest,
                              suite_json=r.suite_json) for r in rs]

    def put_artifact(self, artifact: d.ArtifactRecord) -> None:
        with self._tx() as s:
            row = s.get(ArtifactRow, artifact.sha256)
            if row is None:
                s.add(ArtifactRow(sha256=artifact.sha256, size=artifact.size, name=artifact.name,
                                  kind=artifact.kind, path=artifact.path))
            elif row.path != artifact.path:
                row.path = artifact.path
                s.add(row)

    def get_artifact(self, sha256: str) -> d.ArtifactRecord:
        with self._read() as s:
            row = s.get(ArtifactRow, sha256)
            if row is None:
                raise d.NotFound(f"no artifact with sha256 {sha256} in this lab")
            return d.ArtifactRecord(sha256=row.sha256, size=row.size, name=row.name, kind=row.kind, path=row.path)

    # --- runs and tasks -----------------------------------------------------------------------------------
    def create_run(self, run: d.Run) -> d.Run:
        with self._tx() as s:
            s.add(RunRow(id=run.id, suite_id=run.suite_id, suite_version=run.suite_version,
                         suite_digest=run.suite_digest, status=run.status.value, priority=run.priority,
                         submitted_ms=run.submitted_ms, submitted_by=run.submitted_by, kind=run.kind,
                         select_expr=run.select, any_device=run.any_device, queue_timeout_ms=run.queue_timeout_ms))
            base_ns = rows.now_ns()
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
            s.flush()
            rows.refresh_run_status(s, run.id, run.submitted_ms)
        return self.get_run(run.id)

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

    def cancel_run(self, run_id: str, reason: str, now_ms: int) -> tuple[d.Run, list[d.Attempt]]:
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
            att = AttemptRow(id=_new_id("att"), task_id=task.id, number=task.attempts, device_id=device_id,
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

    def touch_devices(self, device_ids: list[str], now_ms: int) -> None:
        if not device_ids:
            return
        with self._tx() as s:
            s.execute(update(DeviceRow).where(DeviceRow.id.in_(device_ids))  # type: ignore[attr-defined]
                      .values(last_seen_ms=now_ms, status="online"))

    def set_device_state(self, device_id: str, state: str) -> d.Device:
        with self._tx() as s:
            row = s.get(DeviceRow, device_id)
            if row is None:
                raise d.NotFound(f"no device with id {device_id}")
            row.state = state
            if state == "active":
                row.infra_errors = 0
            s.add(row)
            return rows.device(row)

    def note_outcome(self, device_id: str, infra_error: bool) -> int:
        with self._tx() as s:
            row = s.get(DeviceRow, device_id)
            if row is None:
                return 0
            row.infra_errors = row.infra_errors + 1 if infra_error else 0
            s.add(row)
            return row.infra_errors

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

    def running_attempts(self, device_id: str | None = None) -> list[d.Attempt]:
        with self._read() as s:
            q = select(AttemptRow).where(AttemptRow.status == d.Status.RUNNING.value)
            if device_id is not None:
                q = q.where(AttemptRow.device_id == device_id)
            return [rows.attempt(r, "") for r in s.execute(q).scalars()]

    def renew_leases(self, device_id: str, attempt_ids: list[str], until_ms: int) -> None:
        if not attempt_ids:
            return
        with self._tx() as s:
            q = select(AttemptRow).where(AttemptRow.device_id == device_id,
                                         AttemptRow.id.in_(attempt_ids),  # type: ignore[attr-defined]
                                         AttemptRow.status == d.Status.RUNNING.value)
            for a in s.execute(q).scalars():
                a.lease_expires_ms = until_ms
                s.add(a)

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

    # --- results ------------------------------------------------------------------------------------------
    def add_result_batch(self, batch: d.ResultBatch, now_ms: int) -> bool:
        n = len(batch.value)
        try:
            with self._tx() as s:
                if s.get(ResultBatchRow, (batch.attempt_id, batch.seq)) is not None:
                    return False
                s.add(ResultBatchRow(attempt_id=batch.attempt_id, seq=batch.seq, kind=batch.kind, n=n,
                                     received_ms=now_ms, signature=batch.signature, data=rows.pack_samples(batch)))
        except IntegrityError:
            # A concurrent sender (PostgreSQL) committed the same (attempt, seq) first: a duplicate, rolled back.
            if batch.seq in self.batch_seqs(batch.attempt_id):
                return False
            raise
        return True

    def batch_seqs(self, attempt_id: str) -> set[int]:
        with self._read() as s:
            q = select(ResultBatchRow.seq).where(ResultBatchRow.attempt_id == attempt_id)
            return {int(x) for x in s.execute(q).scalars()}

    def samples(self, attempt_id: str, kind: str) -> dict[str, np.ndarray]:
        with self._read() as s:
            q = (select(ResultBatchRow.seq, ResultBatchRow.n, ResultBatchRow.data)
                 .where(ResultBatchRow.attempt_id == attempt_id, ResultBatchRow.kind == kind)
                 .order_by(ResultBatchRow.seq))
            found = s.execute(q).all()
        return rows.unpack_samples([(int(seq), int(n), bytes(data)) for seq, n, data in found])

    def batches(self, attempt_id: str) -> list[tuple[int, str, int, bytes]]:
        with self._read() as s:
            q = (select(ResultBatchRow.seq, ResultBatchRow.kind, ResultBatchRow.n, ResultBatchRow.signature)
                 .where(ResultBatchRow.attempt_id == attempt_id).order_by(ResultBatchRow.seq))
            return [(int(a), str(b), int(c), bytes(sig or b"")) for a, b, c, sig in s.execute(q).all()]

    def sample_kinds(self, attempt_id: str) -> list[str]:
        with self._read() as s:
            q = select(ResultBatchRow.kind).where(ResultBatchRow.attempt_id == attempt_id).distinct()
            return sorted(str(k) for k in s.execute(q).scalars())

    def finish_attempt(self, finish: d.AttemptFinish, *, task_status: d.Status, verdict: d.Verdict | None,
                       metrics: dict[str, Any], reason: str, now_ms: int, requeue: bool = False) -> d.Run:
        with self._tx() as s:
            a = s.get(AttemptRow, finish.attempt_id)
            if a is None:
                raise d.NotFound(f"no attempt {finish.attempt_id}")
            t = s.get(TaskRow, a.task_id)
            assert t is not None
            a.status = d.Status.ERROR.value if finish.outcome == d.Outcome.ERROR else d.Status.COMPLETED.value
            if finish.outcome == d.Outcome.CANCELLED:
                a.status = d.Status.CANCELLED.value
            a.outcome, a.reason, a.finished_ms = finish.outcome.value, finish.reason or reason, now_ms
            a.batches_expected = finish.batches
            a.effective_settings_json = json.dumps(finish.effective_settings, sort_keys=True)
            a.environment_json = json.dumps(finish.environment, sort_keys=True)
            a.execution_provider = finish.execution_provider
            a.providers_used_json = json.dumps(finish.providers_used)
            a.phases_json = json.dumps(finish.phases, sort_keys=True)
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
            run_id = t.run_id
        return self.get_run(run_id)

    def latest_report(self, run_id: str) -> d.ReportRecord | None:
        with self._read() as s:
            q = (select(ReportRow).where(ReportRow.run_id == run_id)
                 .order_by(ReportRow.log_index.desc()).limit(1))  # type: ignore[attr-defined]
            r = s.execute(q).scalars().first()
            if r is None:
                return None
            return d.ReportRecord(id=r.id, run_id=r.run_id, digest=r.digest, issued_ms=r.issued_ms,
                                  replaces=r.replaces, log_index=r.log_index, bundle=bytes(r.bundle or b""))

    def append_report(self, report: d.ReportRecord, leaf_hash: str, now_ms: int) -> int:
        with self._tx() as s:
            if not self.is_sqlite:
                s.execute(text("LOCK TABLE evidence_log IN EXCLUSIVE MODE"))
            index = int(s.execute(select(func.count()).select_from(LogRow)).scalar_one())
            s.add(LogRow(idx=index, report_id=report.id, leaf_hash=leaf_hash, appended_ms=now_ms))
            s.add(ReportRow(id=report.id, run_id=report.run_id, digest=report.digest, issued_ms=report.issued_ms,
                            replaces=report.replaces, log_index=index, bundle=report.bundle))
        return index

    def set_report_bundle(self, report_id: str, bundle: bytes) -> None:
        with self._tx() as s:
            r = s.get(ReportRow, report_id)
            if r is None:
                raise d.NotFound(f"no report {report_id}")
            r.bundle = bundle
            s.add(r)

    def log_leaves(self, size: int | None = None) -> list[str]:
        with self._read() as s:
            q = select(LogRow.leaf_hash).order_by(LogRow.idx)
            if size is not None:
                q = q.limit(size)
            return [str(h) for h in s.execute(q).scalars()]

    def count_tasks(self) -> dict[str, int]:
        with self._read() as s:
            q = select(TaskRow.status, func.count()).group_by(TaskRow.status)
            return {str(k): int(v) for k, v in s.execute(q).all()}  # type: ignore[call-overload]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
