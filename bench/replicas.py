"""Replica benchmark: several labd replicas on one PostgreSQL, many simulated agents spread across them, one burst
of runs, and (with --kill) one replica SIGKILLed in the middle of it.

Each replica is `labd serve` on its own data dir, the same --db (a fresh schema), the same --blobs folder, the lab's
one --signing-key and --nats (wake-up hints; NATS at 127.0.0.1:4222 here). Replica 0 starts first, so it leads the
single-writer duties (expired leases, queue timeouts) until it is killed.

The simulated agents speak the real protocol (the payload, signatures and finish of bench/fleet.py: K batches of B
latency samples, the audit and accuracy sets) and behave like agents/worker.py where a replica dies: every result
batch stays in the agent's outbox until acknowledged, and a session cut by the lab is opened again on the next
replica (HOST:PORT,HOST:PORT… as `lab-agent --lab` takes it), with Hello listing the attempts it still runs, then
the unacknowledged batches and the finish sent again.

The burst submits one run per agent through the last replica (so work for agents held by the others travels as
hints), and with --kill SIGKILLs replica 0 (the leader, holding a third of the sessions) once --kill-at of the
tasks have finished. Then it checks, in PostgreSQL itself, every task of the burst:

  lost        a completed task whose completed attempt lacks a result batch or a sample the agent sent
  duplicated  samples stored more than once for one task (any batch of any attempt beyond one full set)
  not ended   a task that did not complete

    .venv/bin/python bench/replicas.py --agents 1000 --replicas 3 --kill
    .venv/bin/python bench/replicas.py --agents 1000 --replicas 3            # no kill: the same burst, for scale
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.fleet import (  # noqa: E402
    CHANNEL_OPTIONS,
    DEVICE_CLASS,
    ENROL_CONCURRENCY,
    SUITE,
    Labd,
    Payload,
    PgSchema,
    machine_info,
    raise_nofile,
    session_messages,
    stats_ms,
    suite_task,
)
from pilotlab.messages import AGENT_FEATURES, RESULT_BATCHES  # noqa: E402
from pilotlab.v1 import agent_pb2, agent_pb2_grpc, common_pb2, lab_pb2, lab_pb2_grpc  # noqa: E402

AGENTS_PER_CHANNEL = 50
NATS_URL = os.environ.get("PILOTLAB_NATS_URL", "nats://127.0.0.1:4222")


def replica(data_dir: Path, db_url: str, extra: list[str]) -> Labd:
    """bench.fleet's labd subprocess, started with the flags a replica needs."""
    return Labd(data_dir, db_url, "INFO", extra=extra).start()


class Fleet:
    def __init__(self, payload: Payload, replicas: list[Labd]) -> None:
        self.payload = payload
        self.replicas = replicas
        self.finished = 0
        self.target = 0
        self.all_done = asyncio.Event()
        self.reconnects = 0
        self.resent_batches = 0
        self.resent_finishes = 0
        self.errors: dict[str, int] = {}
        self.dispatch_ns: list[int] = []
        self.stubs: list[list[agent_pb2_grpc.AgentServiceStub]] = []

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def task_finished(self) -> None:
        self.finished += 1
        if self.finished >= self.target:
            self.all_done.set()


class ReplicaAgent:
    """One simulated device: a durable outbox (every batch until acked, the finish until acked) and a session that
    moves to the next replica when the lab cuts it."""

    def __init__(self, fleet: Fleet, index: int, name: str, home: int) -> None:
        self.fleet, self.index, self.name, self.replica = fleet, index, name, home
        self.key = Ed25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.md: list[tuple[str, str]] = []
        self.unacked: dict[str, set[int]] = {}  # attempt -> batch seqs not yet acknowledged
        self.finish_acked: set[str] = set()
        self.q: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue()
        self.welcomed = asyncio.Event()
        self.closing = False
        self.interval_s = 5.0
        self.lab_batches = False  # this session's replica takes several result batches in one message
        self.submit_t0: int | None = None
        self.sessions = 0
        self.task: asyncio.Task[None] | None = None

    def stub(self) -> agent_pb2_grpc.AgentServiceStub:
        chans = self.fleet.stubs[self.replica]
        return chans[self.index // AGENTS_PER_CHANNEL % len(chans)]

    async def enrol(self, stub: agent_pb2_grpc.AgentServiceStub, token: str) -> None:
        resp = await stub.Enrol(agent_pb2.EnrolRequest(
            name=self.name, device_class=DEVICE_CLASS, region="bench", tags={"fleet": "1"},
            capabilities=common_pb2.Capabilities(slots=1, os="Linux", agent_version="replica-bench"),
            public_key=self.public), metadata=[("authorization", f"Bearer {token}")], timeout=120)
        self.md = [("authorization", f"Bearer {resp.device_token}")]

    def running(self) -> list[str]:
        return sorted(a for a in self.unacked if a not in self.finish_acked)

    async def _requests(self, q: asyncio.Queue[agent_pb2.AgentMessage | None]) -> Any:
        async for m in session_messages(q, lambda: self.lab_batches):
            yield m

    async def _heartbeat(self, q: asyncio.Queue[agent_pb2.AgentMessage | None]) -> None:
        await asyncio.sleep(random.uniform(0, self.interval_s))
        while True:
            q.put_nowait(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(
                sent_unix_ms=time.time_ns() // 1_000_000, running_attempt_ids=self.running())))
            await asyncio.sleep(self.interval_s)

    def _send_attempt(self, q: asyncio.Queue[agent_pb2.AgentMessage | None], attempt_id: str, again: bool) -> None:
        p = self.fleet.payload
        for seq in sorted(self.unacked[attempt_id]):
            q.put_nowait(p.batch(self.key, attempt_id, seq))
            self.fleet.resent_batches += again
        q.put_nowait(p.finished(attempt_id))
        self.fleet.resent_finishes += again

    async def life(self) -> None:
        """Sessions, one after another, until closed: the next replica after each cut."""
        f = self.fleet
        while not self.closing:
            q: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue()
            self.q = q
            self.lab_batches = False  # until this session's Welcome says otherwise
            q.put_nowait(agent_pb2.AgentMessage(hello=agent_pb2.Hello(
                capabilities=common_pb2.Capabilities(slots=1, os="Linux", agent_version="replica-bench"),
                running_attempt_ids=self.running(), features=list(AGENT_FEATURES))))
            for att in self.running():  # what the last replica did not acknowledge, again, in order
                self._send_attempt(q, att, again=True)
            call = self.stub().Session(self._requests(q), metadata=self.md)
            beat: asyncio.Task[None] | None = None
            try:
                async for m in call:
                    kind = m.WhichOneof("msg")
                    if kind == "welcome":
                        self.interval_s = max(0.2, m.welcome.heartbeat_interval_ms / 1000)
                        self.lab_batches = RESULT_BATCHES in m.welcome.features
                        self.sessions += 1
                        self.welcomed.set()
                        beat = asyncio.create_task(self._heartbeat(q))
                    elif kind == "assignment":
                        if self.submit_t0 is not None:
                            f.dispatch_ns.append(time.perf_counter_ns() - self.submit_t0)
                        att = m.assignment.attempt_id
                        self.unacked[att] = set(range(len(f.payload.kinds)))
                        self._send_attempt(q, att, again=False)
                    elif kind == "ack":
                        self._ack(m.ack)
                    elif kind == "acks":
                        for ack in m.acks.acks:
                            self._ack(ack)
                    elif kind == "cancel":
                        f.error("cancel received")
            except grpc.aio.AioRpcError as e:
                if not self.closing:
                    f.reconnects += 1
                    if e.code() != grpc.StatusCode.UNAVAILABLE:
                        f.error(f"session {e.code().name}: {(e.details() or '')[:100]}")
            finally:
                if beat is not None:
                    beat.cancel()
                q.put_nowait(None)
                self.welcomed.set()
            if self.closing:
                return
            self.replica = (self.replica + 1) % len(f.stubs)  # the next replica, as round_robin would
            await asyncio.sleep(random.uniform(0.1, 0.5))

    def _ack(self, ack: agent_pb2.Ack) -> None:
        att = ack.attempt_id
        if ack.finished:
            if att not in self.finish_acked:
                self.finish_acked.add(att)
                self.unacked.pop(att, None)
                self.finish_acked.discard(att)
                self.fleet.task_finished()
        elif att in self.unacked:
            self.unacked[att].discard(ack.seq)

    async def close(self) -> None:
        self.closing = True
        self.q.put_nowait(None)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


def check_in_postgres(db_url: str, run_ids: list[str], payload: Payload) -> dict[str, Any]:
    """Every task of the burst, read from PostgreSQL: completed, with one full set of batches and samples."""
    import psycopg

    url, _, query = db_url.replace("postgresql+psycopg://", "postgresql://").partition("?")
    schema = query.split("search_path%3D", 1)[1]
    want_batches, want_rows = len(payload.kinds), payload.rows
    out = {"tasks": 0, "completed": 0, "not_ended": 0, "lost_tasks": 0, "lost_samples": 0,
           "duplicated_samples": 0, "attempts_over_one": 0, "samples_stored": 0, "samples_expected": 0}
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"SET search_path TO {schema}")
        rows = c.execute(
            """SELECT t.id, t.status, t.attempts,
                      (SELECT count(*) FROM result_batches b JOIN attempts a ON a.id = b.attempt_id
                        WHERE a.task_id = t.id AND a.status = 'completed'),
                      (SELECT coalesce(sum(b.n), 0) FROM result_batches b JOIN attempts a ON a.id = b.attempt_id
                        WHERE a.task_id = t.id AND a.status = 'completed'),
                      (SELECT coalesce(sum(b.n), 0) FROM result_batches b JOIN attempts a ON a.id = b.attempt_id
                        WHERE a.task_id = t.id)
                 FROM tasks t WHERE t.run_id = ANY(%s)""", (run_ids,)).fetchall()
    for _tid, status, attempts, batches, n_done, n_all in rows:
        out["tasks"] += 1
        out["samples_expected"] += want_rows
        out["samples_stored"] += int(n_done)
        out["attempts_over_one"] += attempts > 1
        if status != "completed":
            out["not_ended"] += 1
            continue
        out["completed"] += 1
        if batches < want_batches or n_done < want_rows:
            out["lost_tasks"] += 1
            out["lost_samples"] += want_rows - int(n_done)
        out["duplicated_samples"] += max(0, int(n_done) - want_rows)
        del n_all  # samples of attempts the lab gave up on (requeued) are kept as history, not counted twice
    return out


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    raise_nofile()
    with PgSchema() as db_url:
        blobs = work / "blobs"
        common = ["--blobs", str(blobs), "--lease-seconds", str(args.lease_seconds)]
        if not args.no_nats:
            common += ["--nats", NATS_URL]
        first = replica(work / "r0", db_url, common)
        key = ["--signing-key", str(first.data_dir / "signing_key.pem")]
        replicas = [first] + [replica(work / f"r{i}", db_url, [*common, *key])
                              for i in range(1, args.replicas)]
        fleet = Fleet(Payload(args.batches, args.per_batch, *suite_task()), replicas)
        n_ch = max(1, -(-args.agents // AGENTS_PER_CHANNEL))
        channels = [[grpc.aio.insecure_channel(r.addr, options=CHANNEL_OPTIONS) for _ in range(n_ch)]
                    for r in replicas]
        fleet.stubs = [[agent_pb2_grpc.AgentServiceStub(c) for c in chans] for chans in channels]
        submit_ch = grpc.aio.insecure_channel(replicas[-1].addr, options=CHANNEL_OPTIONS)
        lab = lab_pb2_grpc.LabServiceStub(submit_ch)
        admin = [("authorization", f"Bearer {first.admin_token}")]
        agent_token = (await lab.CreateToken(lab_pb2.CreateTokenRequest(role="agent"), metadata=admin)).token
        eng = [("authorization", "Bearer " + (await lab.CreateToken(
            lab_pb2.CreateTokenRequest(role="engineer"), metadata=admin)).token)]
        tag = uuid.uuid4().hex[:4]
        agents = [ReplicaAgent(fleet, i, f"rep-{tag}-{i:04d}", i % len(replicas)) for i in range(args.agents)]
        sem = asyncio.Semaphore(ENROL_CONCURRENCY)

        async def enrol(a: ReplicaAgent) -> None:
            async with sem:
                await a.enrol(a.stub(), agent_token)

        t0 = time.perf_counter()
        await asyncio.gather(*(enrol(a) for a in agents))
        for a in agents:
            a.task = asyncio.create_task(a.life())
        await asyncio.wait_for(asyncio.gather(*(a.welcomed.wait() for a in agents)), 120)
        setup_s = time.perf_counter() - t0
        per_replica = [sum(1 for a in agents if a.replica == i) for i in range(len(replicas))]
        print(f"{args.agents} agents connected in {setup_s:.1f} s, sessions per replica {per_replica}", flush=True)

        fleet.target = args.agents
        cpu0 = [r.cpu_s() for r in replicas]
        run_ids: list[str] = []
        submit_errors = 0
        t0 = time.perf_counter()

        async def submit(a: ReplicaAgent) -> None:
            nonlocal submit_errors
            a.submit_t0 = time.perf_counter_ns()
            try:
                r = await lab.SubmitRun(lab_pb2.SubmitRunRequest(suite_id=SUITE, device=a.name), metadata=eng,
                                        timeout=300)
                run_ids.append(r.id)
            except grpc.aio.AioRpcError as e:
                submit_errors += 1
                fleet.error(f"SubmitRun {e.code().name}: {(e.details() or '')[:100]}")

        killed: dict[str, Any] = {}

        async def killer() -> None:
            while fleet.finished < args.kill_at * args.agents:
                await asyncio.sleep(0.02)
            victim = replicas[0]
            killed["cpu_s"] = victim.cpu_s()
            victim.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            victim.proc.wait()  # type: ignore[union-attr]
            killed.update(replica=0, at_finished=fleet.finished, at_s=round(time.perf_counter() - t0, 2),
                          sessions_held=per_replica[0])
            print(f"SIGKILLed replica 0 (the leader) after {fleet.finished} of {args.agents} tasks", flush=True)

        kill_task = asyncio.create_task(killer()) if args.kill else None
        await asyncio.gather(*(submit(a) for a in agents))
        timed_out = False
        try:
            await asyncio.wait_for(fleet.all_done.wait(), args.timeout_s)
        except TimeoutError:
            timed_out = True
        wall = time.perf_counter() - t0
        if kill_task is not None:
            kill_task.cancel()
        cpu = [(killed.get("cpu_s", 0.0) if (args.kill and i == 0) else r.cpu_s()) - c0
               for i, (r, c0) in enumerate(zip(replicas, cpu0, strict=True))]
        # The lab's view, then PostgreSQL's: every run ended, every sample once.
        deadline = time.monotonic() + 60
        statuses: dict[str, int] = {}
        while time.monotonic() < deadline:
            statuses = {}
            for rid in run_ids:
                got = await lab.GetRun(lab_pb2.GetRunRequest(id=rid), metadata=eng, timeout=60)
                name = common_pb2.Status.Name(got.status)
                statuses[name] = statuses.get(name, 0) + 1
            if statuses.get("STATUS_COMPLETED", 0) + statuses.get("STATUS_ERROR", 0) >= len(run_ids):
                break
            await asyncio.sleep(1)
        checked = await asyncio.to_thread(check_in_postgres, db_url, run_ids, fleet.payload)
        leaders = [i for i, r in enumerate(replicas) if "now leads reaper" in r.log.read_text(errors="replace")]
        for a in agents:
            await a.close()
        for chans in channels:
            for c in chans:
                await c.close()
        await submit_ch.close()
        for r in replicas:
            r.stop()
        done = fleet.finished
        return {
            "replicas": len(replicas), "agents": args.agents, "kill": bool(args.kill), "killed": killed,
            "nats": not args.no_nats, "sessions_per_replica_at_start": per_replica, "setup_s": round(setup_s, 2),
            "tasks": len(run_ids), "finished_acks": done, "timed_out": timed_out, "wall_s": round(wall, 2),
            "tasks_per_s": round(done / wall, 1), "samples_per_s": int(done * fleet.payload.rows / wall),
            "dispatch_ms": stats_ms(fleet.dispatch_ns), "labd_cpu_s": [round(c, 2) for c in cpu],
            "labd_cpu_ms_per_task": round(1000 * sum(cpu) / max(done, 1), 2),
            "reconnects": fleet.reconnects, "resent_batches": fleet.resent_batches,
            "resent_finishes": fleet.resent_finishes, "submit_errors": submit_errors, "errors": fleet.errors,
            "run_statuses": statuses, "postgres_check": checked, "replicas_that_led": leaders,
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--kill", action="store_true", help="SIGKILL replica 0 (the leader) mid-burst")
    ap.add_argument("--kill-at", type=float, default=0.3, help="fraction of tasks finished when it is killed")
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--per-batch", type=int, default=500)
    ap.add_argument("--lease-seconds", type=float, default=10.0)
    ap.add_argument("--timeout-s", type=float, default=300.0)
    ap.add_argument("--no-nats", action="store_true", help="replicas without hints (polling alone)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--name", default="replicas")
    args = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="replicas-") as tmp:
        res = asyncio.run(run(args, Path(tmp)))
    res["command"] = "bench/replicas.py " + " ".join(sys.argv[1:])
    res["when"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    res["machine"] = machine_info(["postgresql"])
    pc = res["postgres_check"]
    rows = [("replicas", res["replicas"]), ("agents", res["agents"]), ("killed", json.dumps(res["killed"])),
            ("tasks", res["tasks"]), ("completed (PostgreSQL)", pc["completed"]), ("not ended", pc["not_ended"]),
            ("lost tasks / samples", f"{pc['lost_tasks']} / {pc['lost_samples']}"),
            ("duplicated samples", pc["duplicated_samples"]), ("tasks with >1 attempt", pc["attempts_over_one"]),
            ("wall s", res["wall_s"]), ("tasks/s", res["tasks_per_s"]),
            ("dispatch p50/p99 ms", f"{res['dispatch_ms']['p50']} / {res['dispatch_ms']['p99']}"),
            ("labd CPU s per replica", res["labd_cpu_s"]), ("labd CPU ms per task (all replicas)",
                                                             res["labd_cpu_ms_per_task"]),
            ("agent reconnects", res["reconnects"]), ("batches / finishes resent", f"{res['resent_batches']} / "
                                                                                  f"{res['resent_finishes']}"),
            ("replicas that led", res["replicas_that_led"]), ("errors", json.dumps(res["errors"])),
            ("load avg 1m", res["load_avg_1m"])]
    width = max(len(k) for k, _ in rows)
    table = "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(res, indent=1) + "\n")
    m = res["machine"]
    (args.out / f"{args.name}.md").write_text(
        f"# Replica benchmark: {res['replicas']} labd replicas on one PostgreSQL\n\n"
        f"Date: {res['when']}  \nCommand: `.venv/bin/python {res['command']}`  \n"
        f"Machine: {json.dumps(m)}  \n\nChecked in PostgreSQL after the burst (bench/replicas.py's docstring says "
        f"how); labd CPU per replica over the burst (the killed one until its kill).\n\n```\n{table}\n```\n")
    print(json.dumps({k: res[k] for k in ("tasks", "postgres_check", "wall_s", "labd_cpu_ms_per_task")}))


if __name__ == "__main__":
    main()
