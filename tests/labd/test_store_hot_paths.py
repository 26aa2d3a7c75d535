"""The store's per-task paths (create_run, claim_next_task, close_attempt / finish_attempt), written as prepared
Core statements (issue 16, phase 2), keep what the ORM versions did: what they return is what the store then reads,
and a run's status follows the same rule (done when all its tasks are; error with the first error's reason, else
completed, pass only if every task passed). Run against every backend."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from labd.handlers import agents
from labd.state.base import RunEnd, Store
from pilotlab import domain as d
from tests.labd.conftest import Parts
from tests.labd.test_store_contract import LEASE, NOW, enrol, new_run


def expected_status(before: d.Run, tasks: list[d.Task], at_ms: int) -> tuple[d.Status, d.Verdict | None, str, int]:
    """The rule of labd.state.rows.refresh_run_status, on the tasks as stored (in ordinal order)."""
    if before.status.terminal:
        return before.status, before.verdict, before.reason, before.finished_ms
    if all(t.status.terminal for t in tasks):
        errors = [t.reason for t in tasks if t.status == d.Status.ERROR]
        if errors:
            return d.Status.ERROR, None, errors[0], at_ms
        verdict = d.Verdict.PASS if all(t.verdict == d.Verdict.PASS for t in tasks) else d.Verdict.FAIL
        return d.Status.COMPLETED, verdict, before.reason, at_ms
    if any(t.status != d.Status.QUEUED for t in tasks):
        return d.Status.RUNNING, before.verdict, before.reason, before.finished_ms
    return before.status, before.verdict, before.reason, before.finished_ms


def _finish_args(rng: random.Random, att: d.Attempt, task: d.Task) -> tuple[d.AttemptFinish, dict[str, Any]]:
    outcome = rng.choice([d.Outcome.OK, d.Outcome.OK, d.Outcome.ERROR, d.Outcome.CANCELLED, d.Outcome.REFUSED,
                          d.Outcome.FAULT])
    fin = d.AttemptFinish(attempt_id=att.id, outcome=outcome, reason=rng.choice(["", f"why {task.name}"]),
                          batches=rng.randint(0, 3), effective_settings={"threads": rng.randint(1, 4)},
                          environment={"kernel": "6.1"}, execution_provider="CPUExecutionProvider",
                          providers_used=["CPUExecutionProvider"], phases={"warmup_ms": rng.randint(0, 9)})
    if outcome == d.Outcome.OK:
        verdict = rng.choice([d.Verdict.PASS, d.Verdict.FAIL])
        kw: dict[str, Any] = {"task_status": d.Status.COMPLETED, "verdict": verdict,
                              "metrics": {"p50_ms": rng.random(), "n": rng.randint(1, 9)}, "reason": ""}
    else:
        kw = {"task_status": d.Status.CANCELLED if outcome == d.Outcome.CANCELLED else d.Status.ERROR,
              "verdict": None, "metrics": {}, "reason": f"{outcome.value} on {task.name}",
              "requeue": outcome == d.Outcome.ERROR and rng.random() < 0.5}
    return fin, kw


def test_finishing_keeps_the_run_status_rule_and_returns_what_is_stored(store: Store) -> None:
    rng = random.Random(16)
    devices = [enrol(store, f"dev-{i}") for i in range(3)]
    now = NOW
    for _ in range(12):
        run = new_run(store, [(f"t{i}", rng.choice(devices)) for i in range(rng.randint(1, 4))])
        for _step in range(12):
            running = [t for t in store.get_run(run.id).tasks if t.status == d.Status.QUEUED]
            if not running:
                break
            pick = rng.choice(running).device_id
            dev = next(x for x in devices if x.id == pick)
            got = store.claim_next_task(dev.id, now, LEASE)
            assert got is not None
            task, att = got
            assert task == store.get_task(task.id)  # what a claim returns is what is stored
            assert att == replace(store.get_attempt(att.id), device_name=dev.name)
            fin, kw = _finish_args(rng, att, task)
            before = store.get_run(task.run_id)  # the device's next task may be of an earlier run
            now += rng.randint(1, 1000)
            if rng.random() < 0.5:
                end: RunEnd = store.close_attempt(fin, now_ms=now, **kw)
                after = store.get_run(task.run_id)
            else:
                after = store.finish_attempt(fin, now_ms=now, **kw)
                assert after == store.get_run(task.run_id)  # read in the same transaction: the same
                end = RunEnd(after.id, after.kind, after.status, after.verdict, after.reason, after.finished_ms)
            assert (end.id, end.kind, end.status, end.verdict, end.reason, end.finished_ms) == (
                after.id, after.kind, after.status, after.verdict, after.reason, after.finished_ms)
            assert (after.status, after.verdict, after.reason, after.finished_ms) == expected_status(
                before, after.tasks, now)
            a = store.get_attempt(att.id)
            assert (a.outcome, a.finished_ms, a.batches_expected, a.effective_settings, a.phases) == (
                fin.outcome.value, now, fin.batches, fin.effective_settings, fin.phases)
            t = next(x for x in after.tasks if x.id == task.id)
            if kw.get("requeue"):
                assert (t.status, t.phase, t.progress, t.reason) == (d.Status.QUEUED, "", 0.0, kw["reason"])
            else:
                assert (t.status, t.verdict, t.metrics, t.reason, t.phase, t.progress) == (
                    kw["task_status"], kw["verdict"], kw["metrics"], kw["reason"], "done", 1.0)


def test_finishing_in_a_cancelled_run_changes_only_the_attempt(store: Store) -> None:
    dev = enrol(store, "dev-a")
    run = new_run(store, [("t0", dev), ("t1", dev)])
    _, att = store.claim_next_task(dev.id, NOW, LEASE) or (None, None)
    assert att is not None
    cancelled, _ = store.cancel_run(run.id, "stop", NOW + 5)
    fin = d.AttemptFinish(attempt_id=att.id, outcome=d.Outcome.OK, batches=0)
    end: RunEnd = store.close_attempt(fin, task_status=d.Status.COMPLETED,
                                      verdict=d.Verdict.PASS, metrics={"x": 1}, reason="", now_ms=NOW + 9)
    assert (end.status, end.reason, end.finished_ms) == (d.Status.CANCELLED, "stop", NOW + 5)
    after = store.get_run(run.id)
    assert [t.status for t in after.tasks] == [d.Status.CANCELLED, d.Status.CANCELLED]
    assert [t.metrics for t in after.tasks] == [{}, {}]
    assert store.get_attempt(att.id).outcome == "ok"


def test_create_run_returns_what_get_run_reads(store: Store) -> None:
    a, b = enrol(store, "dev-a"), enrol(store, "dev-b")
    for statuses, kind in [([d.Status.QUEUED], "test"), ([d.Status.ERROR, d.Status.QUEUED], "test"),
                           ([d.Status.ERROR, d.Status.ERROR], "test"), ([d.Status.QUEUED, d.Status.QUEUED], "health"),
                           ([], "test")]:
        base = new_run(store, [(f"t{i}", (a, b)[i % 2]) for i in range(len(statuses))])  # for its tasks' specs
        rid = base.id + "-x"
        tasks = [replace(t, id=f"{rid}-t{i}", run_id=rid, status=st, reason="zone" if st == d.Status.ERROR else "")
                 for i, (t, st) in enumerate(zip(base.tasks, statuses, strict=True))]
        run = replace(base, id=rid, tasks=tasks, kind=kind, queue_timeout_ms=5_000, select="class=robot")
        made = store.create_run(run)
        assert made == store.get_run(rid)
        assert made.status == (d.Status.ERROR if statuses and all(s == d.Status.ERROR for s in statuses)
                               else d.Status.RUNNING if d.Status.ERROR in statuses
                               else d.Status.COMPLETED if not statuses else d.Status.QUEUED)
    quarantined = enrol(store, "dev-q")
    store.set_device_state(quarantined.id, "quarantined")
    new_run(store, [("plain", quarantined)])
    assert store.claim_next_task(quarantined.id, NOW, LEASE) is None  # only health checks run there


def test_a_submitted_suite_run_is_returned_as_stored(parts: Parts) -> None:
    """The shipped smoke suite's specs (model, dataset, accuracy, criteria) come back from create_run exactly as
    get_run reads them from their stored JSON; so do a claimed task and a finished run."""
    a, b = parts.enrol("r1"), parts.enrol("r2")
    run = parts.queue(a, b)
    assert run == parts.store.get_run(run.id)
    task, att = parts.claim(a)
    assert task == parts.store.get_task(task.id)
    fin = d.AttemptFinish(att.id, d.Outcome.REFUSED, reason="no")
    got, ack = agents.finish(parts.store, parts.leases, parts.health, parts.clock, a.id, fin)
    assert ack and got == parts.store.get_run(run.id)
    assert got is not None and got.status == d.Status.RUNNING and got.tasks[0].status == d.Status.ERROR
