"""The agent's lifecycle as one sequence: enrol → connect → (heartbeat, jobs, acks) → reconnect, until stopped."""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from agents.artifact_cache import ArtifactCache
from agents.capabilities import probe
from agents.config import AgentConfig
from agents.credentials import Credential, device_key, load_credential, public_raw, save_credential
from agents.job_runner import Caps, Job, JobRunner
from agents.lab_client import Backoff, LabClient
from agents.meters.discover import sysfs_root
from agents.meters.registry import best_meter, open_meters
from agents.outbox import Outbox
from pilotlab import convert
from pilotlab import domain as d
from pilotlab.messages import AGENT_FEATURES, RESULT_BATCHES
from pilotlab.samples import batch_signing_bytes
from pilotlab.v1 import agent_pb2

log = logging.getLogger("agent")

FATAL = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
HEARTBEAT_S = 5.0  # the lab's default heartbeat interval, until its welcome says otherwise


def isolate_cpus() -> frozenset[int] | None:
    """On a device with 4 or more CPUs, pin this process to its lowest CPU and return the others, where the
    executors measure; on smaller devices share them all (None)."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 4:
        return None
    os.sched_setaffinity(0, {allowed[0]})
    log.info("agent on CPU %d; executors measure on CPUs %s", allowed[0], ",".join(map(str, allowed[1:])))
    return frozenset(allowed[1:])


def session_messages(q: queue.Queue[agent_pb2.AgentMessage | None], batches_ok: Callable[[], bool]
                     ) -> Iterator[agent_pb2.AgentMessage]:
    """A session's messages in the order queued, until None. Result batches queued together go in one ResultBatches
    message (at most MAX_BATCHES_PER_MESSAGE, MAX_BYTES_PER_MESSAGE) when batches_ok() (the lab's Welcome listed
    RESULT_BATCHES); a batch alone, or to an older lab, goes as it is."""
    held: list[agent_pb2.AgentMessage | None] = []  # the message that ended a run of result batches
    while (m := held.pop() if held else q.get()) is not None:
        if m.WhichOneof("msg") != "results" or q.empty() or not batches_ok():
            yield m
        else:  # one consumer: what q holds stays there until taken here
            yield convert.result_batches_message(m, lambda: not q.empty(), q.get_nowait, held)


class AgentStopped(Exception):
    """The agent cannot go on (a refused credential); message says why."""


class Worker:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        # Before any thread starts (threads inherit the affinity of the thread that starts them).
        self.measure_cpus = isolate_cpus() if cfg.isolate_cpus else None
        shutil.rmtree(cfg.exec_dir, ignore_errors=True)  # executor dirs of a previous run, never reused
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._send_q: queue.Queue[agent_pb2.AgentMessage | None] | None = None
        self._jobs: dict[str, Job] = {}
        self._call: Any = None
        self._heartbeat_s = HEARTBEAT_S
        self._lab_features: frozenset[str] = frozenset()  # what the lab of the current session understands
        cfg.work_dir.mkdir(parents=True, exist_ok=True)
        self.key = device_key(cfg.work_dir)
        self.outbox = Outbox(cfg.outbox_dir)
        self.client = LabClient(cfg.lab, Backoff(cfg.backoff_initial_s, cfg.backoff_max_s), cfg.tls)
        self.cache = ArtifactCache(cfg.cache_dir, self.client)
        self.executor = ThreadPoolExecutor(max_workers=cfg.slots, thread_name_prefix="job")
        self.capabilities = probe(cfg.power_meter, cfg.slots)
        meters, notes = open_meters(sysfs_root(), cfg.power_meter)
        for note in notes:
            log.info("energy: %s", note)
        self.meter = best_meter(meters)
        log.info("energy meter: %s", self.meter.info.name if self.meter else "none (energy unavailable)")

    # --- lifecycle ----------------------------------------------------------------------------------------
    def run(self) -> None:
        """Enrol once, then hold a session to the lab, reconnecting with backoff, until stop is set."""
        cred = load_credential(self.cfg.work_dir) or self.enrol()
        self.client.token = cred.device_token
        self.recover_interrupted()
        backoff = self.client.backoff
        while not self.stop.is_set():
            opened = time.monotonic()
            try:
                self.session()
            except grpc.RpcError as e:
                if e.code() in FATAL:
                    raise AgentStopped(f"the lab refused this device's credential ({e.details()}); remove "
                                       f"{self.cfg.work_dir}/device.json and enrol again with a new agent token") from e
                if not self.stop.is_set():
                    log.warning("session to %s lost: %s %s", self.cfg.lab, e.code().name, e.details())
            if self.stop.is_set():
                break
            if time.monotonic() - opened > 30:
                backoff.reset()
            delay = backoff.next_delay()
            if self._jobs or self.outbox.attempts():
                # The lab requeues these attempts one lease (three heartbeat intervals or more) after it is back:
                # however long it was away, try again within a heartbeat interval.
                delay = min(delay, self._heartbeat_s)
            log.info("reconnecting in %.1fs", delay)
            self.stop.wait(delay)
        self.shutdown()

    def request_stop(self) -> None:
        self.stop.set()
        call = self._call
        if call is not None:
            call.cancel()

    def shutdown(self) -> None:
        """Stop taking work; results of unfinished jobs stay in the outbox for the next start."""
        for job in list(self._jobs.values()):
            job.cancel.set()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def enrol(self) -> Credential:
        req = agent_pb2.EnrolRequest(name=self.cfg.name, device_class=self.cfg.device_class, tags=self.cfg.tags,
                                     region=self.cfg.region, capabilities=convert.capabilities_to_pb(self.capabilities),
                                     public_key=public_raw(self.key))
        try:
            resp = self.client.enrol(self.cfg.token, req)
        except grpc.RpcError as e:
            raise AgentStopped(f"enrolment refused: {e.details()}") from e
        cred = Credential(device_id=resp.device_id, device_token=resp.device_token, name=self.cfg.name,
                          lab=self.cfg.lab)
        save_credential(self.cfg.work_dir, cred)
        log.info("enrolled as %s (%s)", cred.name, cred.device_id)
        return cred

    def recover_interrupted(self) -> None:
        """Attempts cut short by a restart are reported as infrastructure errors so the lab requeues them."""
        for attempt_id in self.outbox.attempts():
            if not self.outbox.has_finished(attempt_id):
                self.outbox.put_finished(agent_pb2.TaskFinished(
                    attempt_id=attempt_id, outcome=agent_pb2.OUTCOME_ERROR,
                    reason="the agent restarted during the task", batches=self.outbox.batch_count(attempt_id)))

    # --- one session ----------------------------------------------------------------------------------------
    def session(self) -> None:
        q: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        done = threading.Event()
        running = sorted(set(self._jobs) | set(self.outbox.attempts()))
        self._lab_features = frozenset()
        q.put(agent_pb2.AgentMessage(hello=agent_pb2.Hello(
            capabilities=convert.capabilities_to_pb(self.capabilities), running_attempt_ids=running,
            features=list(AGENT_FEATURES))))
        self._call = self.client.session(session_messages(q, lambda: RESULT_BATCHES in self._lab_features))
        if self.stop.is_set():  # a stop that came while the call was being made
            self._call.cancel()
        try:
            for msg in self._call:
                self.handle(msg, q, done)
        finally:
            with self._lock:
                self._send_q = None
            done.set()
            q.put(None)
            self._call = None

    def handle(self, msg: agent_pb2.LabMessage, q: queue.Queue[agent_pb2.AgentMessage | None],
               done: threading.Event) -> None:
        kind = msg.WhichOneof("msg")
        if kind == "welcome":
            log.info("connected to %s as %s", self.cfg.lab, msg.welcome.device_name)
            with self._lock:
                self._lab_features = frozenset(msg.welcome.features)
                self._send_q = q
                for pending in self.outbox.pending():
                    q.put(pending)
            interval = self._heartbeat_s = max(0.2, msg.welcome.heartbeat_interval_ms / 1000)
            threading.Thread(target=self._heartbeat, args=(q, done, interval), daemon=True).start()
        elif kind == "assignment":
            a = convert.assignment_from_pb(msg.assignment)
            job = Job(a)
            self._jobs[a.attempt_id] = job
            log.info("assigned %s (attempt %s)", a.task_name, a.attempt_id)
            self.executor.submit(self._run_job, job)
        elif kind == "ack":
            self._ack(msg.ack)
        elif kind == "acks":
            for ack in msg.acks.acks:
                self._ack(ack)
        elif kind == "cancel":
            running = self._jobs.get(msg.cancel.attempt_id)
            if running is not None:
                log.info("cancel %s: %s", msg.cancel.attempt_id, msg.cancel.reason)
                running.cancel.set()

    def _ack(self, ack: agent_pb2.Ack) -> None:
        """The lab stored (or refused) a result batch or a finish: it leaves the outbox."""
        if ack.error:
            log.warning("the lab refused result batch %d of attempt %s: %s", ack.seq, ack.attempt_id, ack.error)
        if ack.finished:
            self.outbox.ack_finished(ack.attempt_id)
        else:
            self.outbox.ack_batch(ack.attempt_id, ack.seq)

    def _heartbeat(self, q: queue.Queue[agent_pb2.AgentMessage | None], done: threading.Event,
                   interval: float) -> None:
        while not done.wait(interval):
            q.put(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(
                sent_unix_ms=time.time_ns() // 1_000_000,
                running_attempt_ids=sorted(set(self._jobs) | set(self.outbox.attempts())))))

    def _run_job(self, job: Job) -> None:
        try:
            tdp = float(self.cfg.tags.get("tdp_w", 0) or 0)
            caps = Caps(self.cfg.max_task_seconds, self.cfg.max_task_memory_mb, self.measure_cpus)
            JobRunner(self.cache, self, self.cfg.batch_size, self._sign, self.meter, tdp, self.cfg.exec_dir,
                      caps).run(job)
        finally:
            self._jobs.pop(job.assignment.attempt_id, None)

    # --- the reporter jobs write through: durable first, then sent if connected ---------------------------
    def _publish(self, msg: agent_pb2.AgentMessage) -> None:
        if self._send_q is not None:
            self._send_q.put(msg)

    def batch(self, batch: d.ResultBatch) -> None:
        with self._lock:
            self._publish(self.outbox.put_batch(convert.result_batch_to_pb(batch)))

    def finished(self, fin: d.AttemptFinish) -> None:
        with self._lock:
            self._publish(self.outbox.put_finished(convert.finish_to_pb(fin)))

    def progress(self, attempt_id: str, phase: str, fraction: float, message: str = "") -> None:
        with self._lock:
            self._publish(agent_pb2.AgentMessage(progress=agent_pb2.TaskProgress(
                attempt_id=attempt_id, phase=phase, fraction=fraction, message=message)))

    def _sign(self, batch: d.ResultBatch) -> None:
        arrays: dict[str, list[int] | list[float]] = {
            "index": batch.index, "sample_index": batch.sample_index, "t_ns": batch.t_ns, "value": batch.value,
            "aux": batch.aux, "fvalue": batch.fvalue}
        batch.signature = self.key.sign(batch_signing_bytes(batch.attempt_id, batch.seq, batch.kind, arrays))
