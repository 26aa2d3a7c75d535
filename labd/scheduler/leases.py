"""Leases: a claimed task runs under a lease its agent renews by heartbeating. When the attempt fails for a reason
of the infrastructure (the agent reported an error, restarted without it, or stopped heartbeating), the task is
requeued while attempts remain, moving off a lost device when the run allows it, else it ends in error. A fault of
the lab's own (an artifact in its store corrupt or missing, its storage full) ends the task in error at once, and is
never counted against the device."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from labd.clock import Clock
from labd.scheduler.health import DeviceHealth
from labd.scheduler.placement import relocate
from labd.sessions import AgentSession, SessionRegistry
from labd.state import Store
from labd.storage import StorageWatch, Unrecorded
from labd.stored_artifacts import task_fault
from labd.telemetry import LabMetrics
from pilotlab import domain as d

log = logging.getLogger("labd.leases")


@dataclass
class Leases:
    store: Store
    sessions: SessionRegistry
    health: DeviceHealth
    metrics: LabMetrics
    clock: Clock
    lease_ms: int
    max_attempts: int
    started_ms: int = field(init=False)
    leading_since_ms: int = 0  # when this labd took the reaper's lead (labd.scheduler.dispatcher)
    storage: StorageWatch = field(init=False)

    def __post_init__(self) -> None:
        self.started_ms = self.clock.now_ms()
        self.storage = StorageWatch.for_db(str(getattr(self.store, "url", "")))

    def claim(self, device_id: str) -> tuple[d.Task, d.Attempt] | None:
        """The device's next queued task, with a new attempt leased to it from now."""
        return self.store.claim_next_task(device_id, self.clock.now_ms(), self.lease_ms)

    def renew(self, session: AgentSession, reported: Iterable[str]) -> list[str]:
        """Renew the leases of the attempts a heartbeat reports that the session runs; returns them. A heartbeat
        never changes which attempts occupy the device's slots (those end with an acknowledged finish), so one
        sent before a finish cannot mark the device busy again."""
        renew = [a for a in reported if a in session.running]
        if renew:
            self.store.renew_leases(session.device_id, renew, self.clock.now_ms() + self.lease_ms)
        return renew

    def lost(self) -> list[d.Attempt]:
        """Running attempts whose lease ran out on a device with no session here. None while labd is in its
        first lease after starting or after taking the lead from another replica: agents heard no heartbeat yet
        and get one lease to reconnect."""
        now = self.clock.now_ms()
        if now < max(self.started_ms, self.leading_since_ms) + self.lease_ms:
            return []
        return [att for att in self.store.running_attempts()
                if att.lease_expires_ms < now and self.sessions.get(att.device_id) is None]

    def fail(self, att: d.Attempt, reason: str, fin: d.AttemptFinish | None = None,
             device_lost: bool = False) -> d.Run:
        """An infrastructure failure: requeue the task while attempts remain (to another matching device when the
        run allows it and the device was lost), else end it in error. Counts toward the device's health, unless the
        lab's own copy of an artifact the task needs turns out corrupt or missing: then it is the lab's fault."""
        task = self.store.get_task(att.task_id)
        if fin is not None:  # the agent says what failed; a failed download may be the lab's copy (hashed again)
            fault = task_fault(self.store, task.spec, force="artifact" in fin.reason.lower())
            if fault:
                return self.lab_fault(att, fault, fin)
        requeue = task.attempts < self.max_attempts
        why = reason if requeue else f"{reason}; gave up after {task.attempts} attempts"
        run = self.store.finish_attempt(fin or d.AttemptFinish(att.id, d.Outcome.ERROR, reason=reason),
                                        task_status=d.Status.ERROR, verdict=None, metrics={}, reason=why,
                                        now_ms=self.clock.now_ms(), requeue=requeue)
        if requeue:
            self.metrics.requeues.inc()
            if device_lost:
                run = relocate(self.store, self.sessions, run, att)
        self.health.run_ended(run)
        self.health.after_attempt(att.device_id, infra_error=True)
        return run

    def lab_fault(self, att: d.Attempt, reason: str, fin: d.AttemptFinish | None = None) -> d.Run:
        """A fault of the lab's own: the task ends in error with the reason, not requeued (no device would do
        better) and not counted against the device. When the store is full and cannot record it, the lab keeps it
        in memory (shown by GetRun and WatchRun) and records it once it can; returns the run as the lab knows it."""
        try:
            return self._record_fault(att, reason, fin)
        except Exception as e:
            if self.storage.noted(e) is None:
                raise
        run_id = self.store.get_task(att.task_id).run_id
        if not self.storage.fault_of(att.id):
            log.warning("attempt %s ended in a lab fault the full store cannot record: kept in memory until it can",
                        att.id)
        self.storage.remember(Unrecorded(att.id, att.task_id, run_id, reason))
        return self.storage.overlay(self.store.get_run(run_id))

    def _record_fault(self, att: d.Attempt, reason: str, fin: d.AttemptFinish | None = None) -> d.Run:
        run = self.store.finish_attempt(fin or d.AttemptFinish(att.id, d.Outcome.ERROR, reason=reason),
                                        task_status=d.Status.ERROR, verdict=None, metrics={}, reason=reason,
                                        now_ms=self.clock.now_ms())
        self.storage.forget(att.id)
        self.health.run_ended(run)
        if run.kind == "health":  # no verdict on the device: it stays as it was
            dev = self.store.get_device(att.device_id)
            log.warning("health check %s of %s could not run (a fault of the lab's, not counted): it stays %s; once "
                        "the lab is fixed, `labctl devices release %s`", run.id, dev.name, dev.state, dev.name)
        return run

    def storage_full(self, device_id: str, attempt_id: str, reason: str) -> d.Run | None:
        """The device's running attempt ends in error because the lab's storage is full (its results cannot be
        stored); returns the run as the lab knows it, or None when the attempt is not this device's or had ended
        already (in memory too)."""
        try:
            att = self.store.get_attempt(attempt_id)
        except d.NotFound:
            return None
        if att.device_id != device_id or att.status != d.Status.RUNNING or self.storage.fault_of(att.id):
            return None
        return self.lab_fault(att, reason)

    def record_faults(self) -> list[str]:
        """Record the lab faults kept in memory while the store was full; returns the runs that changed. Stops at
        the first that still cannot be written."""
        changed = []
        for u in self.storage.unrecorded():
            att = self.store.get_attempt(u.attempt_id)
            if att.status != d.Status.RUNNING:
                self.storage.forget(u.attempt_id)
                continue
            self._record_fault(att, u.reason)
            log.info("attempt %s: lab fault recorded now that the store can write", att.id)
            changed.append(u.run_id)
        return changed
