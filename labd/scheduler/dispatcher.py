"""Hands queued tasks to connected devices with free slots (none while the lab's storage is full; a task whose
artifacts are corrupt or missing in the lab's store ends in error, the lab's fault, without reaching the device),
tells devices to stop cancelled attempts, requeues attempts whose lease expired, and records the lab faults kept in
memory while the store was full: one loop, woken by a kick, a hint from another replica, or a timer.

With several labd replicas on one PostgreSQL, each dispatches only to the agents connected to it, claiming tasks
with SELECT … FOR UPDATE SKIP LOCKED; the single-writer duties (expired leases, queue timeouts, devices of a
vanished replica) run on the replica that holds the store's `reaper` leadership (an advisory lock). Cancels made on
another replica reach this one's agents by hint (labd.hints) or, if the hint is lost, at the next poll."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from labd.clock import Clock
from labd.events import RunEvents
from labd.hints import Hints
from labd.scheduler.leases import Leases
from labd.sessions import AgentSession, SessionRegistry
from labd.state import Store
from labd.stored_artifacts import task_fault
from labd.telemetry import LabMetrics
from pilotlab import domain as d
from pilotlab import messages as msg
from pilotlab.tasks import ArtifactRef

log = logging.getLogger("labd.dispatcher")
TOUCH_EVERY_MS = 10_000  # connected devices' last-seen time, written for all of them at once
CANCEL_GRACE_S = 30.0  # how long a cancelled attempt may keep its device's slot before the lab frees it
STALE_AFTER_MS = 3 * TOUCH_EVERY_MS  # a device shown online whose labd stopped touching it is offline


def _artifact(ref: ArtifactRef | None) -> d.ArtifactRecord | None:
    if ref is None:
        return None
    return d.ArtifactRecord(sha256=ref.sha256, size=ref.size, name=ref.name, kind=ref.kind, path="")


def assignment(task: d.Task, att: d.Attempt) -> d.Assignment:
    """What the device is told to run: one attempt of the task, from its stored spec."""
    spec = task.spec
    assert spec is not None, "a stored task always has its spec"
    model = _artifact(spec.model)
    assert model is not None
    return d.Assignment(attempt_id=att.id, task_id=task.id, run_id=task.run_id, task_name=task.name, model=model,
                        dataset=_artifact(spec.dataset), scenario=spec.scenario, settings=spec.settings.to_dict(),
                        execution_provider=spec.execution_provider,
                        accuracy=dict(spec.accuracy) if spec.accuracy else None, golden=_artifact(spec.device_golden),
                        conformance=dict(spec.conformance) if spec.conformance else None)


class Dispatcher:
    def __init__(self, store: Store, sessions: SessionRegistry, leases: Leases, events: RunEvents,
                 metrics: LabMetrics, clock: Clock, poll_s: float = 1.0, hints: Hints | None = None) -> None:
        self._store = store
        self._sessions = sessions
        self._leases = leases
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._kick = asyncio.Event()
        self._poll_s = poll_s
        self._next_reap = 0.0
        self._next_touch = 0
        self._hints = hints
        self._leader = store.leadership("reaper")
        self.leading: bool | None = None  # None until the first check; False: another replica leads
        self._told: set[str] = set()  # running attempts this replica told to stop
        self._next_cancel_check = 0.0

    def kick(self, others: bool = False) -> None:
        """Wake the loop; others: the work may be for agents of other replicas too (a hint wakes them)."""
        self._kick.set()
        if others and self._hints is not None:
            self._hints.work()

    def close(self) -> None:
        self._leader.release()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self._poll_s)
            self._kick.clear()
            try:
                await self.dispatch_once()
                if self._store.replicated and self._clock.monotonic() >= self._next_cancel_check:
                    self._next_cancel_check = self._clock.monotonic() + self._poll_s
                    await self.stop_cancelled()
                if self._clock.monotonic() >= self._next_reap:
                    self._next_reap = self._clock.monotonic() + min(1.0, self._leases.lease_ms / 4000)
                    await self.reap_expired()
            except Exception as e:  # the loop must outlive one bad pass; the next kick retries
                if self._leases.storage.noted(e) is None:  # a full store is one line when it fills, not one a pass
                    log.exception("dispatch pass failed")

    async def dispatch_once(self) -> None:
        storage = self._leases.storage
        if await asyncio.to_thread(storage.full_reason):
            return  # nothing new starts while results could not be stored
        if storage.unrecorded():
            for run_id in await asyncio.to_thread(self._leases.record_faults):
                await self._events.notify(run_id)
        waiting = await asyncio.to_thread(self._store.queued_devices)
        for sess in self._sessions.all():
            if sess.device_id not in waiting:
                continue
            while sess.free_slots > 0:
                claimed = await asyncio.to_thread(self._leases.claim, sess.device_id)
                if claimed is None:
                    break
                task, att = claimed
                fault = await asyncio.to_thread(task_fault, self._store, task.spec)
                if fault:  # the lab's fault (logged once per bad file): the device never sees the task
                    await asyncio.to_thread(self._leases.lab_fault, att, fault)
                    await self._events.notify(task.run_id)
                    continue
                sess.running.add(att.id)
                sess.send(msg.Assign(assignment(task, att)))
                self._metrics.dispatch_latency.observe(max(0, self._clock.now_ms() - task.queued_ms) / 1000)
                log.info("assigned %s (%s, attempt %d) to %s", task.name, task.id, att.number, sess.device_name)
                await self._events.notify(task.run_id)

    async def reap_expired(self) -> None:
        now = self._clock.now_ms()
        if now >= self._next_touch:  # every replica, for its own agents
            self._next_touch = now + TOUCH_EVERY_MS
            await asyncio.to_thread(self._store.touch_devices, [s.device_id for s in self._sessions.all()], now)
        leading = await asyncio.to_thread(self._leader.held)
        if leading and self.leading is False:  # taken over: the last leader's agents get a lease to come here
            self._leases.leading_since_ms = now
        self.leading = leading
        if not leading:
            return
        for run_id in await asyncio.to_thread(self._store.expire_queued, now):
            await self._events.notify(run_id)
        if self._store.replicated:
            await asyncio.to_thread(self._store.mark_stale_offline, now - STALE_AFTER_MS)
        for att in await asyncio.to_thread(self._leases.lost):
            run = await asyncio.to_thread(self._leases.fail, att, "lease expired: the agent stopped heartbeating",
                                          None, True)
            self._metrics.lease_expiries.inc()
            log.warning("attempt %s lease expired; task requeued or ended", att.id)
            await self._events.notify(run.id)
            self.kick(others=True)

    async def stop_cancelled(self) -> None:
        """Tell this replica's agents to stop the attempts another replica cancelled (on its hint, and at every
        poll in case the hint was lost)."""
        running = {a: s for s in self._sessions.all() for a in s.running}
        self._told &= running.keys()
        ask = [a for a in running if a not in self._told]
        if not ask:
            return
        loop = asyncio.get_running_loop()
        for att_id, reason in await asyncio.to_thread(self._store.cancelled_among, ask):
            sess = running[att_id]
            if att_id in sess.running and att_id not in self._told:
                self._told.add(att_id)
                sess.send(msg.Cancel(attempt_id=att_id, reason=reason))
                loop.call_later(CANCEL_GRACE_S, self._force_free, sess, att_id, CANCEL_GRACE_S)
                log.info("told %s to stop attempt %s, cancelled on another replica", sess.device_name, att_id)

    async def cancel_hinted(self, run_id: str) -> None:
        await self.stop_cancelled()

    async def run_cancelled(self, run: d.Run, running: list[d.Attempt], grace_s: float = CANCEL_GRACE_S) -> None:
        """Tell the devices of a cancelled run's running attempts to stop. Graceful: the agent stops at its next
        query boundary and reports. Forced: after the grace period the device's slot is free for new work
        whatever the agent says."""
        loop = asyncio.get_running_loop()
        for att in running:
            sess = self._sessions.get(att.device_id)
            if sess is not None:
                self._told.add(att.id)
                sess.send(msg.Cancel(attempt_id=att.id, reason=run.reason))
                loop.call_later(grace_s, self._force_free, sess, att.id, grace_s)
        if self._hints is not None:
            self._hints.cancel(run.id)
        await self._events.notify(run.id)
        self.kick()

    def _force_free(self, sess: AgentSession, attempt_id: str, grace_s: float) -> None:
        if attempt_id in sess.running:
            log.warning("attempt %s did not stop within %ss of its cancel; freeing the device", attempt_id, grace_s)
            sess.running.discard(attempt_id)
            self.kick()
