"""Domain objects as the JSON documents the contract names (plus a few extra keys)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pilotlab import domain as d


def device(dev: d.Device) -> dict[str, Any]:
    return {"name": dev.name, "class": dev.device_class, "status": dev.status, "region": dev.region,
            "tags": dev.tags, "capabilities": dev.capabilities.to_dict(), "last_seen_unix_ms": dev.last_seen_ms,
            "state": dev.state, "infra_errors": dev.infra_errors}


def task(t: d.Task) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "status": t.status.value, "device": t.device_name,
            "attempts": t.attempts, "verdict": t.verdict.value if t.verdict else None, "phase": t.phase,
            "progress": t.progress, "reason": t.reason, "metrics": t.metrics,
            "attempt_history": [{"number": a.number, "device": a.device_name, "status": a.status.value,
                                 "outcome": a.outcome, "reason": a.reason} for a in t.history]}


def run(r: d.Run, tasks: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"id": r.id, "status": r.status.value, "verdict": r.verdict.value if r.verdict else None,
                           "suite": {"id": r.suite_id, "version": r.suite_version, "digest": r.suite_digest},
                           "priority": r.priority, "submitted_unix_ms": r.submitted_ms,
                           "finished_unix_ms": r.finished_ms, "reason": r.reason, "kind": r.kind}
    if tasks:
        out["tasks"] = [task(t) for t in r.tasks]
    return out


def iso(ms: int) -> str | None:
    """Unix ms as ISO 8601 UTC (to the second); None for 0 (never)."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ms else None


def token(t: Any) -> dict[str, Any]:
    """A TokenInfo message (never a secret) as `labctl token list` shows it."""
    return {"id": t.id, "role": t.role, "created": iso(t.created_ms), "expires": iso(t.expires_ms),
            "revoked": iso(t.revoked_ms), "uses": t.uses, "max_uses": t.max_uses or None,
            "device": t.device or None, "issued_by": t.issued_by or None}
