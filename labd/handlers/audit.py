"""Reading the append-only audit log (admins); entries are written by the handlers of each action, in the same
store transaction as the action itself."""

from __future__ import annotations

from labd.state import AuditEntry, Store
from pilotlab import domain as d

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000


def list_audit(store: Store, target: str = "", limit: int = 0) -> list[AuditEntry]:
    """The newest `limit` entries (0: DEFAULT_LIMIT), only those about target when given."""
    if not 0 <= limit <= MAX_LIMIT:
        raise d.Invalid(f"--limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return store.list_audit(target or None, limit or DEFAULT_LIMIT)
