"""Device health: repeated infrastructure errors quarantine a device and queue a `smoke` health check on it (the
only work a quarantined device is given); a passing check returns it to service. Each decision is recorded in the
audit log as labd's own (actor labd, role system)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from labd.clock import Clock
from labd.scheduler.placement import targets
from labd.scheduler.plan import SubmitOptions, load_suite, new_run
from labd.state import AuditEntry, Store
from labd.telemetry import LabMetrics
from pilotlab import domain as d

log = logging.getLogger("labd.health")

QUARANTINE_AFTER = 3
HEALTH_SUITE = "smoke"
HEALTH_PRIORITY = 1000


@dataclass
class DeviceHealth:
    store: Store
    metrics: LabMetrics
    clock: Clock

    def after_attempt(self, device_id: str, infra_error: bool, known_errors: int | None = None) -> str | None:
        """Count the outcome; quarantine at the threshold and queue a health check. Returns the health run id.
        known_errors: the device's count of consecutive infrastructure errors as the caller read it (with the
        attempt, FinishRead.infra_errors), or None; a success on a device known to count none changes nothing, so
        it is not written."""
        if not infra_error and known_errors == 0:
            return None
        count = self.store.note_outcome(device_id, infra_error)
        if not infra_error or count < QUARANTINE_AFTER:
            return None
        dev = self.store.get_device(device_id)
        if dev.state != "active":
            return None
        why = f"{count} consecutive infrastructure errors"
        self.store.set_device_state(device_id, "quarantined",
                                    audit=AuditEntry.by(None, "device.quarantine", dev.name, why, self.clock.now_ms()))
        self.metrics.quarantines.inc()
        run = self._health_check(dev)
        log.warning("device %s quarantined after %d infrastructure errors; health check %s queued", dev.name,
                    count, run.id)
        return run.id

    def run_ended(self, run: d.Run) -> None:
        """A passing health check returns its device to service; a failing one leaves it quarantined."""
        if run.kind != "health" or not run.status.terminal or not run.tasks:
            return
        dev = self.store.get_device(run.tasks[0].device_id)
        if dev.state == "quarantined" and run.verdict == d.Verdict.PASS:
            audit = AuditEntry.by(None, "device.release", dev.name, f"passed its health check {run.id}",
                                  self.clock.now_ms())
            self.store.set_device_state(dev.id, "active", audit=audit)
            log.info("device %s passed its health check %s and is back in service", dev.name, run.id)

    def _health_check(self, dev: d.Device) -> d.Run:
        system = d.Principal(d.Role.ADMIN, "labd-health")
        opts = SubmitOptions(suite_id=HEALTH_SUITE, device=dev.name, priority=HEALTH_PRIORITY, kind="health")
        suite = load_suite(self.store, opts.suite_id)
        devices = targets(self.store, suite, opts.device, opts.select)
        now = self.clock.now_ms()
        run = new_run(suite, devices, system, opts, now)
        detail = f"health check of {dev.name} ({suite.id}@{suite.version}) after its quarantine"
        return self.store.create_run(run, audit=AuditEntry.by(None, "run.submit", run.id, detail, now))
