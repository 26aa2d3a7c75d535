"""Leases: a claimed task runs under a lease its agent renews by heartbeating. When the attempt fails for a reason
of the infrastructure (the agent reported an error, restarted without it, or stopped heartbeating), the task is
requeued while attempts remain, moving off a lost device when the run allows it, else it ends in error."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from labd.clock import Clock
from labd.scheduler.health import DeviceHealth
from labd.scheduler.placement import relocate
from labd.sessions import AgentSession, SessionRegistry
from labd.state import Store
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

    def __post_init__(self) -> None:
        self.started_ms = self.clock.now_ms()

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
        first lease after starting: agents heard no heartbeat yet and get one lease to reconnect."""
        now = self.clock.now_ms()
        if now < self.started_ms + self.lease_ms:
            return []
        return [att for att in self.store.running_attempts()
                if att.lease_expires_ms < now and self.sessions.get(att.device_id) is None]

    def fail(self, att: d.Attempt, reason: str, fin: d.AttemptFinish | None = None,
             device_lost: bool = False) -> d.Run:
        """An infrastructure failure: requeue the task while attempts remain (to another matching device when the
        run allows it and the device was lost), else end it in error. Counts toward the device's health."""
        task = self.store.get_task(att.task_id)
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
