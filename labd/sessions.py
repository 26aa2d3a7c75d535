"""Live agent sessions: one per connected device, each with an outbound queue of domain events (pilotlab.messages)
that the session's servicer turns into wire messages, and a bounded window of the result batches it has read and
not yet acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from pilotlab.messages import LabEvent

T = TypeVar("T")
R = TypeVar("R")
MAX_BATCHES_IN_FLIGHT = 8
MAX_BYTES_IN_FLIGHT = 32 << 20


@dataclass
class WindowStats:
    """The sessions' windows over labd's life, for /metrics."""

    peak_batches: int = 0
    peak_bytes: int = 0
    pauses: int = 0  # times a session's reading stopped at its window's bound


class BatchWindow:
    """Result batches read from one session and not yet acknowledged on the wire (their Ack written to the stream).
    Bounded: at max_batches, or at max_bytes of batches, labd stops reading the session until Acks go out; HTTP/2
    flow control then holds the agent's sends back, which wait in its durable outbox. Nothing is refused or lost,
    and what labd holds for one session stays under the bound (plus one message of at most the receive limit)."""

    def __init__(self, max_batches: int = MAX_BATCHES_IN_FLIGHT, max_bytes: int = MAX_BYTES_IN_FLIGHT,
                 stats: WindowStats | None = None) -> None:
        self.max_batches, self.max_bytes = max_batches, max_bytes
        self.stats = stats or WindowStats()
        self.batches = self.bytes = 0
        self._sizes: dict[tuple[str, int], list[int]] = {}
        self._room = asyncio.Event()
        self._room.set()

    @property
    def full(self) -> bool:
        return self.batches >= self.max_batches or self.bytes >= self.max_bytes

    def took(self, attempt_id: str, seq: int, nbytes: int) -> None:
        """A result batch of nbytes was read from the session."""
        self._sizes.setdefault((attempt_id, seq), []).append(nbytes)
        self.batches += 1
        self.bytes += nbytes
        self.stats.peak_batches = max(self.stats.peak_batches, self.batches)
        self.stats.peak_bytes = max(self.stats.peak_bytes, self.bytes)
        if self.full:
            self._room.clear()

    def acked(self, attempt_id: str, seq: int) -> None:
        """The Ack of that batch (with or without an error) was written to the session."""
        sizes = self._sizes.get((attempt_id, seq))
        if not sizes:
            return
        self.bytes -= sizes.pop(0)
        self.batches -= 1
        if not sizes:
            del self._sizes[(attempt_id, seq)]
        if not self.full:
            self._room.set()

    async def room(self) -> None:
        """Return once the window has room for another batch."""
        if self.full:
            self.stats.pauses += 1
            await self._room.wait()


class ThreadBatch(Generic[T]):
    """Small blocking jobs from many sessions (a heartbeat's credential check and lease renewal), run together: one
    worker-thread trip per `delay` for all jobs submitted meanwhile, instead of one trip each (the trip costs the
    event loop more than the job). Each submitter gets its own job's result or exception."""

    def __init__(self, run: Callable[[T], None], delay: float = 0.02,
                 around: Callable[[list[T]], AbstractContextManager[None]] | None = None) -> None:
        """around: a context the batch's jobs run in, given them all (the heartbeats' tokens read at once)."""
        self._run, self.delay, self._around = run, delay, around
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._flusher: asyncio.Future[None] | None = None

    def submit_nowait(self, job: T) -> asyncio.Future[None]:
        """Queue the job without waiting for it: the future completes with its outcome (await it to wait)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((job, fut))
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush())
        return fut

    async def _flush(self) -> None:
        jobs: list[tuple[T, asyncio.Future[None]]] = []
        try:
            await asyncio.sleep(self.delay)  # the jobs of other sessions that arrive meanwhile go along
            jobs, self._pending, self._flusher = self._pending, [], None
            outcomes = await asyncio.to_thread(self._run_all, [j for j, _ in jobs])
        except BaseException:  # cancelled (labd stopping): so are the submitters
            if self._flusher is asyncio.current_task():
                jobs, self._pending, self._flusher = self._pending, [], None
            for _, fut in jobs:
                fut.cancel()
            raise
        for (_, fut), outcome in zip(jobs, outcomes, strict=True):
            if fut.done():
                continue
            if outcome is None:
                fut.set_result(None)
            else:
                fut.set_exception(outcome)

    def _run_all(self, jobs: list[T]) -> list[Exception | None]:
        try:
            with self._around(jobs) if self._around is not None else nullcontext():
                return self._each(jobs)
        except Exception as e:  # noqa: BLE001 - the batch's own setup failed: every job gets the error
            return [e for _ in jobs]

    def _each(self, jobs: list[T]) -> list[Exception | None]:
        out: list[Exception | None] = []
        for job in jobs:
            try:
                self._run(job)
                out.append(None)
            except Exception as e:  # noqa: BLE001 - handed to that job's submitter
                out.append(e)
        return out


class GroupTrips(Generic[T, R]):
    """Jobs from many sessions run as one group per worker-thread trip, group commit style: a trip starts at once
    when none is under way, and the jobs submitted while one is take the next trip together. Idle, a job goes alone
    with no wait added; under load the groups grow by themselves (up to max_jobs), and so does what one trip's fixed
    costs (the thread hop, the transaction, the fdatasync) are shared by. run gets the group's jobs and returns
    each one's result in order; an exception it raises goes to every job of the group."""

    def __init__(self, run: Callable[[list[T]], list[R]], max_jobs: int = 64) -> None:
        self._run, self.max_jobs = run, max_jobs
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Future[None] | None = None
        self.trips = self.jobs = 0  # how many trips took how many jobs (tests; labd's /metrics has the groups)

    async def submit(self, job: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((job, fut))
        if self._runner is None:
            self._runner = asyncio.ensure_future(self._drain())
        return await fut

    async def _drain(self) -> None:
        group: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._pending:
                group, self._pending = self._pending[:self.max_jobs], self._pending[self.max_jobs:]
                self.trips += 1
                self.jobs += len(group)
                try:
                    results = await asyncio.to_thread(self._run, [job for job, _ in group])
                except Exception as e:  # noqa: BLE001 - handed to every job of the group
                    for _, fut in group:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for (_, fut), result in zip(group, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
                group = []
        except BaseException:  # cancelled (labd stopping): so are the submitters
            for _, fut in group + self._pending:
                fut.cancel()
            self._pending = []
            raise
        finally:
            self._runner = None


@dataclass(eq=False)
class AgentSession:
    device_id: str
    device_name: str
    slots: int
    public_key: bytes = b""
    outbox: asyncio.Queue[LabEvent | None] = field(default_factory=asyncio.Queue)
    running: set[str] = field(default_factory=set)
    window: BatchWindow = field(default_factory=BatchWindow)
    acks: bool = False  # the agent takes several Acks in one message (its Hello lists pilotlab.messages.ACKS)
    error: BaseException | None = None  # what ended the session from outside its reader (a refused heartbeat)

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.running)

    def send(self, event: LabEvent) -> None:
        """Queue an event for the agent; call it on the event loop's thread (asyncio queues are not thread-safe)."""
        self.outbox.put_nowait(event)

    def close(self) -> None:
        self.outbox.put_nowait(None)

    def fail(self, error: BaseException) -> None:
        """End the session with error (its stream closes with the error's status)."""
        if self.error is None:
            self.error = error
            self.close()


class SessionRegistry:
    """Which devices are connected to this labd; a new session for a device supersedes its old one."""

    def __init__(self) -> None:
        self._by_device: dict[str, AgentSession] = {}
        self.windows = WindowStats()
        self._metrics_on: set[int] = set()

    def open(self, session: AgentSession) -> AgentSession | None:
        session.window.stats = self.windows
        old = self._by_device.get(session.device_id)
        self._by_device[session.device_id] = session
        if old is not None:
            old.close()
        return old

    def close(self, session: AgentSession) -> bool:
        """Forget the session; False when a newer one had already replaced it."""
        if self._by_device.get(session.device_id) is session:
            del self._by_device[session.device_id]
            return True
        return False

    def get(self, device_id: str) -> AgentSession | None:
        return self._by_device.get(device_id)

    def all(self) -> list[AgentSession]:
        return list(self._by_device.values())

    def __len__(self) -> int:
        return len(self._by_device)

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Expose the result batch windows on registry (once per registry)."""
        if id(registry) not in self._metrics_on:
            self._metrics_on.add(id(registry))
            registry.register(_WindowCollector(self))


class _WindowCollector(Collector):
    def __init__(self, sessions: SessionRegistry) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        live = [s.window for s in self._sessions.all()]
        stats = self._sessions.windows
        for name, doc, value in (
                ("labd_result_batches_in_flight", "Result batches read from sessions and not yet acknowledged",
                 sum(w.batches for w in live)),
                ("labd_result_batch_bytes_in_flight", "Bytes of those batches", sum(w.bytes for w in live)),
                ("labd_result_batches_in_flight_peak", "The most batches one session had in flight",
                 stats.peak_batches),
                ("labd_result_batch_bytes_in_flight_peak", "The most bytes of batches one session had in flight",
                 stats.peak_bytes)):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], value)
            yield g
        c = CounterMetricFamily("labd_session_read_pauses", "Times labd stopped reading a session at its window")
        c.add_metric([], stats.pauses)
        yield c
