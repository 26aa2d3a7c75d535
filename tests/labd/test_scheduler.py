"""The scheduler without gRPC: placement, run plans, leases, device health and the dispatcher, over a real SQLite
store with a fake clock (the `parts` fixture in conftest.py)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from labd.events import RunEvents
from labd.scheduler import health as health_mod
from labd.scheduler.dispatcher import Dispatcher
from labd.scheduler.placement import pick_one, relocate, targets, zone_refusal
from labd.scheduler.plan import task_spec
from pilotlab import domain as d
from pilotlab import messages as msg
from pilotlab.tasks import ArtifactRef
from tests.labd.conftest import LEASE_MS, MAX_ATTEMPTS, Parts


# --- placement --------------------------------------------------------------------------------------------------
def test_pick_one_prefers_a_connected_idle_device_then_a_connected_one(parts: Parts) -> None:
    offline, busy, idle = parts.enrol("a-offline"), parts.enrol("b-busy"), parts.enrol("c-idle")
    devices = [offline, busy, idle]
    assert pick_one(parts.sessions, devices) == offline  # nobody connected: by name
    parts.connect(busy, running={"att-x"})
    assert pick_one(parts.sessions, devices) == busy
    idle_session = parts.connect(idle)
    assert pick_one(parts.sessions, devices) == idle
    idle_session.running.add("att-y")
    assert pick_one(parts.sessions, devices) == busy  # connected, both busy: by name
    assert pick_one(parts.sessions, devices, exclude=busy.id) == idle


def test_pick_one_skips_drained_and_quarantined_devices(parts: Parts) -> None:
    a, b = parts.enrol("a"), parts.enrol("b")
    parts.store.set_device_state(a.id, "draining")
    parts.store.set_device_state(b.id, "quarantined")
    assert pick_one(parts.sessions, parts.store.list_devices()) is None


def test_targets_name_one_device_or_a_selector_of_the_suites_classes(parts: Parts) -> None:
    robot, other = parts.enrol("r1"), parts.enrol("w1", device_class="workstation")
    assert targets(parts.store, parts.suite, "r1", "") == [robot]
    assert targets(parts.store, parts.suite, "", "class=robot") == [robot]
    with pytest.raises(d.Invalid, match="exactly one of"):
        targets(parts.store, parts.suite, "r1", "class=robot")
    with pytest.raises(d.Invalid, match="no enrolled device matches"):
        targets(parts.store, parts.suite, "", "class=accelerator-board")
    with pytest.raises(d.Invalid, match="w1 is of another class"):
        targets(parts.store, parts.suite, other.name, "")


def test_zone_refusal_names_the_dataset_and_the_devices_region(parts: Parts) -> None:
    spec = task_spec(parts.suite, parts.suite.tasks[0].name)
    assert spec.dataset is not None
    dev = parts.enrol("cn-1", region="cn-gd")
    assert zone_refusal(spec, dev) == ""  # the smoke dataset is public, any region
    eu_only = dataclasses.replace(spec, dataset=dataclasses.replace(spec.dataset, classification="personal",
                                                                    regions=("eu",)))
    why = zone_refusal(eu_only, dev)
    assert why.startswith("data zone:") and "may only be sent to eu" in why and "region 'cn-gd'" in why


# --- plans ------------------------------------------------------------------------------------------------------
def test_new_run_queues_every_suite_task_on_every_device_at_the_clocks_time(parts: Parts) -> None:
    a, b = parts.enrol("a"), parts.enrol("b")
    parts.clock.advance(1234)
    run = parts.queue(a, b, priority=5, queue_timeout_s=2.5)
    assert [(t.device_name, t.status) for t in run.tasks] == [("a", d.Status.QUEUED), ("b", d.Status.QUEUED)]
    assert run.submitted_ms == parts.clock.now_ms() and run.priority == 5 and run.queue_timeout_ms == 2500
    assert all(t.queued_ms == parts.clock.now_ms() for t in run.tasks)


def test_task_spec_carries_the_suites_criteria_and_artifacts(parts: Parts) -> None:
    spec = task_spec(parts.suite, "digits-single-stream")
    assert spec.scenario == "single-stream" and isinstance(spec.model, ArtifactRef)
    assert {c.metric for c in spec.criteria} == {"accuracy", "latency_ms.p99"}


# --- leases -----------------------------------------------------------------------------------------------------
def test_claim_leases_the_attempt_from_now(parts: Parts) -> None:
    dev = parts.enrol("r1")
    parts.queue(dev)
    parts.clock.advance(500)
    task, att = parts.claim(dev)
    assert att.lease_expires_ms == parts.clock.now_ms() + LEASE_MS and task.attempts == 1
    assert parts.leases.claim(dev.id) is None


def test_a_heartbeat_renews_only_the_attempts_its_session_runs(parts: Parts) -> None:
    a, b = parts.enrol("a"), parts.enrol("b")
    parts.queue(a)
    parts.queue(b)
    _, att_a = parts.claim(a)
    _, att_b = parts.claim(b)
    session = parts.connect(a, running={att_a.id})
    parts.clock.advance(10_000)
    assert parts.leases.renew(session, [att_a.id, att_b.id, "att-unknown"]) == [att_a.id]
    assert parts.store.get_attempt(att_a.id).lease_expires_ms == parts.clock.now_ms() + LEASE_MS
    assert parts.store.get_attempt(att_b.id).lease_expires_ms == att_b.lease_expires_ms


def test_lost_attempts_wait_one_lease_after_start_and_skip_connected_devices(parts: Parts) -> None:
    a, b = parts.enrol("a"), parts.enrol("b")
    parts.queue(a)
    parts.queue(b)
    _, att_a = parts.claim(a)
    parts.claim(b)
    parts.clock.advance(LEASE_MS - 1)
    assert parts.leases.lost() == []  # labd's first lease: agents may still reconnect
    parts.connect(b)
    parts.clock.advance(2)
    assert [x.id for x in parts.leases.lost()] == [att_a.id]


def test_fail_requeues_until_attempts_run_out(parts: Parts) -> None:
    dev = parts.enrol("r1")
    run = parts.queue(dev)
    for n in range(1, MAX_ATTEMPTS + 1):
        _, att = parts.claim(dev)
        run = parts.leases.fail(att, "agent error")
        if n < MAX_ATTEMPTS:
            assert run.tasks[0].status == d.Status.QUEUED and run.tasks[0].reason == "agent error"
    assert run.status == d.Status.ERROR
    assert run.tasks[0].reason == f"agent error; gave up after {MAX_ATTEMPTS} attempts"
    assert parts.metrics.registry.get_sample_value("labd_requeues_total") == MAX_ATTEMPTS - 1


def test_a_task_moves_off_a_lost_device_when_its_run_takes_any_device(parts: Parts) -> None:
    lost, other, board = parts.enrol("a-lost"), parts.enrol("b-other"), parts.enrol("c-board", "accelerator-board")
    parts.connect(other)
    parts.connect(board)
    run = parts.queue(lost, select="name!=zzz", any_device=True)
    _, att = parts.claim(lost)
    run = parts.leases.fail(att, "lease expired", device_lost=True)
    assert run.tasks[0].device_name == "b-other" and run.tasks[0].status == d.Status.QUEUED


def test_relocate_leaves_a_run_on_its_device_without_any_device(parts: Parts) -> None:
    a, b = parts.enrol("a"), parts.enrol("b")
    parts.connect(b)
    run = parts.queue(a, select="class=robot")
    _, att = parts.claim(a)
    assert relocate(parts.store, parts.sessions, run, att) is run


# --- device health ----------------------------------------------------------------------------------------------
def test_repeated_infrastructure_errors_quarantine_and_queue_a_health_check(parts: Parts) -> None:
    dev = parts.enrol("r1")
    for _ in range(health_mod.QUARANTINE_AFTER - 1):
        assert parts.health.after_attempt(dev.id, infra_error=True) is None
    run_id = parts.health.after_attempt(dev.id, infra_error=True)
    assert run_id is not None and parts.store.get_device(dev.id).state == "quarantined"
    check = parts.store.get_run(run_id)
    assert (check.kind, check.priority, check.suite_id) == ("health", health_mod.HEALTH_PRIORITY, "smoke")
    assert check.tasks[0].device_id == dev.id and check.submitted_ms == parts.clock.now_ms()
    assert parts.health.after_attempt(dev.id, infra_error=True) is None  # already quarantined
    parts.health.run_ended(dataclasses.replace(check, status=d.Status.COMPLETED, verdict=d.Verdict.FAIL))
    assert parts.store.get_device(dev.id).state == "quarantined"
    parts.health.run_ended(dataclasses.replace(check, status=d.Status.COMPLETED, verdict=d.Verdict.PASS))
    back = parts.store.get_device(dev.id)
    assert back.state == "active" and back.infra_errors == 0


def test_a_success_resets_the_infrastructure_error_count(parts: Parts) -> None:
    dev = parts.enrol("r1")
    for _ in range(health_mod.QUARANTINE_AFTER - 1):
        parts.health.after_attempt(dev.id, infra_error=True)
    parts.health.after_attempt(dev.id, infra_error=False)
    assert parts.store.get_device(dev.id).infra_errors == 0


# --- the dispatcher ---------------------------------------------------------------------------------------------
def _dispatcher(parts: Parts) -> Dispatcher:
    return Dispatcher(parts.store, parts.sessions, parts.leases, RunEvents(), parts.metrics, parts.clock)


def test_dispatch_assigns_queued_tasks_up_to_the_free_slots(parts: Parts) -> None:
    dev, idle = parts.enrol("r1"), parts.enrol("r2")
    session = parts.connect(dev, slots=1)
    parts.connect(idle)
    first = parts.queue(dev)
    parts.clock.advance(1)
    second = parts.queue(dev)

    async def go() -> None:
        await _dispatcher(parts).dispatch_once()

    asyncio.run(go())
    event = session.outbox.get_nowait()
    assert isinstance(event, msg.Assign) and session.outbox.empty()
    a = event.assignment
    assert a.run_id == first.id and a.task_name == "digits-single-stream" and a.scenario == "single-stream"
    assert session.running == {a.attempt_id}
    assert parts.store.get_run(second.id).status == d.Status.QUEUED


def test_reaping_requeues_attempts_of_lost_devices_and_expires_the_queue(parts: Parts) -> None:
    dev, waiting = parts.enrol("r1"), parts.enrol("r2")
    run = parts.queue(dev)
    stale = parts.queue(waiting, queue_timeout_s=1.0)
    _, att = parts.claim(dev)
    parts.clock.advance(LEASE_MS + 1)

    async def go() -> None:
        await _dispatcher(parts).reap_expired()

    asyncio.run(go())
    assert parts.store.get_attempt(att.id).status == d.Status.ERROR
    assert parts.store.get_run(run.id).tasks[0].status == d.Status.QUEUED
    assert parts.store.get_run(stale.id).status == d.Status.ERROR
    assert parts.metrics.registry.get_sample_value("labd_lease_expiries_total") == 1
    assert parts.store.get_device(waiting.id).last_seen_ms < parts.clock.now_ms()  # not connected: not touched


def test_a_cancelled_attempt_is_told_to_stop_and_its_slot_freed_after_the_grace(parts: Parts) -> None:
    dev = parts.enrol("r1")
    session = parts.connect(dev)
    parts.queue(dev)
    _, att = parts.claim(dev)
    session.running.add(att.id)
    run_id = parts.store.get_task(att.task_id).run_id
    run, running = parts.store.cancel_run(run_id, "stop", parts.clock.now_ms())

    async def go() -> None:
        await _dispatcher(parts).run_cancelled(run, running, grace_s=0.01)
        assert session.outbox.get_nowait() == msg.Cancel(attempt_id=att.id, reason="stop")
        assert att.id in session.running
        await asyncio.sleep(0.05)
        assert att.id not in session.running

    asyncio.run(go())
