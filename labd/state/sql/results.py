"""The SQL store's results and evidence: the index of result batches (idempotent on attempt and seq; each batch a
blob, labd.blobs), reports and the append-only evidence log."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, bindparam, func, select, text, tuple_
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from labd.blobs import BlobMissing
from labd.state import batches, rows
from labd.state.base import FinishRead, Store
from labd.state.batches import ROW_BYTES, SignedBatch
from labd.state.sql.engine import SqlEngine
from labd.state.tables import ArtifactRow, AttemptRow, DeviceRow, LogRow, ReportRow, ResultBatchRow, TaskRow
from pilotlab import domain as d

# Prepared Core statements (compiled once, cached by SQLAlchemy): no ORM objects on the results' hot paths.
_BATCHES: Table = ResultBatchRow.__table__  # type: ignore[attr-defined]
_C = _BATCHES.c
_COLUMNS = ("attempt_id", "seq", "kind", "n", "received_ms", "signature", "sha256", "blob_at", "data")
_ROW: dict[str, Any] = {c: bindparam(c) for c in _COLUMNS}
# Many rows in one statement (SQLAlchemy's insertmanyvalues), each inserted only when (attempt, seq) is new: RETURNING
# names those inserted, so a duplicate, even one committed concurrently by another replica, is known as one.
_INSERT_SQLITE = (sqlite_insert(_BATCHES).values(_ROW).on_conflict_do_nothing(index_elements=["attempt_id", "seq"])
                  .returning(_C.attempt_id, _C.seq))
# PostgreSQL: the same two statements with the group's columns as arrays (unnest), so their text is one whatever the
# group's size: prepared once, where a VALUES list or an IN list per size would be parsed and planned again each time.
_PG_TYPES = ("text", "bigint", "text", "bigint", "bigint", "bytea", "text", "text", "bytea")
_INSERT_PG_ARRAYS = text(
    f"INSERT INTO result_batches ({', '.join(_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(_COLUMNS, _PG_TYPES, strict=True))
    + ") ON CONFLICT (attempt_id, seq) DO NOTHING RETURNING attempt_id, seq")
_STORED_AMONG_PG = text("SELECT attempt_id, seq FROM result_batches WHERE (attempt_id, seq) IN "
                        "(SELECT * FROM unnest(CAST(:a AS text[]), CAST(:s AS bigint[])))")
_STORED_AMONG = select(_C.attempt_id, _C.seq).where(tuple_(_C.attempt_id, _C.seq).in_(bindparam("keys",
                                                                                                 expanding=True)))
_OF_ATTEMPT = _C.attempt_id == bindparam("a")
_SEQS = select(_C.seq).where(_OF_ATTEMPT)
_BATCH_DATA = select(_C.seq, _C.kind, _C.n, _C.sha256, _C.blob_at, _C.data).where(_OF_ATTEMPT).order_by(_C.seq)
_BATCH_DATA_OF_KIND = _BATCH_DATA.where(_C.kind == bindparam("k"))
_INDEX = select(_C.seq, _C.kind, _C.n, _C.signature).where(_OF_ATTEMPT).order_by(_C.seq)
_KINDS = select(_C.kind).where(_OF_ATTEMPT).distinct()
# A finish's read (read_finish): the attempt, its task, the task's device's name (as get_task) and the attempt's
# device's count of infrastructure errors in one statement, each table's columns labelled a_, t_ (rows.Prefixed).
_ATT: Table = AttemptRow.__table__  # type: ignore[attr-defined]
_TASK: Table = TaskRow.__table__  # type: ignore[attr-defined]
_TASK_DEV = DeviceRow.__table__.alias("task_device")  # type: ignore[attr-defined]
_ATT_DEV = DeviceRow.__table__.alias("attempt_device")  # type: ignore[attr-defined]
_FINISH_READ = (select(*[c.label(f"a_{c.name}") for c in _ATT.c], *[c.label(f"t_{c.name}") for c in _TASK.c],
                       _TASK_DEV.c.name.label("task_device_name"),
                       _ATT_DEV.c.infra_errors.label("device_infra_errors"))
                .select_from(_ATT.outerjoin(_TASK, _TASK.c.id == _ATT.c.task_id)
                             .outerjoin(_TASK_DEV, _TASK_DEV.c.id == _TASK.c.device_id)
                             .outerjoin(_ATT_DEV, _ATT_DEV.c.id == _ATT.c.device_id))
                .where(_ATT.c.id == bindparam("id")))
_ARTIFACTS: Table = ArtifactRow.__table__  # type: ignore[attr-defined]
_ARTIFACT_PATH = select(_ARTIFACTS.c.path).where(_ARTIFACTS.c.sha256 == bindparam("sha256"))
_BatchRow = tuple[Any, Any, Any, Any, Any, Any]  # seq, kind, n, sha256, blob_at, data (_BATCH_DATA)


class _SqlFinishRead(FinishRead):
    """FinishRead from one connection's reads (ResultsSql.read_finish): each result batch's row read once, for the
    missing-batch check and the samples alike."""

    def __init__(self, store: ResultsSql, attempt: d.Attempt, task: d.Task | None, infra_errors: int | None,
                 found: list[_BatchRow] | None, paths: dict[str, str | None]) -> None:
        super().__init__(cast(Store, store), attempt)
        self._sql = store
        self._task = task
        self._infra_errors = infra_errors
        self._found = found
        self._paths = paths

    def task(self) -> d.Task:
        if self._task is None:
            raise d.NotFound(f"no task {self.attempt.task_id}")
        return self._task

    def batch_seqs(self) -> set[int]:
        if self._found is None:
            return super().batch_seqs()
        return {int(r[0]) for r in self._found}

    def all_samples(self) -> dict[str, dict[str, np.ndarray]]:
        if self._found is None:
            return super().all_samples()
        return {k: batches.concat(v) for k, v in sorted(self._sql._batch_data(self.attempt.id, self._found).items())}

    def artifact_path(self, sha256: str) -> str:
        if sha256 not in self._paths:
            return super().artifact_path(sha256)
        path = self._paths[sha256]
        if path is None:  # as get_artifact says it
            raise d.NotFound(f"no artifact with sha256 {sha256} in this lab")
        return path

    def infra_errors(self) -> int | None:
        return self._infra_errors


class ResultsSql(SqlEngine):
    # --- results ------------------------------------------------------------------------------------------
    def add_result_batch(self, batch: d.ResultBatch, now_ms: int) -> bool:
        return self.add_signed_batch(SignedBatch.from_domain(batch), now_ms)

    def add_signed_batch(self, batch: SignedBatch, now_ms: int) -> bool:
        return self.add_signed_batches([batch], now_ms)[0]

    def add_signed_batches(self, batches: Sequence[SignedBatch], now_ms: int) -> list[bool]:
        """The group's new blobs first, in one durable write (BlobStore.put_many: one pack append and one fdatasync
        on the filesystem), then their index rows in one transaction, each inserted only when (attempt, seq) is new:
        one statement, no ORM object. A batch already stored (a resend) is found by one read before, and its blob not
        written again. A crash between the two leaves unreferenced blob bytes, never a row without its blob."""
        if not batches:
            return []
        keys = [(b.attempt_id, b.seq) for b in batches]
        with self._core_read() as c:
            if self.is_sqlite:
                found = c.execute(_STORED_AMONG, {"keys": sorted(set(keys))})
            else:
                found = c.execute(_STORED_AMONG_PG, {"a": [a for a, _ in keys], "s": [q for _, q in keys]})
            known = {(str(a), int(q)) for a, q in found}
        fresh: dict[tuple[str, int], SignedBatch] = {}
        for k, b in zip(keys, batches, strict=True):
            if k not in known and k not in fresh:
                fresh[k] = b
        if not fresh:
            return [False] * len(batches)
        group = list(fresh.values())
        if self.blobs is not None:
            ats = self.blobs.put_many([(b.sha256, b.payload) for b in group])
            rows = [(b.sha256, at, b"") for b, at in zip(group, ats, strict=True)]
        else:  # no blob store: inline, as rows were before revision 0006
            rows = [("", "", b.payload[len(b.payload) - ROW_BYTES * b.n:]) for b in group]
        params = [{"attempt_id": b.attempt_id, "seq": b.seq, "kind": b.kind, "n": b.n, "received_ms": now_ms,
                   "signature": b.signature, "sha256": digest, "blob_at": at, "data": data}
                  for b, (digest, at, data) in zip(group, rows, strict=True)]
        with self._core_tx() as c:
            if self.is_sqlite:
                result = c.execute(_INSERT_SQLITE, params)
            else:
                result = c.execute(_INSERT_PG_ARRAYS, {k: [p[k] for p in params] for k in _COLUMNS})
            inserted = {(str(a), int(q)) for a, q in result}
        out = []
        for k in keys:  # each new key counts once: for its first batch in this call
            out.append(k in inserted)
            inserted.discard(k)
        return out

    def batch_seqs(self, attempt_id: str) -> set[int]:
        with self._core_read() as c:
            return {int(x) for x in c.execute(_SEQS, {"a": attempt_id}).scalars()}

    def read_finish(self, attempt_id: str, grading: bool) -> FinishRead:
        """One connection: the attempt with its task and devices (one statement); when grading a running attempt,
        its result batches' rows (one statement) and the paths of the artifacts its grading joins."""
        found: list[_BatchRow] | None = None
        paths: dict[str, str | None] = {}
        with self._core_read() as c:
            row = c.execute(_FINISH_READ, {"id": attempt_id}).first()
            if row is None:
                raise d.NotFound(f"no attempt {attempt_id}")
            att = rows.attempt(rows.Prefixed(row, "a_"), "")
            task = None
            if row.t_id is not None:
                task = rows.task(rows.Prefixed(row, "t_"), row.task_device_name or "", [])
            if grading and att.status == d.Status.RUNNING and task is not None:
                found = [tuple(r) for r in c.execute(_BATCH_DATA, {"a": attempt_id})]
                spec = task.spec
                assert spec is not None, "a stored task always has its spec"
                for ref in (spec.dataset if spec.accuracy else None,
                            spec.golden if spec.scenario == "generative" else None):
                    if ref is not None and ref.sha256 not in paths:
                        paths[ref.sha256] = c.execute(_ARTIFACT_PATH, {"sha256": ref.sha256}).scalar()
        infra = row.device_infra_errors
        return _SqlFinishRead(self, att, task, int(infra) if infra is not None else None, found, paths)

    def _read_batches(self, attempt_id: str, kind: str | None) -> dict[str, list[tuple[int, int, bytes]]]:
        with self._core_read() as c:
            if kind is None:
                found = c.execute(_BATCH_DATA, {"a": attempt_id}).all()
            else:
                found = c.execute(_BATCH_DATA_OF_KIND, {"a": attempt_id, "k": kind}).all()
        return self._batch_data(attempt_id, found)

    def _batch_data(self, attempt_id: str, found: Sequence[Sequence[Any]]) -> dict[str, list[tuple[int, int, bytes]]]:
        """(seq, n, column bytes) of an attempt's batches by kind, in seq order, from their rows (_BATCH_DATA):
        blobs read (BlobStore.get_many, in seq order) and checked (digest and framing), inline rows as they are."""
        out: dict[str, list[tuple[int, int, bytes]]] = {}
        if self.blobs is None:
            for seq, k, n, digest, _, data in found:
                if digest:
                    raise BlobMissing(f"result batch {seq} of attempt {attempt_id} is blob {digest}, and this store "
                                      "was opened without its blob folder")
                out.setdefault(str(k), []).append((int(seq), int(n), bytes(data)))
            return out
        with closing(self.blobs.get_many((digest, at or "") for _, _, _, digest, at, _ in found if digest)) as read:
            for seq, k, n, digest, _, data in found:
                if digest:
                    signed = SignedBatch(attempt_id, int(seq), str(k), int(n), next(read), sha256=digest)
                    signed.check_framing()
                    data = signed.payload
                out.setdefault(str(k), []).append((int(seq), int(n), bytes(data)))
        return out

    def samples(self, attempt_id: str, kind: str) -> dict[str, np.ndarray]:
        return batches.concat(self._read_batches(attempt_id, kind).get(kind, []))

    def all_samples(self, attempt_id: str) -> dict[str, dict[str, np.ndarray]]:
        return {k: batches.concat(v) for k, v in sorted(self._read_batches(attempt_id, None).items())}

    def batches(self, attempt_id: str) -> list[tuple[int, str, int, bytes]]:
        with self._core_read() as c:
            found = c.execute(_INDEX, {"a": attempt_id}).all()
        return [(int(a), str(b), int(n), bytes(sig or b"")) for a, b, n, sig in found]

    def sample_kinds(self, attempt_id: str) -> list[str]:
        with self._core_read() as c:
            return sorted(str(k) for k in c.execute(_KINDS, {"a": attempt_id}).scalars())

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

