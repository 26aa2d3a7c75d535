"""Device health: repeated infrastructure errors quarantine a device, a passing `smoke` health check releases
it; admins drain (no new work) and release devices by hand."""

from __future__ import annotations

import logging

from labd.handlers.runs import SubmitOptions, submit_run
from labd.lab import Lab
from pilotlab import domain as d

log = logging.getLogger("labd.health")

QUARANTINE_AFTER = 3
HEALTH_SUITE = "smoke"
HEALTH_PRIORITY = 1000
STATES = ("active", "draining", "quarantined")


def after_attempt(lab: Lab, device_id: str, infra_error: bool) -> str | None:
    """Count the outcome; quarantine at the threshold and queue a health check. Returns the health run id."""
    count = lab.store.note_outcome(device_id, infra_error)
    if not infra_error or count < QUARANTINE_AFTER:
        return None
    dev = lab.store.get_device(device_id)
    if dev.state != "active":
        return None
    lab.store.set_device_state(device_id, "quarantined")
    lab.m.quarantines.inc()
    system = d.Principal(d.Role.ADMIN, "labd-health")
    run = submit_run(lab, system, SubmitOptions(suite_id=HEALTH_SUITE, device=dev.name, priority=HEALTH_PRIORITY,
                                                kind="health"))
    log.warning("device %s quarantined after %d infrastructure errors; health check %s queued", dev.name, count,
                run.id)
    return run.id


def health_run_ended(lab: Lab, run: d.Run) -> None:
    """A passing health check returns its device to service; a failing one leaves it quarantined."""
    if run.kind != "health" or not run.status.terminal or not run.tasks:
        return
    dev = lab.store.get_device(run.tasks[0].device_id)
    if dev.state == "quarantined" and run.verdict == d.Verdict.PASS:
        lab.store.set_device_state(dev.id, "active")
        log.info("device %s passed its health check %s and is back in service", dev.name, run.id)


def set_state(lab: Lab, name: str, state: str) -> d.Device:
    if state not in STATES:
        raise d.Invalid(f"unknown device state {state!r}; use one of {', '.join(STATES)}")
    dev = lab.store.get_device_by_name(name)
    return lab.store.set_device_state(dev.id, state)
