"""What the agent puts on its session: result batches queued together travel in one ResultBatches message, bounded in
count and bytes, only to a lab that takes them; every other message, and everything to an older lab, goes alone, in
the order queued."""

from __future__ import annotations

import queue

from agents.worker import session_messages
from pilotlab.messages import MAX_BATCHES_PER_MESSAGE, MAX_BYTES_PER_MESSAGE
from pilotlab.v1 import agent_pb2


def _batch(seq: int, samples: int = 2) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(results=agent_pb2.ResultBatch(
        attempt_id="att-1", seq=seq, kind="latency", index=list(range(samples)), value=[7] * samples))


def _sent(items: list[agent_pb2.AgentMessage], batches_ok: bool) -> list[agent_pb2.AgentMessage]:
    q: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
    for m in items:
        q.put(m)
    q.put(None)
    return list(session_messages(q, lambda: batches_ok))


def _shape(sent: list[agent_pb2.AgentMessage]) -> list[object]:
    return [[b.seq for b in m.result_batches.batches] if m.WhichOneof("msg") == "result_batches"
            else (m.WhichOneof("msg"), m.results.seq) for m in sent]


def test_batches_queued_together_share_a_message_and_the_rest_keep_their_order() -> None:
    heartbeat = agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(sent_unix_ms=1))
    finished = agent_pb2.AgentMessage(finished=agent_pb2.TaskFinished(attempt_id="att-1", batches=11))
    items = [heartbeat, *[_batch(s) for s in range(11)], finished, _batch(11)]
    assert _shape(_sent(items, batches_ok=True)) == [
        ("heartbeat", 0), list(range(MAX_BATCHES_PER_MESSAGE)), list(range(MAX_BATCHES_PER_MESSAGE, 11)),
        ("finished", 0), ("results", 11)]


def test_an_older_lab_gets_every_batch_alone() -> None:
    items = [_batch(s) for s in range(5)]
    assert _sent(items, batches_ok=False) == items


def test_a_message_stays_under_the_byte_bound() -> None:
    big = 70_000  # about 0.6 MiB a batch (two packed int64 columns of varints)
    items = [_batch(s, big) for s in range(8)]
    per = items[0].ByteSize()
    sent = _sent(items, batches_ok=True)
    assert [b.seq for m in sent for b in (m.result_batches.batches or [m.results])] == list(range(8))
    assert all(m.ByteSize() <= MAX_BYTES_PER_MESSAGE + 16 for m in sent)
    assert len(sent) == -(-8 // (MAX_BYTES_PER_MESSAGE // per))
