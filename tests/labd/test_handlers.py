"""labd's handlers without gRPC: each called with the parts it takes, over a real SQLite store with a fake clock
(the `parts` fixture in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from labd.auth import hash_token
from labd.handlers import agents, artifacts, devices, runs, tokens
from pilotlab import domain as d
from pilotlab import messages as msg
from pilotlab.samples import batch_signing_bytes
from tests.labd.conftest import ENGINEER, MAX_ATTEMPTS, Parts


def _batch(att: d.Attempt, seq: int = 0, kind: str = "latency", n: int = 3) -> d.ResultBatch:
    return d.ResultBatch(attempt_id=att.id, seq=seq, kind=kind, index=list(range(n)), sample_index=list(range(n)),
                         t_ns=[1_000 * i for i in range(n)], value=[500_000] * n)


def _signed(key: Ed25519PrivateKey, batch: d.ResultBatch) -> d.ResultBatch:
    arrays = {"index": batch.index, "sample_index": batch.sample_index, "t_ns": batch.t_ns, "value": batch.value,
              "aux": batch.aux, "fvalue": batch.fvalue}
    batch.signature = key.sign(batch_signing_bytes(batch.attempt_id, batch.seq, batch.kind, arrays))
    return batch


def _running(parts: Parts, dev: d.Device) -> tuple[d.Run, d.Attempt]:
    run = parts.queue(dev)
    _, att = parts.claim(dev)
    return run, att


# --- enrolment and sessions -------------------------------------------------------------------------------------
def test_enrol_stores_the_device_and_a_device_token(parts: Parts) -> None:
    parts.clock.advance(42)
    dev, token = agents.enrol(parts.store, parts.clock, "r1", "robot", "eu", {"rack": "2"}, d.Capabilities(), b"")
    assert dev.last_seen_ms == parts.clock.now_ms() and dev.tags == {"rack": "2"}
    rec = parts.store.find_token(hash_token(token))
    assert rec is not None and rec.role == d.Role.DEVICE and rec.device_id == dev.id


@pytest.mark.parametrize(("name", "device_class", "why"), [("", "robot", "needs a --name"),
                                                           ("r1", "toaster", "unknown device class")])
def test_enrol_refuses_a_nameless_device_or_an_unknown_class(parts: Parts, name: str, device_class: str,
                                                             why: str) -> None:
    with pytest.raises(d.Invalid, match=why):
        agents.enrol(parts.store, parts.clock, name, device_class, "", {}, d.Capabilities(), b"")


def test_session_opened_marks_the_device_online_and_requeues_what_the_agent_lost(parts: Parts) -> None:
    dev = parts.enrol("r1")
    kept_run, kept = _running(parts, dev)
    lost_run, lost = _running(parts, dev)
    parts.clock.advance(5_000)
    changed = agents.session_opened(parts.store, parts.leases, parts.clock, dev.id, d.Capabilities(slots=4),
                                    {kept.id})
    assert changed == [lost_run.id]
    now = parts.store.get_device(dev.id)
    assert (now.status, now.last_seen_ms, now.capabilities.slots) == ("online", parts.clock.now_ms(), 4)
    assert parts.store.get_attempt(kept.id).status == d.Status.RUNNING
    assert parts.store.get_run(lost_run.id).tasks[0].status == d.Status.QUEUED
    assert parts.store.get_run(kept_run.id).tasks[0].status == d.Status.RUNNING


def test_session_closed_marks_the_device_offline(parts: Parts) -> None:
    dev = parts.enrol("r1")
    parts.clock.advance(7)
    agents.session_closed(parts.store, parts.clock, dev.id)
    now = parts.store.get_device(dev.id)
    assert (now.status, now.last_seen_ms) == ("offline", parts.clock.now_ms())


def test_heartbeat_renews_the_leases_the_session_holds(parts: Parts) -> None:
    dev = parts.enrol("r1")
    _, att = _running(parts, dev)
    session = parts.connect(dev, running={att.id})
    parts.clock.advance(20_000)
    agents.heartbeat(parts.leases, session, [att.id])
    assert parts.store.get_attempt(att.id).lease_expires_ms == parts.clock.now_ms() + parts.leases.lease_ms


def test_progress_is_recorded_for_the_devices_own_attempts_only(parts: Parts) -> None:
    dev, other = parts.enrol("r1"), parts.enrol("r2")
    run, att = _running(parts, dev)
    assert agents.progress(parts.store, dev.id, msg.Progress(att.id, "warmup", 0.5)) == run.id
    task = parts.store.get_run(run.id).tasks[0]
    assert (task.phase, task.progress) == ("warmup", 0.5)
    with pytest.raises(d.Denied, match="not assigned to this device"):
        agents.progress(parts.store, other.id, msg.Progress(att.id, "warmup", 0.9))


# --- results ----------------------------------------------------------------------------------------------------
def test_ingest_stores_a_batch_once_and_counts_resends(parts: Parts) -> None:
    dev = parts.enrol("r1")
    _, att = _running(parts, dev)
    assert agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, _batch(att)) is True
    assert agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, _batch(att)) is False
    assert parts.store.batch_seqs(att.id) == {0}
    reg = parts.metrics.registry
    assert reg.get_sample_value("labd_results_ingested_total", {"kind": "latency"}) == 3
    assert reg.get_sample_value("labd_result_batches_duplicate_total") == 1


def test_ingest_refuses_an_unknown_kind(parts: Parts) -> None:
    dev = parts.enrol("r1")
    _, att = _running(parts, dev)
    with pytest.raises(d.Invalid, match="is not one of"):
        agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, _batch(att, kind="weather"))


def test_ingest_checks_the_devices_signature(parts: Parts) -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    dev = parts.enrol("r1", public_key=public)
    _, att = _running(parts, dev)
    assert agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, _signed(key, _batch(att)), public)
    forged = _signed(Ed25519PrivateKey.generate(), _batch(att, seq=1))
    with pytest.raises(d.Denied, match="does not carry this device's signature"):
        agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, forged, public)


# --- finishing --------------------------------------------------------------------------------------------------
def test_finish_waits_for_missing_batches(parts: Parts) -> None:
    dev = parts.enrol("r1")
    _, att = _running(parts, dev)
    fin = d.AttemptFinish(att.id, d.Outcome.OK, batches=2)
    agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, _batch(att, seq=0))
    assert agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id, fin) == (None, False)
    assert parts.store.get_attempt(att.id).status == d.Status.RUNNING


@pytest.mark.parametrize("batches", [2**63 - 1, agents.MAX_BATCH_SEQ + 2, -1])
def test_a_finish_reporting_an_impossible_batch_count_is_refused_at_once(parts: Parts, batches: int) -> None:
    # 2**63 - 1 once froze labd: the missing batches were listed (set(range(n))) while holding the GIL.
    dev = parts.enrol("r1")
    _, att = _running(parts, dev)
    agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, _batch(att, seq=0))
    with pytest.raises(d.Invalid, match=f"reports {batches} result batches; an attempt sends 0 to 1000001"):
        agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id,
                      d.AttemptFinish(att.id, d.Outcome.OK, batches=batches))
    assert parts.store.get_attempt(att.id).status == d.Status.RUNNING  # nothing stored changed


def test_finish_ok_grades_the_task_and_resets_the_devices_error_count(parts: Parts) -> None:
    dev = parts.enrol("r1")
    _, att = _running(parts, dev)
    parts.store.note_outcome(dev.id, infra_error=True)
    parts.clock.advance(60_000)
    run, ack = agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id,
                             d.AttemptFinish(att.id, d.Outcome.OK, batches=0))
    assert ack and run is not None
    assert run.status == d.Status.COMPLETED and run.tasks[0].verdict == d.Verdict.FAIL  # nothing was measured
    assert run.finished_ms == parts.clock.now_ms()
    assert parts.store.get_device(dev.id).infra_errors == 0


def test_finish_error_requeues_the_task(parts: Parts) -> None:
    dev = parts.enrol("r1")
    _, att = _running(parts, dev)
    run, ack = agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id,
                             d.AttemptFinish(att.id, d.Outcome.ERROR, reason="out of memory"))
    assert ack and run is not None and run.tasks[0].status == d.Status.QUEUED
    assert run.tasks[0].reason == "out of memory" and run.tasks[0].attempts < MAX_ATTEMPTS
    assert parts.store.get_device(dev.id).infra_errors == 1


def test_a_refusal_ends_the_task_with_the_devices_reason(parts: Parts) -> None:
    dev = parts.enrol("r1")
    _, att = _running(parts, dev)
    run, _ = agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id,
                           d.AttemptFinish(att.id, d.Outcome.REFUSED, reason="setting out of range"))
    assert run is not None and run.status == d.Status.ERROR
    assert run.tasks[0].reason == "refused by the device: setting out of range"


def test_finishing_an_attempt_that_already_ended_is_acknowledged_and_changes_nothing(parts: Parts) -> None:
    dev = parts.enrol("r1")
    _, att = _running(parts, dev)
    fin = d.AttemptFinish(att.id, d.Outcome.CANCELLED)
    agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id, fin)
    assert agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id, fin) == (None, True)


# --- runs -------------------------------------------------------------------------------------------------------
def test_submit_run_on_a_named_device(parts: Parts) -> None:
    dev = parts.enrol("r1")
    parts.clock.advance(99)
    run = runs.submit_run(parts.store, parts.sessions, parts.clock, ENGINEER,
                          runs.SubmitOptions(suite_id="smoke", device="r1"))
    assert [t.device_id for t in run.tasks] == [dev.id] and run.submitted_ms == parts.clock.now_ms()
    assert run.submitted_by == ENGINEER.token_id and run.status == d.Status.QUEUED


def test_submit_any_device_takes_one_connected_device(parts: Parts) -> None:
    parts.enrol("a")
    parts.connect(parts.enrol("b"))
    run = runs.submit_run(parts.store, parts.sessions, parts.clock, ENGINEER,
                          runs.SubmitOptions(suite_id="smoke", select="class=robot", any_device=True))
    assert [t.device_name for t in run.tasks] == ["b"] and run.any_device


def test_submit_any_device_needs_a_selector_and_a_usable_device(parts: Parts) -> None:
    dev = parts.enrol("a")
    with pytest.raises(d.Invalid, match="--any needs --select"):
        runs.submit_run(parts.store, parts.sessions, parts.clock, ENGINEER,
                        runs.SubmitOptions(suite_id="smoke", device="a", any_device=True))
    parts.store.set_device_state(dev.id, "draining")
    with pytest.raises(d.Invalid, match="drained or quarantined"):
        runs.submit_run(parts.store, parts.sessions, parts.clock, ENGINEER,
                        runs.SubmitOptions(suite_id="smoke", select="class=robot", any_device=True))


def test_cancel_run_returns_the_attempts_that_were_running(parts: Parts) -> None:
    dev = parts.enrol("r1")
    run, att = _running(parts, dev)
    parts.clock.advance(3)
    cancelled, running = runs.cancel_run(parts.store, parts.clock, run.id, "")
    assert cancelled.status == d.Status.CANCELLED and cancelled.reason == "cancelled by a user"
    assert cancelled.finished_ms == parts.clock.now_ms() and [a.id for a in running] == [att.id]


# --- devices, tokens, artifacts ---------------------------------------------------------------------------------
def test_list_devices_shows_a_device_busy_while_its_session_runs_attempts(parts: Parts) -> None:
    a, b = parts.enrol("a"), parts.enrol("b")
    parts.connect(a, running={"att-1"})
    parts.connect(b)
    parts.store.touch_devices([a.id, b.id], parts.clock.now_ms())
    assert [(x.name, x.status) for x in devices.list_devices(parts.store, parts.sessions)] == [("a", "busy"),
                                                                                             ("b", "online")]


def test_set_state_drains_a_device_and_refuses_unknown_states(parts: Parts) -> None:
    parts.enrol("r1")
    assert devices.set_state(parts.store, "r1", "draining").state == "draining"
    with pytest.raises(d.Invalid, match="unknown device state"):
        devices.set_state(parts.store, "r1", "asleep")


def test_create_token_mints_user_roles_only(parts: Parts) -> None:
    token, tid, role = tokens.create_token(parts.store, parts.clock, "engineer")
    rec = parts.store.find_token(hash_token(token))
    assert role == d.Role.ENGINEER and rec is not None and rec.role == role and rec.id == tid
    for bad in ("device", "wizard"):
        with pytest.raises(d.Invalid, match="unknown role"):
            tokens.create_token(parts.store, parts.clock, bad)


def test_find_artifact_checks_its_file_and_the_offset(parts: Parts) -> None:
    model = parts.suite.artifacts[parts.suite.tasks[0].model]
    art = artifacts.find_artifact(parts.store, model.sha256.upper())
    assert art.size == model.size and artifacts.read_chunk(art.path, 0, 4) == Path(art.path).read_bytes()[:4]
    with pytest.raises(d.Invalid, match="outside artifact"):
        artifacts.find_artifact(parts.store, model.sha256, art.size + 1)
    Path(art.path).unlink()
    with pytest.raises(d.LabFault, match="stored artifact .* is missing"):  # the lab's fault, not the device's
        artifacts.find_artifact(parts.store, model.sha256)
