"""The SQL store's results and evidence: raw sample batches (idempotent on attempt and seq), reports and the
append-only evidence log."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from labd.state import rows
from labd.state.sql.engine import SqlEngine
from labd.state.tables import LogRow, ReportRow, ResultBatchRow
from pilotlab import domain as d


class ResultsSql(SqlEngine):
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

