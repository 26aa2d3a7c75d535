"""The labd state-store contract (labd/state/base.py::Store), run against every backend (SQLite, PostgreSQL).

Each test states one MUST of the contract; the `store` fixture (conftest.py) gives a fresh, empty store.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from sqlalchemy import MetaData, select, text

from labd.state.base import AuditEntry, Store, TokenRecord
from pilotlab import domain as d
from tests.labd.conftest import spec_of

NOW = 1_700_000_000_000  # ms
LEASE = 30_000
BIG_NS = 1_700_000_000_000_000_000  # a ns timestamp: far beyond 2**32, still inside int64


# --- helpers ----------------------------------------------------------------------------------------------
def caps(**kw: Any) -> d.Capabilities:
    base: dict[str, Any] = {
        "os": "Linux", "os_release": "6.1", "arch": "aarch64", "cpu_model": "Cortex-A76", "cpu_cores": 4,
        "memory_bytes": 8 * 2**30, "onnxruntime_version": "1.20.1", "providers": ["CPUExecutionProvider"],
        "energy_sensors": [
            d.EnergySensor(kind="rapl", name="package-0", path="/sys/class/powercap/intel-rapl:0", readable=True),
            d.EnergySensor(kind="hwmon", name="ina219", path="/sys/class/hwmon/hwmon2", readable=False)],
        "agent_version": "0.1.0", "hostname": "bench-1", "slots": 2, "python_version": "3.11.9",
        "cpu_flags": ["asimd", "asimddp", "fp"],
    }
    base.update(kw)
    return d.Capabilities(**base)


def enrol(store: Store, name: str, **kw: Any) -> d.Device:
    return store.enrol_device(name, kw.get("device_class", "robot"), kw.get("region", "eu"),
                              kw.get("tags", {"rack": "1"}), kw.get("capabilities", caps()),
                              kw.get("public_key", b"\x00pk\xff"), NOW)


def new_run(store: Store, tasks: list[tuple[str, d.Device]], *, priority: int = 0, submitted_ms: int = NOW,
            run_id: str | None = None) -> d.Run:
    rid = run_id or f"run-{uuid.uuid4().hex[:12]}"
    run = d.Run(id=rid, suite_id="s", suite_version="1.0.0", suite_digest="sha256:abc", status=d.Status.QUEUED,
                priority=priority, submitted_ms=submitted_ms, submitted_by="tok-eng",
                tasks=[d.Task(id=f"{rid}-t{i}", run_id=rid, name=name, device_id=dev.id, device_name=dev.name,
                              status=d.Status.QUEUED, spec=spec_of(name, i))
                       for i, (name, dev) in enumerate(tasks)])
    return store.create_run(run)


def claim(store: Store, dev: d.Device, now: int = NOW) -> tuple[d.Task, d.Attempt]:
    got = store.claim_next_task(dev.id, now, LEASE)
    assert got is not None, f"expected a queued task for {dev.name}"
    return got


def finish(store: Store, att: d.Attempt, outcome: d.Outcome = d.Outcome.OK, *,
           status: d.Status = d.Status.COMPLETED, verdict: d.Verdict | None = d.Verdict.PASS,
           metrics: dict[str, Any] | None = None, reason: str = "", requeue: bool = False,
           now: int = NOW + 1000) -> d.Run:
    fin = d.AttemptFinish(attempt_id=att.id, outcome=outcome, reason=reason, batches=2,
                          effective_settings={"threads": 2}, environment={"kernel": "6.1"},
                          execution_provider="CPUExecutionProvider", providers_used=["CPUExecutionProvider"],
                          phases={"warmup_ms": 12})
    return store.finish_attempt(fin, task_status=status, verdict=verdict, metrics=metrics or {}, reason=reason,
                                now_ms=now, requeue=requeue)


def batch(att: d.Attempt, seq: int, start: int, n: int, kind: str = "latency") -> d.ResultBatch:
    idx = list(range(start, start + n))
    return d.ResultBatch(attempt_id=att.id, seq=seq, kind=kind, index=idx, sample_index=[i * 7 for i in idx],
                         t_ns=[BIG_NS + i * 1_000_003 for i in idx], value=[2**40 + i for i in idx],
                         signature=b"sig\x00" + bytes([seq]))


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


# --- tokens -----------------------------------------------------------------------------------------------
def test_token_lookup_by_hash_only(store: Store) -> None:
    secret = "plt_" + uuid.uuid4().hex
    h = hashlib.sha256(secret.encode()).hexdigest()
    dev = enrol(store, "tok-dev")
    tid = store.create_token(d.Role.DEVICE, h, device_id=dev.id)
    tid2 = store.create_token(d.Role.ENGINEER, hashlib.sha256(b"other").hexdigest())
    assert tid and tid2 and tid != tid2

    rec = store.find_token(h)
    assert rec is not None and rec.created_ms > 0
    assert rec == TokenRecord(id=tid, role=d.Role.DEVICE, device_id=dev.id, revoked=False, created_ms=rec.created_ms)
    eng = store.find_token(hashlib.sha256(b"other").hexdigest())
    assert eng is not None and eng.id == tid2 and eng.role is d.Role.ENGINEER and eng.device_id is None
    assert store.find_token(secret) is None
    assert store.find_token(hashlib.sha256(b"never issued").hexdigest()) is None


    # Nothing in the database holds the plaintext secret; the hash is stored as given.
    engine = store.engine  # type: ignore[attr-defined]
    md = MetaData()
    md.reflect(bind=engine)
    dump = []
    with engine.connect() as conn:
        for table in md.sorted_tables:
            dump.extend(repr(tuple(r)) for r in conn.execute(select(table)))
    text = "\n".join(dump)
    assert h in text
    assert secret not in text


def test_token_lifecycle(store: Store) -> None:
    agent = store.create_token(d.Role.AGENT, "a" * 64, expires_ms=5_000, max_uses=2)
    dev = store.enrol_device("tok-life", "robot", "eu", {}, caps(), b"", NOW, credential_hash="b" * 64,
                             issued_by=agent)
    cred_rec = store.find_token("b" * 64)
    assert cred_rec is not None and cred_rec.device_id == dev.id and cred_rec.role is d.Role.DEVICE
    cred = cred_rec.id
    assert cred_rec.issued_by == agent  # written with the credential, in the enrolment's transaction
    assert store.use_token(agent) == 1 and store.use_token(agent) == 2
    with pytest.raises(d.Unauthenticated, match="used 2 times, its limit"):
        store.use_token(agent)
    assert store.use_token(agent, -1) == 1
    listed = {t.id: t for t in store.list_tokens()}
    assert listed[agent].max_uses == 2 and listed[agent].expires_ms == 5_000 and listed[agent].uses == 1
    assert listed[cred].issued_by == agent and listed[cred].device_name == "tok-life" and not listed[cred].revoked_ms
    assert store.revoke_token(agent, 7_000).revoked_ms == 7_000
    assert store.revoke_token(agent, 9_000).revoked_ms == 7_000  # the first revocation stands
    rec = store.find_token("b" * 64)
    assert rec is not None and rec.revoked and rec.revoked_ms == 7_000  # the device credential goes with it
    with pytest.raises(d.NotFound, match="no token"):
        store.revoke_token("tok-nope", 1)


# --- devices ----------------------------------------------------------------------------------------------
def test_enrol_get_and_conflict(store: Store) -> None:
    c = caps()
    dev = store.enrol_device("bench-1", "smart-terminal", "eu-west", {"rack": "3", "owner": "qa"}, c,
                             b"\x00\x01key\xff", NOW)
    assert dev.id and dev.name == "bench-1"
    for got in (store.get_device(dev.id), store.get_device_by_name("bench-1")):
        assert got.id == dev.id
        assert got.name == "bench-1" and got.device_class == "smart-terminal" and got.region == "eu-west"
        assert got.tags == {"rack": "3", "owner": "qa"}
        assert got.capabilities == c
        assert got.capabilities.energy_sensors[1] == d.EnergySensor("hwmon", "ina219", "/sys/class/hwmon/hwmon2",
                                                                     False)
        assert got.public_key == b"\x00\x01key\xff" and isinstance(got.public_key, bytes)

    with pytest.raises(d.Conflict):
        store.enrol_device("bench-1", "robot", "us", {}, d.Capabilities(), b"", NOW)
    assert [x.id for x in store.list_devices()] == [dev.id]
    assert store.get_device(dev.id).device_class == "smart-terminal"

    with pytest.raises(d.NotFound):
        store.get_device("dev-nope")
    with pytest.raises(d.NotFound):
        store.get_device_by_name("nope")


def test_list_devices_ordered_by_name(store: Store) -> None:
    for n in ("zeta", "alpha", "mid"):
        enrol(store, n)
    assert [x.name for x in store.list_devices()] == ["alpha", "mid", "zeta"]


def test_update_device(store: Store) -> None:
    dev = enrol(store, "upd")
    other = enrol(store, "untouched")
    store.update_device(dev.id, status="online", now_ms=NOW + 5)
    got = store.get_device(dev.id)
    assert got.status == "online" and got.last_seen_ms == NOW + 5
    assert got.capabilities == caps()  # kept when not given

    new_caps = caps(cpu_cores=16, providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
                    energy_sensors=[d.EnergySensor("nvml", "gpu0", "nvml:0", True)], slots=4)
    store.update_device(dev.id, status="busy", now_ms=NOW + 9, capabilities=new_caps)
    got = store.get_device(dev.id)
    assert (got.status, got.last_seen_ms) == ("busy", NOW + 9)
    assert got.capabilities == new_caps
    assert got.capabilities.energy_sensors == [d.EnergySensor("nvml", "gpu0", "nvml:0", True)]

    o = store.get_device(other.id)
    assert (o.status, o.last_seen_ms, o.capabilities) == ("offline", NOW, caps())


# --- suites and artifacts ---------------------------------------------------------------------------------
def suite(sid: str, version: str, digest: str = "") -> d.SuiteRecord:
    return d.SuiteRecord(id=sid, version=version, title=f"{sid} {version}", digest=digest or f"sha256:{sid}{version}",
                         suite_json=f'{{"id": "{sid}", "version": "{version}"}}')


def test_put_suite_idempotent_and_conflict(store: Store) -> None:
    s1 = suite("latency", "1.0.0")
    store.put_suite(s1)
    store.put_suite(s1)
    assert store.list_suites() == [s1]
    assert store.get_suite("latency", "1.0.0") == s1

    with pytest.raises(d.Conflict):
        store.put_suite(suite("latency", "1.0.0", digest="sha256:different"))
    assert store.get_suite("latency", "1.0.0").digest == s1.digest
    assert store.list_suites() == [s1]


def test_get_suite_latest_by_semantic_version(store: Store) -> None:
    for v in ("1.9.0", "1.10.0", "1.2.0"):
        store.put_suite(suite("acc", v))
    store.put_suite(suite("zz", "0.1.0"))
    assert store.get_suite("acc").version == "1.10.0"  # not "1.9.0", as a string comparison would give
    assert store.get_suite("acc", None) == suite("acc", "1.10.0")
    assert store.get_suite("acc", "1.9.0") == suite("acc", "1.9.0")
    assert store.get_suite("zz").version == "0.1.0"
    assert [(x.id, x.version) for x in store.list_suites()] == [
        ("acc", "1.2.0"), ("acc", "1.9.0"), ("acc", "1.10.0"), ("zz", "0.1.0")]

    with pytest.raises(d.NotFound):
        store.get_suite("nope")
    with pytest.raises(d.NotFound):
        store.get_suite("acc", "2.0.0")


def test_artifacts_idempotent(store: Store) -> None:
    sha = hashlib.sha256(b"model").hexdigest()
    a = d.ArtifactRecord(sha256=sha, size=5 * 2**32, name="model.onnx", kind="model", path=f"blobs/{sha}")
    store.put_artifact(a)
    store.put_artifact(a)
    assert store.get_artifact(sha) == a
    b = d.ArtifactRecord(sha256="0" * 64, size=1, name="data.npz", kind="dataset", path="blobs/0")
    store.put_artifact(b)
    assert store.get_artifact("0" * 64) == b and store.get_artifact(sha) == a
    with pytest.raises(d.NotFound):
        store.get_artifact("f" * 64)


# --- runs and tasks ---------------------------------------------------------------------------------------
def test_create_and_get_run_with_tasks_on_two_devices(store: Store) -> None:
    a, b = enrol(store, "dev-a"), enrol(store, "dev-b")
    run = new_run(store, [("t0", a), ("t1", b), ("t2", a)], priority=3)
    got = store.get_run(run.id)
    assert got == run
    assert got.status is d.Status.QUEUED and got.priority == 3 and got.verdict is None
    assert (got.suite_id, got.suite_version, got.suite_digest, got.submitted_ms, got.submitted_by) == (
        "s", "1.0.0", "sha256:abc", NOW, "tok-eng")
    assert [t.name for t in got.tasks] == ["t0", "t1", "t2"]
    assert [t.device_id for t in got.tasks] == [a.id, b.id, a.id]
    assert [t.device_name for t in got.tasks] == ["dev-a", "dev-b", "dev-a"]
    for i, t in enumerate(got.tasks):
        assert t.id == f"{run.id}-t{i}" and t.run_id == run.id
        assert t.status is d.Status.QUEUED and t.attempts == 0 and t.history == [] and t.verdict is None
        assert t.spec == spec_of(f"t{i}", i)
        assert store.get_task(t.id).spec == t.spec
    assert nonzero(store.count_tasks()) == {"queued": 3}

    with pytest.raises(d.NotFound):
        store.get_run("run-nope")
    with pytest.raises(d.NotFound):
        store.get_task("task-nope")


def test_create_run_is_atomic(store: Store) -> None:
    a = enrol(store, "dev-a")
    rid = "run-atomic"
    dup = d.Task(id="same-id", run_id=rid, name="x", device_id=a.id, device_name=a.name, status=d.Status.QUEUED,
                 spec=spec_of("x", 0))
    run = d.Run(id=rid, suite_id="s", suite_version="1.0.0", suite_digest="x", status=d.Status.QUEUED,
                submitted_ms=NOW, tasks=[dup, dup])
    with pytest.raises(Exception):  # noqa: B017 - the backend's own integrity error
        store.create_run(run)
    with pytest.raises(d.NotFound):
        store.get_run(rid)
    assert store.list_runs() == []
    assert nonzero(store.count_tasks()) == {}
    assert store.claim_next_task(a.id, NOW, LEASE) is None


def test_list_runs_newest_first(store: Store) -> None:
    a = enrol(store, "dev-a")
    r1 = new_run(store, [("x", a)], submitted_ms=NOW)
    r2 = new_run(store, [("y", a), ("z", a)], submitted_ms=NOW + 10)
    r3 = new_run(store, [("w", a)], submitted_ms=NOW + 5)
    runs = store.list_runs()
    assert [r.id for r in runs] == [r2.id, r3.id, r1.id]
    assert [t.name for t in runs[0].tasks] == ["y", "z"]
    assert [r.id for r in store.list_runs(limit=2)] == [r2.id, r3.id]


def test_claim_order_priority_then_submission_and_own_device(store: Store) -> None:
    a, b, idle = enrol(store, "dev-a"), enrol(store, "dev-b"), enrol(store, "dev-idle")
    r1 = new_run(store, [("a1", a), ("b1", b), ("a2", a)], priority=0)
    r2 = new_run(store, [("a3-high", a)], priority=5)
    r3 = new_run(store, [("a4", a), ("b2-high", b)], priority=0)
    r4 = new_run(store, [("b3-high", b)], priority=9)

    assert store.claim_next_task(idle.id, NOW, LEASE) is None
    assert store.claim_next_task("dev-unknown", NOW, LEASE) is None

    order_a = []
    while (got := store.claim_next_task(a.id, NOW + len(order_a), LEASE)) is not None:
        task, att = got
        assert task.device_id == a.id and att.device_id == a.id
        order_a.append(task.name)
    assert order_a == ["a3-high", "a1", "a2", "a4"]

    order_b = []
    while (got := store.claim_next_task(b.id, NOW, LEASE)) is not None:
        order_b.append(got[0].name)
    assert order_b == ["b3-high", "b1", "b2-high"]  # r3's priority 0 does not jump ahead of r1
    assert store.claim_next_task(a.id, NOW, LEASE) is None
    assert nonzero(store.count_tasks()) == {"running": 7}
    for r in (r1, r2, r3, r4):
        assert store.get_run(r.id).status is d.Status.RUNNING


def test_claim_creates_running_attempt_and_marks_task_and_run(store: Store) -> None:
    a, b = enrol(store, "dev-a"), enrol(store, "dev-b")
    run = new_run(store, [("t0", a), ("t1", b)])
    task, att = claim(store, a, now=NOW + 100)
    assert task.id == run.tasks[0].id and task.status is d.Status.RUNNING and task.attempts == 1
    assert att.task_id == task.id and att.number == 1 and att.status is d.Status.RUNNING
    assert att.device_id == a.id and att.started_ms == NOW + 100 and att.lease_expires_ms == NOW + 100 + LEASE

    stored = store.get_attempt(att.id)
    assert (stored.id, stored.task_id, stored.number, stored.status, stored.lease_expires_ms) == (
        att.id, task.id, 1, d.Status.RUNNING, NOW + 100 + LEASE)
    assert store.get_task(task.id).status is d.Status.RUNNING
    got = store.get_run(run.id)
    assert got.status is d.Status.RUNNING
    assert [t.status for t in got.tasks] == [d.Status.RUNNING, d.Status.QUEUED]
    assert [h.id for h in got.tasks[0].history] == [att.id]
    assert [x.id for x in store.running_attempts(a.id)] == [att.id]
    assert store.running_attempts(b.id) == []
    assert [x.id for x in store.running_attempts()] == [att.id]
    with pytest.raises(d.NotFound):
        store.get_attempt("att-nope")


def test_requeue_gives_attempt_numbers_1_then_2(store: Store) -> None:
    a = enrol(store, "dev-a")
    run = new_run(store, [("t0", a)])
    task1, att1 = claim(store, a)
    assert att1.number == 1

    after = finish(store, att1, d.Outcome.ERROR, status=d.Status.ERROR, verdict=None, reason="agent lost",
                   requeue=True)
    assert after.status is not d.Status.ERROR and after.status is not d.Status.COMPLETED
    t = store.get_task(task1.id)
    assert t.status is d.Status.QUEUED and t.verdict is None
    assert store.get_attempt(att1.id).status is d.Status.ERROR
    assert store.running_attempts(a.id) == []
    assert nonzero(store.count_tasks()) == {"queued": 1}

    task2, att2 = claim(store, a, now=NOW + 2000)
    assert task2.id == task1.id and att2.number == 2 and att2.id != att1.id and task2.attempts == 2
    assert store.claim_next_task(a.id, NOW, LEASE) is None

    final = finish(store, att2, metrics={"p50_ms": 1.5})
    assert final.status is d.Status.COMPLETED and final.verdict is d.Verdict.PASS
    hist = final.tasks[0].history
    assert [(h.number, h.status, h.outcome) for h in hist] == [
        (1, d.Status.ERROR, "error"), (2, d.Status.COMPLETED, "ok")]
    assert final.id == run.id and final.tasks[0].attempts == 2


def test_concurrent_claims_never_share_a_task(store: Store) -> None:
    a = enrol(store, "dev-a")
    runs = [new_run(store, [(f"r{r}t{i}", a) for i in range(5)]) for r in range(4)]
    all_ids = sorted(t.id for r in runs for t in r.tasks)
    assert len(all_ids) == 20
    barrier = threading.Barrier(8)

    def worker(_: int) -> list[tuple[str, str, int]]:
        barrier.wait()
        mine = []
        while (got := store.claim_next_task(a.id, NOW, LEASE)) is not None:
            mine.append((got[0].id, got[1].id, got[1].number))
        return mine

    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(worker, range(8)))
    claimed = [c for r in results for c in r]
    assert sorted(c[0] for c in claimed) == all_ids  # each task exactly once
    assert len({c[1] for c in claimed}) == 20 and all(c[2] == 1 for c in claimed)
    assert sorted(x.task_id for x in store.running_attempts(a.id)) == all_ids
    assert nonzero(store.count_tasks()) == {"running": 20}
    for r in runs:
        got = store.get_run(r.id)
        assert got.status is d.Status.RUNNING
        assert all(t.attempts == 1 and len(t.history) == 1 for t in got.tasks)


# --- results ----------------------------------------------------------------------------------------------
def test_result_batches_idempotent_and_samples_exact(store: Store) -> None:
    a = enrol(store, "dev-a")
    new_run(store, [("t0", a)])
    _, att = claim(store, a)

    assert store.batch_seqs(att.id) == set()
    assert len(store.samples(att.id, "latency")["value"]) == 0
    # seq 1 arrives before seq 0: samples still come back ordered by index.
    assert store.add_result_batch(batch(att, 1, 3, 4), NOW) is True
    assert store.add_result_batch(batch(att, 0, 0, 3), NOW) is True
    assert store.add_result_batch(batch(att, 0, 0, 3), NOW + 1) is False
    # A duplicate (attempt, seq) with other contents stores nothing either.
    assert store.add_result_batch(batch(att, 1, 100, 50), NOW + 2) is False
    assert store.add_result_batch(batch(att, 0, 0, 2, kind="prediction"), NOW) is False
    assert store.batch_seqs(att.id) == {0, 1}

    s = store.samples(att.id, "latency")
    assert set(s) == {"index", "sample_index", "t_ns", "value", "aux", "seq", "fvalue"}
    for name, arr in s.items():
        assert arr.dtype == (np.float64 if name == "fvalue" else np.int64) and arr.shape == (7,)
    idx = list(range(7))
    assert s["index"].tolist() == idx
    assert s["sample_index"].tolist() == [i * 7 for i in idx]
    assert s["t_ns"].tolist() == [BIG_NS + i * 1_000_003 for i in idx]
    assert s["value"].tolist() == [2**40 + i for i in idx]
    assert int(s["t_ns"][6]) == 1_700_000_000_006_000_018
    assert store.samples(att.id, "prediction")["index"].shape == (0,)

    # Another kind and another attempt stay apart; extreme int64 values survive.
    pred = d.ResultBatch(attempt_id=att.id, seq=2, kind="prediction", index=[0, 1], sample_index=[0, 1],
                         t_ns=[2**63 - 1, BIG_NS], value=[-(2**63), -5])
    assert store.add_result_batch(pred, NOW) is True
    p = store.samples(att.id, "prediction")
    assert p["t_ns"].tolist() == [2**63 - 1, BIG_NS] and p["value"].tolist() == [-(2**63), -5]
    assert len(store.samples(att.id, "latency")["index"]) == 7
    assert store.batch_seqs(att.id) == {0, 1, 2}
    assert store.batch_seqs("att-other") == set()
    assert store.add_result_batch(batch(att, 0, 0, 3), NOW) is False
    assert len(store.samples(att.id, "latency")["index"]) == 7


def test_concurrent_duplicate_batches_store_once(store: Store) -> None:
    """An agent's retry may race its original send: exactly one wins, the others are duplicates, not errors."""
    a = enrol(store, "dev-a")
    new_run(store, [("t0", a)])
    _, att = claim(store, a)
    for round_ in range(3):
        barrier = threading.Barrier(6)
        b = batch(att, round_, round_ * 50, 50)

        def send(_: int, b: d.ResultBatch = b, barrier: threading.Barrier = barrier) -> bool:
            barrier.wait()
            return store.add_result_batch(b, NOW)

        with ThreadPoolExecutor(6) as ex:
            outcomes = list(ex.map(send, range(6)))
        assert outcomes.count(True) == 1 and outcomes.count(False) == 5
    assert store.batch_seqs(att.id) == {0, 1, 2}
    assert store.samples(att.id, "latency")["index"].tolist() == list(range(150))


# --- finishing, run status --------------------------------------------------------------------------------
def _two_running(store: Store) -> tuple[d.Run, d.Attempt, d.Attempt]:
    a, b = enrol(store, "dev-a"), enrol(store, "dev-b")
    run = new_run(store, [("ta", a), ("tb", b)])
    _, att_a = claim(store, a)
    _, att_b = claim(store, b)
    return run, att_a, att_b


def test_finish_all_pass_completes_run_with_pass(store: Store) -> None:
    run, att_a, att_b = _two_running(store)
    mid = finish(store, att_a, metrics={"p50_ms": 1.25, "n": 100, "ok": True}, now=NOW + 10)
    assert mid.status is d.Status.RUNNING and mid.verdict is None and mid.finished_ms == 0
    ta = mid.tasks[0]
    assert ta.status is d.Status.COMPLETED and ta.verdict is d.Verdict.PASS
    assert ta.metrics == {"p50_ms": 1.25, "n": 100, "ok": True}
    assert mid.tasks[1].status is d.Status.RUNNING

    done = finish(store, att_b, metrics={"p50_ms": 2.0}, now=NOW + 20)
    assert done.id == run.id
    assert done.status is d.Status.COMPLETED and done.verdict is d.Verdict.PASS and done.finished_ms == NOW + 20
    assert [t.verdict for t in done.tasks] == [d.Verdict.PASS, d.Verdict.PASS]
    assert store.get_run(run.id) == done
    h = store.get_attempt(att_a.id)
    assert (h.status, h.outcome, h.finished_ms, h.batches_expected) == (d.Status.COMPLETED, "ok", NOW + 10, 2)
    assert h.effective_settings == {"threads": 2} and h.environment == {"kernel": "6.1"}
    assert h.execution_provider == "CPUExecutionProvider" and h.providers_used == ["CPUExecutionProvider"]
    assert h.phases == {"warmup_ms": 12}
    assert store.running_attempts() == []
    assert nonzero(store.count_tasks()) == {"completed": 2}


def test_finish_one_fail_gives_fail(store: Store) -> None:
    _, att_a, att_b = _two_running(store)
    finish(store, att_a)
    done = finish(store, att_b, verdict=d.Verdict.FAIL, metrics={"accuracy": 0.5}, reason="accuracy 0.5 < 0.9")
    assert done.status is d.Status.COMPLETED and done.verdict is d.Verdict.FAIL
    tb = done.tasks[1]
    assert tb.verdict is d.Verdict.FAIL and tb.metrics == {"accuracy": 0.5} and tb.reason == "accuracy 0.5 < 0.9"
    assert store.get_task(tb.id).verdict is d.Verdict.FAIL


def test_finish_one_error_gives_error_with_reason(store: Store) -> None:
    _, att_a, att_b = _two_running(store)
    finish(store, att_a)
    done = finish(store, att_b, d.Outcome.ERROR, status=d.Status.ERROR, verdict=None,
                  reason="onnxruntime: model load failed", now=NOW + 50)
    assert done.status is d.Status.ERROR and done.verdict is None
    assert done.reason == "onnxruntime: model load failed" and done.finished_ms == NOW + 50
    tb = done.tasks[1]
    assert tb.status is d.Status.ERROR and tb.reason == "onnxruntime: model load failed"
    assert store.get_attempt(att_b.id).status is d.Status.ERROR
    assert nonzero(store.count_tasks()) == {"completed": 1, "error": 1}


# --- cancel -----------------------------------------------------------------------------------------------
def test_cancel_run(store: Store) -> None:
    a, b = enrol(store, "dev-a"), enrol(store, "dev-b")
    run = new_run(store, [("a-run", a), ("a-queued", a), ("b-queued", b)])
    other = new_run(store, [("other", b)])
    _, att = claim(store, a)

    cancelled, running = store.cancel_run(run.id, "user asked", NOW + 7)
    assert [x.id for x in running] == [att.id]
    assert cancelled.id == run.id and cancelled.status is d.Status.CANCELLED and cancelled.reason == "user asked"
    assert all(t.status is d.Status.CANCELLED for t in cancelled.tasks)
    assert store.get_run(run.id).status is d.Status.CANCELLED
    assert store.get_attempt(att.id).status is d.Status.CANCELLED
    assert store.running_attempts(a.id) == []
    assert store.claim_next_task(a.id, NOW, LEASE) is None  # its queued task is gone from the queue
    task, _ = claim(store, b)
    assert task.run_id == other.id  # the other run is untouched
    assert nonzero(store.count_tasks()) == {"cancelled": 3, "running": 1}

    with pytest.raises(d.Conflict):
        store.cancel_run(run.id, "again", NOW + 8)
    assert store.get_run(run.id).reason == "user asked"
    with pytest.raises(d.NotFound):
        store.cancel_run("run-nope", "x", NOW)


def test_cancel_finished_run_conflicts(store: Store) -> None:
    a = enrol(store, "dev-a")
    run = new_run(store, [("t", a)])
    _, att = claim(store, a)
    finish(store, att)
    with pytest.raises(d.Conflict):
        store.cancel_run(run.id, "late", NOW + 9)
    got = store.get_run(run.id)
    assert got.status is d.Status.COMPLETED and got.tasks[0].status is d.Status.COMPLETED


# --- leases and progress ----------------------------------------------------------------------------------
def test_renew_leases_only_own_running_attempts(store: Store) -> None:
    a, b = enrol(store, "dev-a"), enrol(store, "dev-b")
    new_run(store, [("a1", a), ("a2", a), ("a3", a), ("b1", b)])
    _, a1 = claim(store, a)
    _, a2 = claim(store, a)
    _, a3 = claim(store, a)
    _, b1 = claim(store, b)
    finish(store, a3)
    until = NOW + 10 * LEASE

    store.renew_leases(a.id, [a1.id, a3.id, b1.id], until)
    assert store.get_attempt(a1.id).lease_expires_ms == until
    assert store.get_attempt(a2.id).lease_expires_ms == NOW + LEASE  # not named
    assert store.get_attempt(a3.id).lease_expires_ms == NOW + LEASE  # not running any more
    assert store.get_attempt(b1.id).lease_expires_ms == NOW + LEASE  # another device's
    store.renew_leases(a.id, [], until + 1)
    assert store.get_attempt(a1.id).lease_expires_ms == until


def test_set_progress(store: Store) -> None:
    a = enrol(store, "dev-a")
    run = new_run(store, [("t0", a), ("t1", a)])
    task, att = claim(store, a)
    assert store.set_progress(att.id, "warmup", 0.25) == run.id
    t = store.get_task(task.id)
    assert (t.phase, t.progress) == ("warmup", 0.25)
    assert store.set_progress(att.id, "measure", 0.75) == run.id
    got = store.get_run(run.id)
    assert (got.tasks[0].phase, got.tasks[0].progress) == ("measure", 0.75)
    assert got.tasks[1].phase == "" and got.tasks[1].progress == 0.0


def test_count_tasks(store: Store) -> None:
    assert nonzero(store.count_tasks()) == {}
    a = enrol(store, "dev-a")
    new_run(store, [(f"t{i}", a) for i in range(4)])
    assert nonzero(store.count_tasks()) == {"queued": 4}
    _, x = claim(store, a)
    _, y = claim(store, a)
    _, z = claim(store, a)
    assert nonzero(store.count_tasks()) == {"queued": 1, "running": 3}
    finish(store, x)
    finish(store, y, d.Outcome.ERROR, status=d.Status.ERROR, verdict=None, reason="boom")
    counts = store.count_tasks()
    assert nonzero(counts) == {"queued": 1, "running": 1, "completed": 1, "error": 1}
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in counts.items())
    assert z.status is d.Status.RUNNING


def test_finish_keeps_observations_apart_from_settings(store: Store) -> None:
    a = enrol(store, "dev-a")
    new_run(store, [("t0", a)])
    task, att = claim(store, a)
    obs = d.Observations(session_options={"intra_op_threads": 2}, energy={"meter": "scpi", "idle_ms": 500})
    store.finish_attempt(d.AttemptFinish(attempt_id=att.id, outcome=d.Outcome.OK, effective_settings={"repeats": 1},
                                         observations=obs),
                         task_status=d.Status.COMPLETED, verdict=d.Verdict.PASS, metrics={}, reason="", now_ms=NOW)
    got = store.get_attempt(att.id)
    assert got.observations == obs and got.effective_settings == {"repeats": 1}


# --- audit log --------------------------------------------------------------------------------------------
def entry(action: str, target: str, at: int, actor: str = "tok-adm", role: str = "admin",
          detail: str = "") -> AuditEntry:
    return AuditEntry(time_ms=at, actor=actor, role=role, action=action, target=target, detail=detail)


def shown(entries: list[AuditEntry]) -> list[tuple[str, str, str, str, str, int]]:
    return [(e.actor, e.role, e.action, e.target, e.detail, e.time_ms) for e in entries]


def test_audit_appends_and_lists_newest_first(store: Store) -> None:
    assert store.list_audit() == []
    store.append_audit(entry("run.submit", "run-1", NOW, "tok-eng", "engineer", "s@1.0.0 on r1"))
    store.append_audit(entry("device.quarantine", "r1", NOW + 5, "labd", "system", "3 consecutive errors"))
    store.append_audit(entry("run.cancel", "run-1", NOW + 5, "tok-eng", "engineer", "wrong device"))
    store.append_audit(entry("report.pull", "run-1", NOW + 60_000, "tok-cert", "certifier"))

    listed = store.list_audit()
    assert shown(listed) == [
        ("tok-cert", "certifier", "report.pull", "run-1", "", NOW + 60_000),
        ("tok-eng", "engineer", "run.cancel", "run-1", "wrong device", NOW + 5),
        ("labd", "system", "device.quarantine", "r1", "3 consecutive errors", NOW + 5),
        ("tok-eng", "engineer", "run.submit", "run-1", "s@1.0.0 on r1", NOW)]
    seqs = [e.seq for e in listed]
    assert all(seqs) and seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 4  # appending order, same ms too
    assert [e.action for e in store.list_audit("run-1")] == ["report.pull", "run.cancel", "run.submit"]
    assert [e.action for e in store.list_audit("r1")] == ["device.quarantine"]
    assert store.list_audit("nobody") == []
    assert [e.action for e in store.list_audit(limit=2)] == ["report.pull", "run.cancel"]
    assert [e.action for e in store.list_audit("run-1", since_ms=NOW + 1, until_ms=NOW + 5)] == ["run.cancel"]
    assert [e.action for e in store.list_audit(since_ms=NOW + 5)] == ["report.pull", "run.cancel",
                                                                     "device.quarantine"]


def test_audit_log_is_append_only(store: Store) -> None:
    assert not [m for m in dir(store) if "audit" in m and m not in ("append_audit", "list_audit")]
    store.append_audit(entry("token.create", "tok-1", NOW))
    engine = store.engine  # type: ignore[attr-defined]
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert shown(store.list_audit()) == [("tok-adm", "admin", "token.create", "tok-1", "", NOW)]


def test_actions_store_their_audit_entry_in_the_same_transaction(store: Store) -> None:
    agent = store.create_token(d.Role.AGENT, "a" * 64, audit=entry("token.create", "", NOW, detail="role agent"))
    assert shown(store.list_audit(agent)) == [("tok-adm", "admin", "token.create", agent, "role agent", NOW)]

    enrolled = entry("device.enrol", "r1", NOW + 1, agent, "agent", "class robot, region eu")
    dev = store.enrol_device("r1", "robot", "eu", {}, caps(), b"", NOW + 1, credential_hash="c" * 64,
                             issued_by=agent, audit=enrolled)
    cred = store.find_token("c" * 64)
    assert cred is not None and cred.device_id == dev.id and cred.issued_by == agent
    with pytest.raises(d.Conflict):  # a taken name: no device, no credential, no entry
        store.enrol_device("r1", "robot", "eu", {}, caps(), b"", NOW + 2, credential_hash="d" * 64,
                           issued_by=agent, audit=entry("device.enrol", "r1", NOW + 2, agent, "agent"))
    assert store.find_token("d" * 64) is None
    store.set_device_state(dev.id, "quarantined", audit=entry("device.quarantine", "r1", NOW + 3, "labd", "system"))
    assert [(e.action, e.time_ms) for e in store.list_audit("r1")] == [("device.quarantine", NOW + 3),
                                                                      ("device.enrol", NOW + 1)]
    with pytest.raises(d.NotFound):
        store.set_device_state("dev-nope", "active", audit=entry("device.release", "nope", NOW))

    run = d.Run(id="run-audited", suite_id="s", suite_version="1.0.0", suite_digest="sha256:abc",
                status=d.Status.QUEUED, submitted_ms=NOW, submitted_by="tok-eng",
                tasks=[d.Task(id="run-audited-t0", run_id="run-audited", name="t0", device_id=dev.id,
                              device_name=dev.name, status=d.Status.QUEUED, spec=spec_of("t0", 0))])
    store.create_run(run, audit=entry("run.submit", run.id, NOW + 4, "tok-eng", "engineer"))
    store.cancel_run(run.id, "stop", NOW + 5, audit=entry("run.cancel", run.id, NOW + 5, "tok-eng", "engineer",
                                                          "stop"))
    with pytest.raises(d.Conflict):  # already ended: nothing cancelled, nothing recorded
        store.cancel_run(run.id, "again", NOW + 6, audit=entry("run.cancel", run.id, NOW + 6, "tok-eng", "engineer"))
    assert [(e.action, e.detail) for e in store.list_audit(run.id)] == [("run.cancel", "stop"), ("run.submit", "")]

    store.revoke_token(agent, NOW + 7, audit=entry("token.revoke", agent, NOW + 7))
    with pytest.raises(d.NotFound):
        store.revoke_token("tok-nope", NOW + 8, audit=entry("token.revoke", "tok-nope", NOW + 8))
    assert [e.action for e in store.list_audit(agent)] == ["token.revoke", "token.create"]
    assert store.list_audit("nope") == [] and store.list_audit("tok-nope") == []
    assert len(store.list_audit()) == 6


def _same_samples(got: dict[str, dict[str, np.ndarray]], want: dict[str, dict[str, np.ndarray]]) -> None:
    assert sorted(got) == sorted(want)
    for kind, cols in want.items():
        assert sorted(got[kind]) == sorted(cols)
        for name, arr in cols.items():
            assert got[kind][name].dtype == arr.dtype and got[kind][name].tolist() == arr.tolist()


def test_read_finish_answers_as_the_stores_own_reads(store: Store) -> None:
    """read_finish: the attempt, its task, its batches' seqs and samples, the artifacts' paths and the device's
    infrastructure errors, each as the Store's own methods answer, and NotFound where they raise it."""
    from dataclasses import replace

    from labd.state.base import FinishRead

    a = enrol(store, "dev-a")
    rid = f"run-{uuid.uuid4().hex[:12]}"
    spec = replace(spec_of("t0", 0), accuracy={"top_k": 1})
    store.create_run(d.Run(id=rid, suite_id="s", suite_version="1.0.0", suite_digest="sha256:abc",
                           status=d.Status.QUEUED, priority=0, submitted_ms=NOW, submitted_by="tok-eng",
                           tasks=[d.Task(id=f"{rid}-t0", run_id=rid, name="t0", device_id=a.id, device_name=a.name,
                                         status=d.Status.QUEUED, spec=spec)]))
    _, att = claim(store, a)
    assert store.add_result_batch(batch(att, 1, 3, 4), NOW) is True
    assert store.add_result_batch(batch(att, 0, 0, 3), NOW) is True
    pred = d.ResultBatch(attempt_id=att.id, seq=2, kind="prediction", index=[0, 1], sample_index=[0, 1],
                         t_ns=[2**63 - 1, BIG_NS], value=[-(2**63), -5])
    assert store.add_result_batch(pred, NOW) is True
    assert spec.dataset is not None
    data_sha = spec.dataset.sha256
    with pytest.raises(d.NotFound):
        store.read_finish("att-none", grading=True)
    for grading in (True, False):
        for got in (store.read_finish(att.id, grading=grading), FinishRead(store, store.get_attempt(att.id))):
            assert got.attempt == store.get_attempt(att.id)
            assert got.task() == store.get_task(att.task_id)
            assert got.batch_seqs() == {0, 1, 2}
            _same_samples(got.all_samples(), store.all_samples(att.id))
            with pytest.raises(d.NotFound):
                got.artifact_path(data_sha)  # not registered: as get_artifact, raised when asked
            assert got.infra_errors() in (None, 0)
    store.put_artifact(d.ArtifactRecord(sha256=data_sha, size=7, name="d", kind="dataset", path="blobs/d"))
    assert store.note_outcome(a.id, infra_error=True) == 1
    got = store.read_finish(att.id, grading=True)
    assert got.artifact_path(data_sha) == "blobs/d"
    with pytest.raises(d.NotFound):
        got.artifact_path("f" * 64)  # one the read did not prefetch: the store is asked
    assert got.infra_errors() in (None, 1)
    # An attempt no longer running: the same answers (a backend need not prefetch its batches).
    finish(store, att)
    got = store.read_finish(att.id, grading=True)
    assert got.attempt.status == d.Status.COMPLETED and got.batch_seqs() == {0, 1, 2}
    _same_samples(got.all_samples(), store.all_samples(att.id))
    assert got.task() == store.get_task(att.task_id)
