"""The SQL store: SQLModel over SQLite (one file, WAL) or PostgreSQL (several labd replicas), one module per
concern (fleet, runs, results, audit) sharing one engine."""

from labd.state.base import Store
from labd.state.sql.audit import AuditSql
from labd.state.sql.cluster import ClusterSql
from labd.state.sql.fleet import FleetSql
from labd.state.sql.results import ResultsSql
from labd.state.sql.runs import RunsSql


class SqlStore(FleetSql, RunsSql, ResultsSql, AuditSql, ClusterSql, Store):
    """The Store contract over SQL; see labd/state/base.py for what each method MUST do."""


__all__ = ["SqlStore"]
