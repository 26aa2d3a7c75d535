"""labd's persistent state: one Store interface, SQL implementation for SQLite and PostgreSQL."""

from labd.state.base import AuditEntry, Store, TokenRecord
from labd.state.factory import open_store

__all__ = ["AuditEntry", "Store", "TokenRecord", "open_store"]
