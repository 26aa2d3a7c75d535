"""Hands queued tasks to connected devices with free slots, and requeues attempts whose lease expired."""

from __future__ import annotations

import asyncio
import logging

from labd.handlers.agents import fail_attempt
from labd.lab import Lab
from labd.state.rows import now_ms
from pilotlab import convert
from pilotlab import domain as d
from pilotlab.tasks import ArtifactRef
from pilotlab.v1 import agent_pb2

log = logging.getLogger("labd.dispatcher")
TOUCH_EVERY_MS = 10_000  # connected devices' last-seen time, written for all of them at once


def _artifact(ref: ArtifactRef | None) -> d.ArtifactRecord | None:
    if ref is None:
        return None
    return d.ArtifactRecord(sha256=ref.sha256, size=ref.size, name=ref.name, kind=ref.kind, path="")


def assignment(task: d.Task, att: d.Attempt) -> agent_pb2.LabMessage:
    spec = task.spec
    assert spec is not None, "a stored task always has its spec"
    model = _artifact(spec.model)
    assert model is not None
    a = d.Assignment(attempt_id=att.id, task_id=task.id, run_id=task.run_id, task_name=task.name, model=model,
                     dataset=_artifact(spec.dataset), scenario=spec.scenario, settings=spec.settings.to_dict(),
                     execution_provider=spec.execution_provider,
                     accuracy=dict(spec.accuracy) if spec.accuracy else None, golden=_artifact(spec.golden),
                     conformance=dict(spec.conformance) if spec.conformance else None)
    return agent_pb2.LabMessage(assignment=convert.assignment_to_pb(a))


class Dispatcher:
    def __init__(self, lab: Lab, poll_s: float = 1.0) -> None:
        self._lab = lab
        self._kick = asyncio.Event()
        self._poll_s = poll_s
        self._next_reap = 0.0
        self._started_ms = now_ms()
        self._next_touch = 0

    def kick(self) -> None:
        self._kick.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self._kick.wait(), self._poll_s)
            except TimeoutError:
                pass
            self._kick.clear()
            try:
                await self.dispatch_once()
                if loop.time() >= self._next_reap:
                    self._next_reap = loop.time() + min(1.0, self._lab.config.lease_ms / 4000)
                    await self.reap_expired()
            except Exception:  # the loop must outlive one bad pass; the next kick retries
                log.exception("dispatch pass failed")

    async def dispatch_once(self) -> None:
        lab = self._lab
        waiting = await asyncio.to_thread(lab.store.queued_devices)
        for sess in lab.sessions.all():
            if sess.device_id not in waiting:
                continue
            while sess.free_slots > 0:
                claimed = await asyncio.to_thread(lab.store.claim_next_task, sess.device_id, now_ms(),
                                                  lab.config.lease_ms)
                if claimed is None:
                    break
                task, att = claimed
                sess.running.add(att.id)
                sess.send(assignment(task, att))
                lab.m.dispatch_latency.observe(max(0, now_ms() - task.queued_ms) / 1000)
                log.info("assigned %s (%s, attempt %d) to %s", task.name, task.id, att.number, sess.device_name)
                await lab.events.notify(task.run_id)

    async def reap_expired(self) -> None:
        lab = self._lab
        now = now_ms()
        for run_id in await asyncio.to_thread(lab.store.expire_queued, now):
            await lab.events.notify(run_id)
        if now >= self._next_touch:
            self._next_touch = now + TOUCH_EVERY_MS
            await asyncio.to_thread(lab.store.touch_devices, [s.device_id for s in lab.sessions.all()], now)
        if now < self._started_ms + lab.config.lease_ms:
            return  # a labd that just (re)started heard no heartbeats yet: agents get one lease to reconnect
        for att in await asyncio.to_thread(lab.store.running_attempts):
            if att.lease_expires_ms >= now or lab.sessions.get(att.device_id) is not None:
                continue
            run = await asyncio.to_thread(fail_attempt, lab, att, "lease expired: the agent stopped heartbeating",
                                          None, True)
            lab.m.lease_expiries.inc()
            log.warning("attempt %s lease expired; task requeued or ended", att.id)
            await lab.events.notify(run.id)
            self.kick()
