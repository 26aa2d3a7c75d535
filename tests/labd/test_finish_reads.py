"""Finishing an attempt reads the store once (Store.read_finish) and writes no device health that would not change."""

from __future__ import annotations

from typing import Any

import pytest

from labd.handlers import agents
from pilotlab import domain as d
from tests.labd.conftest import Parts


def _batch(att: d.Attempt, seq: int) -> d.ResultBatch:
    return d.ResultBatch(attempt_id=att.id, seq=seq, kind="latency", index=list(range(3)), sample_index=[0, 1, 2],
                         t_ns=[1_000 * i for i in range(3)], value=[500_000] * 3)


def _forbid(monkeypatch: pytest.MonkeyPatch, store: Any, *names: str) -> None:
    def refuse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a finish read the store apart from read_finish")
    for n in names:
        monkeypatch.setattr(store, n, refuse)


def test_a_finish_reads_once_and_skips_a_health_write_that_changes_nothing(parts: Parts,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    dev = parts.enrol("r1")
    parts.queue(dev)
    _, att = parts.claim(dev)
    for seq in range(2):
        agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, _batch(att, seq))
    _forbid(monkeypatch, parts.store, "get_attempt", "get_task", "batch_seqs", "all_samples", "samples",
            "get_artifact", "note_outcome")
    run_id, ack = agents.finish_attempt(parts.store, parts.leases, parts.health, parts.clock, dev.id,
                                        d.AttemptFinish(att.id, d.Outcome.OK, batches=2))
    monkeypatch.undo()
    assert ack and run_id is not None
    task = parts.store.get_run(run_id).tasks[0]
    assert task.status == d.Status.COMPLETED and task.verdict is not None and task.metrics
    assert parts.store.get_device(dev.id).infra_errors == 0


def test_a_finish_with_a_batch_missing_waits_and_one_of_another_device_is_denied(parts: Parts) -> None:
    dev, other = parts.enrol("r1"), parts.enrol("r2")
    parts.queue(dev)
    _, att = parts.claim(dev)
    agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, _batch(att, 1))
    fin = d.AttemptFinish(att.id, d.Outcome.OK, batches=2)
    with pytest.raises(d.Denied, match="not assigned to this device"):
        agents.finish_attempt(parts.store, parts.leases, parts.health, parts.clock, other.id, fin)
    assert agents.finish_attempt(parts.store, parts.leases, parts.health, parts.clock, dev.id, fin) == (None, False)
    with pytest.raises(d.NotFound):
        agents.finish_attempt(parts.store, parts.leases, parts.health, parts.clock, dev.id,
                              d.AttemptFinish("att-none", d.Outcome.OK, batches=0))


def test_a_success_still_resets_a_devices_error_count(parts: Parts) -> None:
    dev = parts.enrol("r1")
    parts.queue(dev)
    _, att = parts.claim(dev)
    assert parts.store.note_outcome(dev.id, infra_error=True) == 1
    agents.finish_attempt(parts.store, parts.leases, parts.health, parts.clock, dev.id,
                          d.AttemptFinish(att.id, d.Outcome.OK, batches=0))
    assert parts.store.get_device(dev.id).infra_errors == 0
    assert parts.health.after_attempt(dev.id, infra_error=False, known_errors=0) is None
