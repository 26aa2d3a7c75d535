"""AgentService: enrolment, and the one long-lived session per device (hello, heartbeats, results, acks). Wire
messages become domain events (pilotlab.convert) on the way in and out; each event is one handler call, in order.
A session is read ahead within its window of result batches in flight (labd.sessions.BatchWindow); a full store ends
the attempt concerned as the lab's fault and the session goes on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import grpc

from labd.handlers import agents as h
from labd.handlers import tokens
from labd.lab import Lab
from labd.scheduler.dispatcher import Dispatcher
from labd.servicers.decoding import check
from labd.servicers.errors import abort, streaming, unary
from labd.servicers.tokens import call_token
from labd.sessions import AgentSession, GroupTrips, ThreadBatch
from labd.state.batches import SignedBatch
from pilotlab import convert
from pilotlab import domain as d
from pilotlab import messages as msg
from pilotlab.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger("labd.session")

MAX_BATCHES_PER_TRIP = 32  # a session's result batches read ahead and handed to one ingest group together, at most
MAX_ACKS_PER_MESSAGE = 64  # Acks queued together for an agent that takes them in one message (pilotlab.messages.ACKS)


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, lab: Lab, dispatcher: Dispatcher) -> None:
        self.lab = lab
        self.dispatcher = dispatcher
        self._background: set[asyncio.Future[None]] = set()
        self._heartbeats: ThreadBatch[tuple[str | None, AgentSession, tuple[str, ...]]] = ThreadBatch(
            self._heartbeat, around=lambda jobs: self.lab.auth.batch([credential for credential, _, _ in jobs]))
        # The result batches of all sessions, stored in groups: one worker-thread trip, one blob append and one
        # transaction per group (_ingest_group).
        self._ingests: GroupTrips[tuple[AgentSession, list[agent_pb2.ResultBatch]],
                                  list[tuple[agent_pb2.ResultBatch, Exception | None]]] = GroupTrips(
            self._ingest_group)
        lab.sessions.register_metrics(lab.metrics.registry)

    @unary
    async def Enrol(self, request: agent_pb2.EnrolRequest,
                    context: grpc.aio.ServicerContext) -> agent_pb2.EnrolResponse:
        lab = self.lab
        who = await asyncio.to_thread(lab.auth.require, call_token(context), [d.Role.AGENT], "enrol devices")
        await asyncio.to_thread(tokens.take_enrolment, lab.store, who)
        try:
            dev, token = await asyncio.to_thread(
                h.enrol, lab.store, lab.clock, request.name, request.device_class, request.region,
                dict(request.tags), convert.capabilities_from_pb(request.capabilities), request.public_key, who)
        except d.LabError:
            await asyncio.to_thread(tokens.give_back_enrolment, lab.store, who)
            raise
        log.info("enrolled %s (%s, %s)", dev.name, dev.id, dev.device_class)
        return agent_pb2.EnrolResponse(device_id=dev.id, device_token=token)

    @streaming
    async def Session(self, request_iterator: AsyncIterator[agent_pb2.AgentMessage],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[agent_pb2.LabMessage]:
        lab = self.lab
        credential = call_token(context)
        who = await asyncio.to_thread(lab.auth.require, credential, [d.Role.DEVICE], "open a device session")
        assert who.device_id is not None
        device = await asyncio.to_thread(lab.store.get_device, who.device_id)
        first = check(await anext(aiter(request_iterator), None))
        hello = convert.agent_event_from_pb(first) if first is not None else None
        if not isinstance(hello, msg.Hello):
            raise d.Invalid("a session must start with hello")
        still = set(hello.running)
        session = AgentSession(device.id, device.name, max(1, hello.capabilities.slots), device.public_key,
                               running=still, acks=msg.ACKS in hello.features)
        lab.sessions.open(session)
        lab.metrics.sessions_opened.inc()
        reader: asyncio.Task[None] | None = None
        try:
            try:
                changed = await asyncio.to_thread(h.session_opened, lab.store, lab.leases, lab.clock, device.id,
                                                  hello.capabilities, still)
            except Exception as e:
                if lab.leases.storage.noted(e) is None:
                    raise
                changed = []  # a full store: the device is served all the same
            for run_id in changed:
                await lab.events.notify(run_id)
            log.info("session open: %s (%d running)", device.name, len(still))
            yield convert.lab_event_to_pb(msg.Welcome(device_id=device.id, device_name=device.name,
                                                      heartbeat_interval_ms=lab.config.heartbeat_interval_ms,
                                                      features=msg.LAB_FEATURES))
            reader = asyncio.create_task(self._read(session, request_iterator, credential))
            self.dispatcher.kick()
            held: list[msg.LabEvent | None] = []  # the event read after a run of Acks
            while (event := held.pop() if held else await session.outbox.get()) is not None:
                if session.error is not None:  # ended from outside (a refused heartbeat): nothing more is sent
                    break
                if session.acks and isinstance(event, msg.Ack) and not session.outbox.empty():
                    event = _coalesce(event, session.outbox, held)
                yield convert.lab_event_to_pb(event)
                for ack in event.acks if isinstance(event, msg.Acks) else (event,):
                    if isinstance(ack, msg.Ack) and not ack.finished:
                        session.window.acked(ack.attempt_id, ack.seq)  # written: room for the next batch
            exc = session.error
            if exc is None and reader.done() and not reader.cancelled():
                exc = reader.exception()
            if exc is not None:
                if not isinstance(exc, d.LabError):
                    log.error("session of %s failed: %s: %s", device.name, type(exc).__name__, exc, exc_info=exc)
                    exc = d.LabError(f"the lab could not handle a message from {device.name}: "
                                     f"{type(exc).__name__}; see labd's log")
                log.warning("session of %s closed: %s", device.name, exc)
                await abort(context, exc)
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
            elif reader is not None and not reader.cancelled():
                reader.exception()  # seen (a session ended by session.error may leave the reader's own error unread)
            if lab.sessions.close(session):
                # The handler may be being cancelled (the agent went away): record the device offline in a
                # task of its own, which that cancellation cannot interrupt.
                done = asyncio.ensure_future(asyncio.to_thread(self._closed, device.id))
                self._background.add(done)
                done.add_done_callback(self._background.discard)
                log.info("session closed: %s", device.name)

    def _closed(self, device_id: str) -> None:
        try:
            h.session_closed(self.lab.store, self.lab.clock, device_id)
        except Exception as e:
            if self.lab.leases.storage.noted(e) is None:
                raise

    async def _pump(self, session: AgentSession, requests: AsyncIterator[agent_pb2.AgentMessage],
                    inbox: asyncio.Queue[agent_pb2.AgentMessage | None], credential: str | None) -> None:
        """Read the session's messages ahead of their handling, within its window of result batches in flight: at
        the bound it stops reading, and HTTP/2 flow control holds the agent's sends back. Heartbeats are handled
        here, as read, not in turn: they renew leases (of attempts the session still runs) and check the
        credential, whatever is queued before them."""
        try:
            async for m in requests:
                check(m)  # a message that did not decode ends the session INVALID_ARGUMENT
                if session.error is not None:  # ended from outside (a refused heartbeat): read no further
                    break
                kind = m.WhichOneof("msg")
                if kind == "heartbeat":
                    # A credential revoked (or whose agent token was) while connected ends the session within one
                    # heartbeat: the error closes it with UNAUTHENTICATED. Checked, and the leases renewed, together
                    # with the other sessions' heartbeats of the moment, in one worker-thread trip.
                    job = (credential, session, tuple(m.heartbeat.running_attempt_ids))
                    self._heartbeats.submit_nowait(job).add_done_callback(session_failed_by(session))
                    continue
                if kind == "results":
                    session.window.took(m.results.attempt_id, m.results.seq, m.ByteSize())
                elif kind == "result_batches":
                    if len(m.result_batches.batches) > msg.MAX_BATCHES_PER_MESSAGE:
                        raise d.Invalid(f"a ResultBatches message carries {len(m.result_batches.batches)} result "
                                        f"batches; send at most {msg.MAX_BATCHES_PER_MESSAGE} in one")
                    for r in m.result_batches.batches:
                        session.window.took(r.attempt_id, r.seq, r.ByteSize())
                inbox.put_nowait(m)
                await session.window.room()
        finally:
            inbox.put_nowait(None)

    async def _read(self, session: AgentSession, requests: AsyncIterator[agent_pb2.AgentMessage],
                    credential: str | None) -> None:
        inbox: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue()
        pump = asyncio.create_task(self._pump(session, requests, inbox, credential))
        held: list[agent_pb2.AgentMessage | None] = []  # the message read after a run of result batches
        try:
            while (m := held.pop() if held else await inbox.get()) is not None:
                if session.error is not None:  # ended from outside (a refused heartbeat): handle nothing more
                    break
                if (results := _batches(m)) is not None:
                    # These batches and those read ahead right behind them: checked, verified and stored in one
                    # group with other sessions' batches (_ingest_group), off the event loop, and acknowledged in
                    # order.
                    while len(results) < MAX_BATCHES_PER_TRIP and not inbox.empty():
                        nxt = inbox.get_nowait()
                        if nxt is None or (more := _batches(nxt)) is None:
                            held.append(nxt)
                            break
                        results.extend(more)
                    if results:
                        await self._results(session, results)
                    continue
                event = convert.agent_event_from_pb(m)
                if event is None or isinstance(event, msg.Hello):
                    log.warning("ignoring session message %s from %s", m.WhichOneof("msg"), session.device_name)
                    continue
                await self._handle(session, event)
            await pump  # a failed read ends the session
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            session.close()

    async def _handle(self, session: AgentSession, event: msg.AgentEvent) -> None:
        try:
            await self._handle_event(session, event)
        except Exception as e:
            if (full := self.lab.leases.storage.noted(e)) is None:
                raise
            if isinstance(event, d.AttemptFinish):
                await self._storage_full(session, event.attempt_id, None, str(full))

    async def _storage_full(self, session: AgentSession, attempt_id: str, seq: int | None, why: str) -> None:
        """The lab's storage is full: the attempt whose results (seq) or finish (None) cannot be stored ends in error
        (the lab's fault), its batch is answered with an Ack carrying the reason and the device told to stop it;
        heartbeats and progress wait for space. The session goes on."""
        lab = self.lab
        run = await asyncio.to_thread(lab.leases.storage_full, session.device_id, attempt_id, why)
        if run is not None:
            log.warning("attempt %s on %s ended: %s", attempt_id, session.device_name, why)
            await lab.events.notify(run.id)
        if seq is not None:
            session.send(msg.Ack(attempt_id=attempt_id, seq=seq, error=why))
            if run is not None:
                session.send(msg.Cancel(attempt_id=attempt_id, reason=why))
        else:
            session.running.discard(attempt_id)
            session.send(msg.Ack(attempt_id=attempt_id, finished=True))
            self.dispatcher.kick()

    def _heartbeat(self, job: tuple[str | None, AgentSession, tuple[str, ...]]) -> None:
        """One heartbeat, in a worker thread: its credential must still be live; then the leases of what the device
        runs are renewed (while the storage is full, they wait for space: the error is noted, not raised)."""
        credential, session, running = job
        self.lab.auth.record(credential)
        if not running:  # an idle device's heartbeat renews nothing
            return
        try:
            h.heartbeat(self.lab.leases, session, running)
        except Exception as e:
            if self.lab.leases.storage.noted(e) is None:
                raise

    def _ingest_group(self, jobs: list[tuple[AgentSession, list[agent_pb2.ResultBatch]]]
                      ) -> list[list[tuple[agent_pb2.ResultBatch, Exception | None]]]:
        """The result batches of every session that sent some since the last trip, in one worker-thread trip: each
        checked and verified straight from the wire (its columns go from the message into the bytes the device
        signed: numpy, no per-sample Python objects), then those admitted stored together (handlers.ingest_many:
        one blob append with one fdatasync, one transaction). For each job, each batch in order with None when
        stored (or a resend) or the error that refused it. A failure of the store itself (a full disk) goes to
        every batch of the group, none of which is stored."""
        uploads: list[tuple[str, bytes, SignedBatch]] = []
        where: list[tuple[int, int]] = []  # (job, batch) of each upload
        out: list[list[tuple[agent_pb2.ResultBatch, Exception | None]]] = [[(r, None) for r in rs] for _, rs in jobs]
        try:
            self.lab.leases.storage.check()  # once the storage is full, no attempt keeps part of its results
        except Exception as e:  # noqa: BLE001 - each batch is answered with it on the event loop
            return [[(r, e) for r in rs] for _, rs in jobs]
        for j, (session, results) in enumerate(jobs):
            for i, r in enumerate(results):
                try:
                    h.check_shape(r.attempt_id, r.seq, {c: len(getattr(r, c)) for c in h.BATCH_COLUMNS})
                    batch = SignedBatch.of(r.attempt_id, r.seq, r.kind, {c: getattr(r, c) for c in h.BATCH_COLUMNS},
                                           r.signature)
                except d.LabError as e:
                    out[j][i] = (r, e)
                    continue
                uploads.append((session.device_id, session.public_key, batch))
                where.append((j, i))
        self.lab.metrics.ingest_group_batches.observe(len(uploads))
        try:
            outcomes = h.ingest_many(self.lab.store, self.lab.metrics, self.lab.clock, uploads)
        except Exception as e:  # noqa: BLE001 - nothing of the group was stored: each batch is answered with it
            for j, i in where:
                out[j][i] = (out[j][i][0], e)
            return out
        for (j, i), outcome in zip(where, outcomes, strict=True):
            if isinstance(outcome, Exception):
                out[j][i] = (out[j][i][0], outcome)
        return out

    async def _results(self, session: AgentSession, results: list[agent_pb2.ResultBatch]) -> None:
        for r, e in await self._ingests.submit((session, results)):
            if e is None:
                session.send(msg.Ack(attempt_id=r.attempt_id, seq=r.seq))
            elif isinstance(e, h.BatchRefused):
                # Logged, stored nowhere, and answered with an Ack carrying the error, so the agent drops it
                # from its outbox; the session goes on (closing it would only make the agent resend the batch).
                log.warning("refused a result batch from %s: %s", session.device_name, e)
                session.send(msg.Ack(attempt_id=r.attempt_id, seq=r.seq, error=str(e)))
            elif (full := self.lab.leases.storage.noted(e)) is None:
                raise e
            else:
                await self._storage_full(session, r.attempt_id, r.seq, str(full))

    async def _handle_event(self, session: AgentSession, event: msg.AgentEvent) -> None:
        lab = self.lab
        if isinstance(event, msg.Progress):
            run_id = await asyncio.to_thread(h.progress, lab.store, session.device_id, event)
            await lab.events.notify(run_id)
        elif isinstance(event, d.AttemptFinish):
            finished: tuple[str | None, bool] = await asyncio.to_thread(
                h.finish_attempt, lab.store, lab.leases, lab.health, lab.clock, session.device_id, event)
            changed, ack = finished
            if ack:
                session.running.discard(event.attempt_id)
                session.send(msg.Ack(attempt_id=event.attempt_id, finished=True))
                self.dispatcher.kick()
            if changed is not None:
                await lab.events.notify(changed)


def _batches(m: agent_pb2.AgentMessage) -> list[agent_pb2.ResultBatch] | None:
    """The result batches a message carries, in order; None when it carries none (another kind of message)."""
    kind = m.WhichOneof("msg")
    if kind == "results":
        return [m.results]
    if kind == "result_batches":
        return list(m.result_batches.batches)
    return None


def _coalesce(first: msg.Ack, outbox: asyncio.Queue[msg.LabEvent | None], held: list[msg.LabEvent | None]
              ) -> msg.Ack | msg.Acks:
    """first and the Acks queued right behind it, as one message (at most MAX_ACKS_PER_MESSAGE); the event that
    ended the run, if any, goes to held."""
    acks = [first]
    while len(acks) < MAX_ACKS_PER_MESSAGE and not outbox.empty():
        nxt = outbox.get_nowait()
        if not isinstance(nxt, msg.Ack):
            held.append(nxt)
            break
        acks.append(nxt)
    return msg.Acks(tuple(acks)) if len(acks) > 1 else first


def session_failed_by(session: AgentSession) -> Callable[[asyncio.Future[None]], None]:
    """A done-callback that ends the session with the job's error, if it failed."""
    def done(fut: asyncio.Future[None]) -> None:
        if not fut.cancelled() and (e := fut.exception()) is not None:
            session.fail(e)
    return done
