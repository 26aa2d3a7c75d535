"""AgentService: enrolment, and the one long-lived session per device (hello, heartbeats, results, acks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from labd.handlers import agents as h
from labd.lab import Lab
from labd.scheduler.dispatcher import Dispatcher
from labd.servicers.errors import abort, streaming, unary
from labd.servicers.tokens import call_token
from labd.sessions import AgentSession
from pilotlab import convert
from pilotlab import domain as d
from pilotlab.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger("labd.session")


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, lab: Lab, dispatcher: Dispatcher) -> None:
        self.lab = lab
        self.dispatcher = dispatcher
        self._background: set[asyncio.Future[None]] = set()

    @unary
    async def Enrol(self, request: agent_pb2.EnrolRequest,
                    context: grpc.aio.ServicerContext) -> agent_pb2.EnrolResponse:
        await asyncio.to_thread(self.lab.auth.require, call_token(context), [d.Role.AGENT], "enrol devices")
        dev, token = await asyncio.to_thread(
            h.enrol, self.lab, request.name, request.device_class, request.region, dict(request.tags),
            convert.capabilities_from_pb(request.capabilities), request.public_key)
        log.info("enrolled %s (%s, %s)", dev.name, dev.id, dev.device_class)
        return agent_pb2.EnrolResponse(device_id=dev.id, device_token=token)

    @streaming
    async def Session(self, request_iterator: AsyncIterator[agent_pb2.AgentMessage],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[agent_pb2.LabMessage]:
        lab = self.lab
        who = await asyncio.to_thread(lab.auth.require, call_token(context), [d.Role.DEVICE],
                                      "open a device session")
        assert who.device_id is not None
        device = await asyncio.to_thread(lab.store.get_device, who.device_id)
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("hello"):
            raise d.Invalid("a session must start with hello")
        caps = convert.capabilities_from_pb(first.hello.capabilities)
        still = set(first.hello.running_attempt_ids)
        session = AgentSession(device.id, device.name, max(1, caps.slots), device.public_key, running=still)
        lab.sessions.open(session)
        lab.m.sessions_opened.inc()
        reader: asyncio.Task[None] | None = None
        try:
            for run_id in await asyncio.to_thread(h.session_opened, lab, device.id, caps, still):
                await lab.events.notify(run_id)
            log.info("session open: %s (%d running)", device.name, len(still))
            yield agent_pb2.LabMessage(welcome=agent_pb2.Welcome(
                device_id=device.id, device_name=device.name,
                heartbeat_interval_ms=lab.config.heartbeat_interval_ms))
            reader = asyncio.create_task(self._read(session, request_iterator, context))
            self.dispatcher.kick()
            while (msg := await session.outbox.get()) is not None:
                yield msg
            if reader.done() and (exc := reader.exception()) is not None and isinstance(exc, d.LabError):
                await abort(context, exc)
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
            if lab.sessions.close(session):
                # The handler may be being cancelled (the agent went away): record the device offline in a
                # task of its own, which that cancellation cannot interrupt.
                done = asyncio.ensure_future(asyncio.to_thread(h.session_closed, lab, device.id))
                self._background.add(done)
                done.add_done_callback(self._background.discard)
                log.info("session closed: %s", device.name)

    async def _read(self, session: AgentSession, requests: AsyncIterator[agent_pb2.AgentMessage],
                    context: grpc.aio.ServicerContext) -> None:
        try:
            async for msg in requests:
                await self._handle(session, msg)
        finally:
            session.close()

    async def _handle(self, session: AgentSession, msg: agent_pb2.AgentMessage) -> None:
        lab, kind = self.lab, msg.WhichOneof("msg")
        if kind == "heartbeat":
            # A heartbeat renews leases; it never changes which attempts occupy the device's slots (those end
            # with an acknowledged finish), so a heartbeat sent before a finish cannot mark the device busy again.
            renew = [a for a in msg.heartbeat.running_attempt_ids if a in session.running]
            if renew:
                await asyncio.to_thread(h.heartbeat, lab, session.device_id, renew)
        elif kind == "progress":
            p = msg.progress
            await asyncio.to_thread(h.own_attempt, lab, session.device_id, p.attempt_id)
            run_id = await asyncio.to_thread(lab.store.set_progress, p.attempt_id, p.phase, p.fraction)
            await lab.events.notify(run_id)
        elif kind == "results":
            batch = convert.result_batch_from_pb(msg.results)
            await asyncio.to_thread(h.ingest, lab, session.device_id, batch, session.public_key)
            session.send(agent_pb2.LabMessage(ack=agent_pb2.Ack(attempt_id=batch.attempt_id, seq=batch.seq)))
        elif kind == "finished":
            fin = convert.finish_from_pb(msg.finished)
            run, ack = await asyncio.to_thread(h.finish, lab, session.device_id, fin)
            if ack:
                session.running.discard(fin.attempt_id)
                session.send(agent_pb2.LabMessage(ack=agent_pb2.Ack(attempt_id=fin.attempt_id, finished=True)))
                self.dispatcher.kick()
            if run is not None:
                await lab.events.notify(run.id)
        else:
            log.warning("ignoring session message %s from %s", kind, session.device_name)
