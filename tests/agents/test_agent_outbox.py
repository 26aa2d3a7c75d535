"""The durable outbox: batches and finishes on disk until acked, surviving a restart, written atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.outbox import Outbox
from pilotlab.v1 import agent_pb2


def batch(attempt: str, seq: int) -> agent_pb2.ResultBatch:
    return agent_pb2.ResultBatch(attempt_id=attempt, seq=seq, kind="latency", index=[seq], sample_index=[seq * 2],
                                 t_ns=[2**62 + seq], value=[1000 + seq])


def finished(attempt: str, n: int) -> agent_pb2.TaskFinished:
    return agent_pb2.TaskFinished(attempt_id=attempt, outcome=agent_pb2.OUTCOME_OK, batches=n, reason="done")


def describe(msgs: list[agent_pb2.AgentMessage]) -> list[tuple[str, str, int]]:
    out = []
    for m in msgs:
        kind = m.WhichOneof("msg")
        if kind == "results":
            out.append(("results", m.results.attempt_id, m.results.seq))
        else:
            assert kind == "finished"
            out.append(("finished", m.finished.attempt_id, m.finished.batches))
    return out


def fill(box: Outbox) -> None:
    # out of order on purpose, including seq 10 which sorts after 9 only when zero-padded
    for seq in (2, 0, 10, 1, 9):
        box.put_batch(batch("att-b", seq))
    box.put_finished(finished("att-b", 11))
    box.put_batch(batch("att-a", 0))
    box.put_finished(finished("att-a", 1))
    box.put_batch(batch("att-c", 0))  # still running: no finish yet


EXPECTED = [("results", "att-a", 0), ("finished", "att-a", 1),
            ("results", "att-b", 0), ("results", "att-b", 1), ("results", "att-b", 2), ("results", "att-b", 9),
            ("results", "att-b", 10), ("finished", "att-b", 11),
            ("results", "att-c", 0)]


def test_put_returns_agent_message(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    m = box.put_batch(batch("att-1", 3))
    assert m.WhichOneof("msg") == "results" and m.results == batch("att-1", 3)
    f = box.put_finished(finished("att-1", 4))
    assert f.WhichOneof("msg") == "finished" and f.finished.batches == 4


def test_pending_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    fill(box)
    msgs = box.pending()
    assert describe(msgs) == EXPECTED
    assert msgs[0].results.t_ns[0] == 2**62  # payload kept intact
    assert box.attempts() == ["att-a", "att-b", "att-c"]
    assert box.batch_count("att-b") == 5
    assert box.has_finished("att-b") and not box.has_finished("att-c")


def test_no_tmp_files_left(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    fill(box)
    assert list(tmp_path.rglob("*.tmp")) == []
    assert sorted(p.name for p in (tmp_path / "att-b").iterdir()) == [
        "b-0000000000.pb", "b-0000000001.pb", "b-0000000002.pb", "b-0000000009.pb", "b-0000000010.pb",
        "finished.pb"]


def test_stray_tmp_file_is_not_pending(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.put_batch(batch("att-1", 0))
    (tmp_path / "att-1" / "b-0000000001.pb.tmp").write_bytes(b"half a write")  # a crash mid-write
    assert describe(box.pending()) == [("results", "att-1", 0)]


def test_ack_batch(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    fill(box)
    box.ack_batch("att-b", 9)
    box.ack_batch("att-b", 0)
    box.ack_batch("att-b", 77)  # unknown: no error
    got = describe(box.pending())
    assert ("results", "att-b", 9) not in got and ("results", "att-b", 0) not in got
    assert got == [x for x in EXPECTED if x not in {("results", "att-b", 9), ("results", "att-b", 0)}]
    assert box.batch_count("att-b") == 3


def test_ack_finished_removes_attempt_dir(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    fill(box)
    box.ack_finished("att-b")
    assert not (tmp_path / "att-b").exists()
    assert box.attempts() == ["att-a", "att-c"]
    assert describe(box.pending()) == [("results", "att-a", 0), ("finished", "att-a", 1), ("results", "att-c", 0)]
    box.ack_finished("att-b")  # twice: no error


def test_restart_sees_same_pending(tmp_path: Path) -> None:
    first = Outbox(tmp_path / "ob")
    fill(first)
    first.ack_batch("att-a", 0)
    before = first.pending()
    del first
    second = Outbox(tmp_path / "ob")
    after = second.pending()
    assert describe(after) == describe(before)
    assert [m.SerializeToString() for m in after] == [m.SerializeToString() for m in before]
    second.ack_finished("att-a")
    assert describe(Outbox(tmp_path / "ob").pending())[0] == ("results", "att-b", 0)


def test_rewriting_a_batch_replaces_it(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.put_batch(batch("att-1", 0))
    b = batch("att-1", 0)
    b.value[:] = [42]
    box.put_batch(b)
    msgs = box.pending()
    assert len(msgs) == 1 and list(msgs[0].results.value) == [42]


def test_empty_outbox(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "new" / "nested")
    assert (tmp_path / "new" / "nested").is_dir()
    assert box.pending() == [] and box.attempts() == []


@pytest.mark.parametrize("bad", ["", ".", "..", ".hidden", "a/b", "../escape", "/abs"])
def test_bad_attempt_ids_rejected(tmp_path: Path, bad: str) -> None:
    box = Outbox(tmp_path / "ob")
    with pytest.raises(ValueError, match="bad attempt id"):
        box.put_batch(batch(bad, 0))
    with pytest.raises(ValueError):
        box.put_finished(finished(bad, 0))
    with pytest.raises(ValueError):
        box.ack_batch(bad, 0)
    with pytest.raises(ValueError):
        box.ack_finished(bad)
    assert list(tmp_path.iterdir()) == [tmp_path / "ob"]
    assert list((tmp_path / "ob").iterdir()) == []
