"""Submitting and cancelling runs."""

from __future__ import annotations

from labd.clock import Clock
from labd.scheduler.placement import pick_one, targets
from labd.scheduler.plan import SubmitOptions, load_suite, new_run
from labd.sessions import SessionRegistry
from labd.state import Store
from pilotlab import domain as d

__all__ = ["SubmitOptions", "cancel_run", "submit_run"]


def submit_run(store: Store, sessions: SessionRegistry, clock: Clock, who: d.Principal, o: SubmitOptions) -> d.Run:
    """Store a run of the suite on its target devices (one of them, connected and idle first, for --any)."""
    suite = load_suite(store, o.suite_id, o.version)
    devices = targets(store, suite, o.device, o.select)
    if o.any_device:
        if not o.select:
            raise d.Invalid("--any needs --select: it runs the suite on one device the selector matches")
        one = pick_one(sessions, devices)
        if one is None:
            raise d.Invalid(f"every device matching {o.select!r} is drained or quarantined")
        devices = [one]
    return store.create_run(new_run(suite, devices, who, o, clock.now_ms()))


def cancel_run(store: Store, clock: Clock, run_id: str, reason: str) -> tuple[d.Run, list[d.Attempt]]:
    """Cancel the run in the store; returns it and the attempts that were running (their devices must be told)."""
    return store.cancel_run(run_id, reason or "cancelled by a user", clock.now_ms())
