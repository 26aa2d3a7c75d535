"""Issue 12 at the handler level: artifacts go only to a device whose running assignment needs them, inside their
data zone, and only while the lab's own copy hashes to its digest (a corrupt or missing copy is the lab's fault, never
the device's); late, out-of-window and malformed result batches are refused and change nothing stored."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from evalsuites import load_suite
from labd import stored_artifacts
from labd.catalog import register_suite
from labd.events import RunEvents
from labd.handlers import agents, artifacts
from labd.scheduler.dispatcher import Dispatcher
from labd.scheduler.plan import SubmitOptions, new_run
from pilotlab import domain as d
from tests.e2e.conftest import make_suite
from tests.labd.conftest import ENGINEER, Parts


def _batch(att: d.Attempt, seq: int = 0, n: int = 3, **arrays: list[int] | list[float]) -> d.ResultBatch:
    b = d.ResultBatch(attempt_id=att.id, seq=seq, kind="latency", index=list(range(n)), sample_index=list(range(n)),
                      t_ns=[1_000 * i for i in range(n)], value=[500_000] * n)
    for k, v in arrays.items():
        setattr(b, k, v)
    return b


def _running(parts: Parts, dev: d.Device) -> d.Attempt:
    parts.queue(dev)
    _, att = parts.claim(dev)
    return att


def _ingest(parts: Parts, dev: d.Device, batch: d.ResultBatch) -> bool:
    return agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, batch)


def _stored(parts: Parts, att: d.Attempt) -> tuple[set[int], dict[str, list[int]]]:
    cols = parts.store.samples(att.id, "latency")
    return parts.store.batch_seqs(att.id), {k: np.asarray(v).tolist() for k, v in cols.items()}


# --- result integrity -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("seq", "why"), [(-1, "outside 0..1000000"), (2**62, "outside 0..1000000"),
                                          (1_000_001, "outside 0..1000000")])
def test_a_seq_outside_the_window_is_refused(parts: Parts, seq: int, why: str) -> None:
    dev = parts.enrol("r1")
    att = _running(parts, dev)
    assert _ingest(parts, dev, _batch(att, 0))
    before = _stored(parts, att)
    with pytest.raises(agents.BatchRefused, match=why):
        _ingest(parts, dev, _batch(att, seq))
    assert _stored(parts, att) == before


@pytest.mark.parametrize("arrays", [{"t_ns": [1, 2]}, {"index": [0, 1, 2, 3]}, {"sample_index": []},
                                    {"value": [1]}, {"aux": [0, 0]}, {"fvalue": [0.5]}])
def test_arrays_of_unequal_lengths_are_refused(parts: Parts, arrays: dict[str, list[int]]) -> None:
    dev = parts.enrol("r1")
    att = _running(parts, dev)
    assert _ingest(parts, dev, _batch(att, 0))
    before = _stored(parts, att)
    with pytest.raises(agents.BatchRefused, match="unequal lengths"):
        _ingest(parts, dev, _batch(att, 1, **arrays))
    assert _stored(parts, att) == before


def test_optional_columns_may_be_empty_or_full(parts: Parts) -> None:
    dev = parts.enrol("r1")
    att = _running(parts, dev)
    assert _ingest(parts, dev, _batch(att, 0, aux=[7, 8, 9], fvalue=[0.1, 0.2, 0.3]))
    assert _ingest(parts, dev, _batch(att, 1))


@pytest.mark.parametrize("outcome", [d.Outcome.OK, d.Outcome.CANCELLED, d.Outcome.ERROR])
def test_a_batch_after_the_attempt_ended_is_refused_and_the_record_stays(parts: Parts, outcome: d.Outcome) -> None:
    dev = parts.enrol("r1")
    att = _running(parts, dev)
    assert _ingest(parts, dev, _batch(att, 0))
    agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id,
                  d.AttemptFinish(att.id, outcome, batches=1, reason="x"))
    ended = parts.store.get_attempt(att.id)
    assert ended.status != d.Status.RUNNING
    task_before = parts.store.get_task(att.task_id)
    before = _stored(parts, att)
    with pytest.raises(agents.BatchRefused, match=r"came after the attempt ended \("):
        _ingest(parts, dev, _batch(att, 1))
    assert _stored(parts, att) == before
    assert parts.store.get_task(att.task_id) == task_before
    # A resend of a batch stored while the attempt ran is a duplicate (acknowledged), and changes nothing either.
    assert _ingest(parts, dev, _batch(att, 0, value=[1, 2, 3])) is False
    assert _stored(parts, att) == before


def test_a_foreign_attempt_is_still_denied(parts: Parts) -> None:
    dev, other = parts.enrol("r1"), parts.enrol("r2")
    att = _running(parts, dev)
    with pytest.raises(d.Denied, match="not assigned to this device"):
        _ingest(parts, other, _batch(att, 0))
    assert parts.store.batch_seqs(att.id) == set()


# --- artifacts and data zones -----------------------------------------------------------------------------------
def test_a_device_gets_what_its_running_assignment_needs_and_nothing_else(parts: Parts) -> None:
    dev, idle = parts.enrol("r1"), parts.enrol("r2")
    att = _running(parts, dev)
    spec = parts.store.get_task(att.task_id).spec
    assert spec is not None and spec.dataset is not None
    for sha in (spec.model.sha256, spec.dataset.sha256.upper()):
        assert artifacts.artifact_for_device(parts.store, dev.id, sha).sha256 == sha.lower()
    with pytest.raises(d.Denied, match="not needed by any task running on device r2"):
        artifacts.artifact_for_device(parts.store, idle.id, spec.model.sha256)
    with pytest.raises(d.Denied, match="not needed by any task running on device r1"):
        artifacts.artifact_for_device(parts.store, dev.id, "0" * 64)
    # Once the attempt has ended, its artifacts are no longer served to the device.
    agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id,
                  d.AttemptFinish(att.id, d.Outcome.CANCELLED, reason="x"))
    with pytest.raises(d.Denied, match="not needed by any task running"):
        artifacts.artifact_for_device(parts.store, dev.id, spec.model.sha256)


def test_a_dataset_outside_its_zone_is_refused_even_to_an_assigned_device(parts: Parts, tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    make_suite(tmp_path / "suites", "zoned", regions=["eu-west"], classification="sensitive", own_dataset=True)
    suite = load_suite(tmp_path / "suites" / "zoned")
    register_suite(suite, parts.store, tmp_path / "artifacts")
    dev = parts.enrol("us1", region="us-east")
    # Planned while the device said eu-west (the store now says us-east): ArtifactService checks again.
    run = new_run(suite, [replace(dev, region="eu-west")], ENGINEER, SubmitOptions(suite_id=suite.id),
                  parts.clock.now_ms())
    parts.store.create_run(run)
    _, att = parts.claim(dev)
    spec = parts.store.get_task(att.task_id).spec
    assert spec is not None and spec.dataset is not None and spec.dataset.regions == ("eu-west",)
    caplog.set_level("INFO", logger="labd.zones")
    with pytest.raises(d.Denied, match=r"data zone: dataset .* \(sensitive\) may only be sent to eu-west; "
                                       r"device us1 has region 'us-east'"):
        artifacts.artifact_for_device(parts.store, dev.id, spec.dataset.sha256)
    assert artifacts.artifact_for_device(parts.store, dev.id, spec.model.sha256).sha256 == spec.model.sha256
    lines = [r.getMessage() for r in caplog.records]
    assert any("refused dataset" in m and spec.dataset.sha256 in m and "sensitive" in m and "us1" in m
               and "us-east" in m for m in lines)
    assert any("allowed model" in m and spec.model.sha256 in m and "us1" in m for m in lines)


# --- the lab's own copies of artifacts --------------------------------------------------------------------------
def _corrupt(path: str) -> None:
    with open(path, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))


def _model(parts: Parts) -> d.ArtifactRecord:
    return parts.store.get_artifact(parts.suite.artifacts[parts.suite.tasks[0].model].sha256)


def test_a_stored_file_is_hashed_once_per_version(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"x" * 1000)
    memo = stored_artifacts.DigestMemo(racy_ns=0)
    good = memo.digest(str(path))[0]
    for _ in range(3):
        assert memo.digest(str(path)) == (good, False)
    assert memo.hashed == 1
    with path.open("ab") as f:  # another version: hashed again
        f.write(b"y")
    bad, fresh = memo.digest(str(path))
    assert fresh and bad != good and memo.hashed == 2
    assert memo.digest(str(path), force=True)[1] and memo.hashed == 3
    path.unlink()
    with pytest.raises(FileNotFoundError):
        memo.digest(str(path))
    # A file changed within the last 2 s is hashed every time: a second write in the same clock tick (same size,
    # same times) would not show in its stat.
    path.write_bytes(b"x" * 1000)
    racy = stored_artifacts.DigestMemo()
    assert racy.digest(str(path)) == (good, True)
    _corrupt(str(path))
    assert racy.digest(str(path)) == (stored_artifacts.sha256_file(path), True)


def test_a_corrupt_or_missing_stored_artifact_is_the_labs_fault_at_the_door(parts: Parts,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    dev = parts.enrol("r1")
    _running(parts, dev)
    model = _model(parts)
    assert artifacts.artifact_for_device(parts.store, dev.id, model.sha256).sha256 == model.sha256
    caplog.set_level("ERROR", logger="labd.artifacts")
    _corrupt(model.path)
    got = stored_artifacts.sha256_file(model.path)
    for _ in range(3):
        with pytest.raises(d.LabFault, match=rf"stored artifact {model.sha256} \(model .*\) is corrupt \(expected "
                                             rf"sha256 {model.sha256}, got {got}\).*restore"):
            artifacts.artifact_for_device(parts.store, dev.id, model.sha256)
    assert [r.getMessage() for r in caplog.records if "is corrupt" in r.getMessage()] == [
        f"stored artifact {model.sha256} (model {model.name}) is corrupt: expected sha256 {model.sha256}, got {got} "
        f"({model.path}); {stored_artifacts.RESTORE}"]  # one line, however often it is asked for
    os.unlink(model.path)
    with pytest.raises(d.LabFault, match=rf"stored artifact {model.sha256} .* is missing"):
        artifacts.artifact_for_device(parts.store, dev.id, model.sha256)


def test_a_task_whose_stored_artifact_is_corrupt_is_not_dispatched_retried_or_counted(parts: Parts) -> None:
    dev, other = parts.enrol("r1"), parts.enrol("r2")
    session = parts.connect(dev)
    parts.connect(other)
    _corrupt(_model(parts).path)
    run = parts.queue(dev, other)

    asyncio.run(Dispatcher(parts.store, parts.sessions, parts.leases, RunEvents(), parts.metrics,
                           parts.clock).dispatch_once())
    assert session.outbox.empty() and not session.running  # the device never sees the task
    ended = parts.store.get_run(run.id)
    assert ended.status == d.Status.ERROR and "is corrupt (expected sha256" in ended.reason
    assert [(t.status, t.attempts) for t in ended.tasks] == [(d.Status.ERROR, 1)] * 2  # not retried anywhere
    for dv in (dev, other):
        assert (parts.store.get_device(dv.id).state, parts.store.get_device(dv.id).infra_errors) == ("active", 0)


@pytest.mark.parametrize("lab_copy_bad", [True, False])
def test_a_download_the_device_refused_is_the_labs_fault_only_when_the_labs_copy_is_bad(parts: Parts,
                                                                                        lab_copy_bad: bool) -> None:
    dev = parts.enrol("r1")
    att = _running(parts, dev)
    model = _model(parts)
    assert not stored_artifacts.fault(model)  # checked while intact
    if lab_copy_bad:
        _corrupt(model.path)
    reason = (f"artifact fetch failed: could not fetch artifact {model.sha256[:12]} after 3 tries: digest "
              f"0123456789ab does not match {model.sha256[:12]}")
    run, ack = agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id,
                             d.AttemptFinish(att.id, d.Outcome.ERROR, reason=reason))
    assert ack and run is not None
    [task] = run.tasks
    if lab_copy_bad:  # the lab's fault: ended, not requeued, not counted
        assert task.status == d.Status.ERROR and "is corrupt (expected sha256" in task.reason
        assert run.status == d.Status.ERROR and parts.store.get_device(dev.id).infra_errors == 0
        assert task.history[0].reason == reason  # what the device said stays on its attempt
    else:  # the device's (or the network's): requeued and counted
        assert task.status == d.Status.QUEUED and parts.store.get_device(dev.id).infra_errors == 1


def test_a_quarantined_devices_health_check_does_not_fail_it_for_the_labs_fault(parts: Parts) -> None:
    dev = parts.enrol("r1", device_class="smart-terminal")
    session = parts.connect(dev)
    for _ in range(3):
        parts.health.after_attempt(dev.id, infra_error=True)
    assert parts.store.get_device(dev.id).state == "quarantined"
    _corrupt(_model(parts).path)
    asyncio.run(Dispatcher(parts.store, parts.sessions, parts.leases, RunEvents(), parts.metrics,
                           parts.clock).dispatch_once())
    assert session.outbox.empty()
    check = [r for r in parts.store.list_runs() if r.kind == "health"]
    assert [r.status for r in check] == [d.Status.ERROR] and "is corrupt" in check[0].reason
    after = parts.store.get_device(dev.id)
    assert (after.state, after.infra_errors) == ("quarantined", 3)  # not one more error, and no verdict on it
