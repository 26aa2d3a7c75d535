"""A full disk or database as labd sees it, in-process: what says the storage is full, one log line per change of
state, and the lab faults a full store cannot record, kept in memory (and shown) until it can. The real thing, a full
tmpfs under a real labd, is tests/e2e/test_storage_full.py."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from labd import storage
from labd.handlers import agents
from pilotlab import domain as d
from tests.labd.conftest import Parts

DB_FULL = OperationalError("INSERT INTO result_batches …", {}, sqlite3.OperationalError("database or disk is full"))


class DiskFull(Exception):
    sqlstate = "53100"  # what psycopg's errors carry for PostgreSQL's disk_full


def test_what_says_the_storage_is_full() -> None:
    assert storage.why_full(OSError(errno.ENOSPC, "No space left on device")) == "no space left on device"
    assert storage.why_full(OSError(errno.EDQUOT, "Disk quota exceeded")) == "disk quota exceeded"
    assert storage.why_full(DB_FULL) == "database or disk is full"
    assert storage.why_full(DiskFull("could not extend file")) == "disk full"
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise RuntimeError("writing the bundle failed") from e
    except RuntimeError as wrapped:
        assert storage.why_full(wrapped) == "no space left on device"
    for other in (OSError(errno.EACCES, "Permission denied"), ValueError("disk"), None):
        assert storage.why_full(other) == ""


class Watch(storage.StorageWatch):
    """A watch whose directory has as much free space as the test says."""

    free = 100 << 20

    def _free(self) -> tuple[int, Path] | None:
        return self.free, Path("/lab")


def test_one_line_when_full_and_one_when_there_is_space_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="labd.storage")
    w = Watch([Path("/lab")], "the lab's data dir (/lab)")
    w.check()
    w.free = 10 << 10
    for _ in range(5):
        with pytest.raises(d.StorageFull, match=r"^lab storage full \(10 KiB free\): free space in the lab's data dir"):
            w.check()
    w.free = 100 << 20
    w.check()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("lab storage full (10 KiB free)"), lines
    assert lines[1].startswith("lab storage has space again (100 MiB free")


def test_a_failed_write_makes_the_lab_full_until_there_is_room_beyond_what_failed() -> None:
    w = Watch([Path("/lab")])
    w.free = 5 << 20  # above the floor: only the write could tell
    assert w.noted(ValueError("not about space")) is None and not w.full_reason()
    full = w.noted(DB_FULL)
    assert isinstance(full, d.StorageFull) and "database or disk is full" in str(full)
    assert w.full_reason()  # 5 MiB free did not hold the write
    w.free = 12 << 20
    assert w.full_reason()
    w.free = (5 << 20) + storage.CLEAR_MARGIN_BYTES
    assert not w.full_reason()


def test_a_fault_the_full_store_cannot_record_is_kept_and_shown_until_it_can(parts: Parts,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    dev = parts.enrol("r1")
    run = parts.queue(dev)
    _, att = parts.claim(dev)
    real_finish = parts.store.finish_attempt

    def full(*_: object, **__: object) -> d.Run:
        raise DB_FULL

    monkeypatch.setattr(parts.store, "finish_attempt", full)
    why = "lab storage full (database or disk is full): free space in the lab's data dir, then resubmit"
    shown = parts.leases.storage_full(dev.id, att.id, why)
    assert shown is not None and shown.status == d.Status.ERROR and shown.reason == why
    assert parts.leases.storage_full(dev.id, att.id, why) is None  # ended already
    assert parts.store.get_run(run.id).status == d.Status.RUNNING  # the store could not record it...
    seen = parts.leases.storage.overlay(parts.store.get_run(run.id))  # ...GetRun and WatchRun show it all the same
    assert (seen.status, seen.reason, seen.tasks[0].status) == (d.Status.ERROR, why, d.Status.ERROR)
    # The agent, told to stop, reports its attempt cancelled: acknowledged, and it stays the lab's fault.
    got, ack = agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id,
                             d.AttemptFinish(att.id, d.Outcome.CANCELLED, reason="cancelled by the lab"))
    assert ack and got is not None and got.status == d.Status.ERROR
    with pytest.raises(OperationalError):
        parts.leases.record_faults()

    monkeypatch.setattr(parts.store, "finish_attempt", real_finish)  # space again
    assert parts.leases.record_faults() == [run.id]
    stored = parts.store.get_run(run.id)
    assert (stored.status, stored.reason) == (d.Status.ERROR, why)
    assert not parts.leases.storage.unrecorded() and parts.leases.storage.overlay(stored) == stored
    assert parts.store.get_device(dev.id).infra_errors == 0
