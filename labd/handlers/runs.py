"""Submitting and cancelling runs (each recorded in the audit log: run.submit, run.cancel)."""

from __future__ import annotations

import math

from labd.clock import Clock
from labd.scheduler.placement import pick_one, targets
from labd.scheduler.plan import SubmitOptions, load_suite, new_run
from labd.sessions import SessionRegistry
from labd.state import AuditEntry, Store
from pilotlab import domain as d

__all__ = ["SubmitOptions", "cancel_run", "submit_run"]


MAX_QUEUE_TIMEOUT_S = 366 * 86_400  # a run that waits a year for its device has waited long enough


def submit_run(store: Store, sessions: SessionRegistry, clock: Clock, who: d.Principal, o: SubmitOptions) -> d.Run:
    """Store a run of the suite on its target devices (one of them, connected and idle first, for --any)."""
    if not (math.isfinite(o.queue_timeout_s) and 0 <= o.queue_timeout_s <= MAX_QUEUE_TIMEOUT_S):
        raise d.Invalid(f"the queue timeout must be 0 (the lab's default) to {MAX_QUEUE_TIMEOUT_S} seconds, "
                        f"not {o.queue_timeout_s}")
    suite = load_suite(store, o.suite_id, o.version)
    devices = targets(store, suite, o.device, o.select)
    if o.any_device:
        if not o.select:
            raise d.Invalid("--any needs --select: it runs the suite on one device the selector matches")
        one = pick_one(sessions, devices)
        if one is None:
            raise d.Invalid(f"every device matching {o.select!r} is drained or quarantined")
        devices = [one]
    now = clock.now_ms()
    run = new_run(suite, devices, who, o, now)
    return store.create_run(run, audit=AuditEntry.by(who, "run.submit", run.id, _submitted(run, o), now))


def _submitted(run: d.Run, o: SubmitOptions) -> str:
    """The audit detail of a submission: suite, devices (up to three by name), selector, priority."""
    names = sorted({t.device_name for t in run.tasks})
    on = ", ".join(names) if len(names) <= 3 else f"{len(names)} devices"
    parts = [f"{run.suite_id}@{run.suite_version} on {on}"]
    if o.select:
        parts.append(f"select {o.select}")
    if o.priority:
        parts.append(f"priority {o.priority}")
    return ", ".join(parts)


def cancel_run(store: Store, clock: Clock, run_id: str, reason: str,
               who: d.Principal | None = None) -> tuple[d.Run, list[d.Attempt]]:
    """Cancel the run in the store, recorded as run.cancel by who; returns it and the attempts that were running
    (their devices must be told)."""
    reason, now = reason or "cancelled by a user", clock.now_ms()
    return store.cancel_run(run_id, reason, now, audit=AuditEntry.by(who, "run.cancel", run_id, reason, now))
