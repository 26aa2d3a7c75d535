"""The SQL store's audit log: appending an entry and reading entries back, newest first. Nothing here (or
anywhere in the store) updates or deletes one; the table's triggers refuse it too."""

from __future__ import annotations

from sqlalchemy import select

from labd.state import rows
from labd.state.base import AuditEntry
from labd.state.sql.engine import SqlEngine
from labd.state.tables import AuditRow


class AuditSql(SqlEngine):
    def append_audit(self, entry: AuditEntry) -> None:
        with self._tx() as s:
            rows.add_audit(s, entry)

    def list_audit(self, target: str | None = None, limit: int = 1000, *, since_ms: int = 0,
                   until_ms: int = 0) -> list[AuditEntry]:
        q = select(AuditRow).order_by(AuditRow.seq.desc()).limit(limit)  # type: ignore[union-attr]
        if target is not None:
            q = q.where(AuditRow.target == target)
        if since_ms:
            q = q.where(AuditRow.time_ms >= since_ms)
        if until_ms:
            q = q.where(AuditRow.time_ms <= until_ms)
        with self._read() as s:
            return [rows.audit(r) for r in s.execute(q).scalars()]
