"""The agent protocol spoken directly: device isolation, resumable artifacts, duplicate batches."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pilotlab.messages import ACKS, MAX_BATCHES_PER_MESSAGE, RESULT_BATCHES
from pilotlab.v1 import agent_pb2, agent_pb2_grpc, artifact_pb2, artifact_pb2_grpc, common_pb2
from tests.e2e.conftest import labctl_json, make_token, wait_until

MODEL = Path("evalsuites/smoke/models/digits_logreg.onnx")


class RawDevice:
    """A device speaking the real protocol by hand, for checks the real agent would never attempt."""

    def __init__(self, addr: str, agent_token: str, name: str, public_key: bytes = b"", region: str = "",
                 features: tuple[str, ...] = ()) -> None:
        self.channel = grpc.insecure_channel(addr)
        stub = agent_pb2_grpc.AgentServiceStub(self.channel)
        resp = stub.Enrol(agent_pb2.EnrolRequest(name=name, device_class="smart-terminal",
                                                 capabilities=common_pb2.Capabilities(slots=1),
                                                 public_key=public_key, region=region),
                          metadata=[("authorization", f"Bearer {agent_token}")], timeout=10)
        self.md = [("authorization", f"Bearer {resp.device_token}")]
        self.out: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        self.out.put(agent_pb2.AgentMessage(hello=agent_pb2.Hello(features=features)))
        self.inbox: queue.Queue[agent_pb2.LabMessage | grpc.RpcError] = queue.Queue()
        self.call = stub.Session(self._requests(), metadata=self.md)
        threading.Thread(target=self._read, daemon=True).start()
        first = self.next()
        assert first.HasField("welcome")
        self.welcome = first.welcome

    def _requests(self) -> Iterator[agent_pb2.AgentMessage]:
        while (m := self.out.get()) is not None:
            yield m

    def _read(self) -> None:
        try:
            for msg in self.call:
                self.inbox.put(msg)
        except grpc.RpcError as e:
            self.inbox.put(e)

    def next(self, timeout: float = 30) -> agent_pb2.LabMessage:
        item = self.inbox.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            raise item
        return item

    def send(self, msg: agent_pb2.AgentMessage) -> None:
        self.out.put(msg)

    def close(self) -> None:
        self.out.put(None)
        self.channel.close()


def _batch(attempt_id: str, seq: int) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(results=agent_pb2.ResultBatch(
        attempt_id=attempt_id, seq=seq, kind="latency", index=[0, 1], sample_index=[0, 1],
        t_ns=[1_000, 2_000], value=[500, 600]))


def test_device_cannot_act_for_another(labd) -> None:  # type: ignore[no-untyped-def]
    agent_token = make_token(labd, "agent")
    a = RawDevice(labd.addr, agent_token, "dev-a")
    b = RawDevice(labd.addr, agent_token, "dev-b")
    try:
        labctl_json(labd, make_token(labd, "engineer"), "run", "submit", "--suite", "smoke", "--device", "dev-a")
        msg = a.next()
        assert msg.HasField("assignment") and msg.assignment.model.sha256
        attempt = msg.assignment.attempt_id

        # The assigned device's batches are acknowledged, a duplicate too (idempotent), ...
        a.send(_batch(attempt, 0))
        assert a.next().ack.seq == 0
        a.send(_batch(attempt, 0))
        assert a.next().ack.seq == 0
        # ... but another device may not write into that attempt.
        b.send(_batch(attempt, 1))
        with pytest.raises(grpc.RpcError) as e:
            b.next()
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "not assigned to this device" in (e.value.details() or "")
    finally:
        a.close()
        b.close()


def _batches(attempt_id: str, seqs: range) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(result_batches=agent_pb2.ResultBatches(
        batches=[_batch(attempt_id, seq).results for seq in seqs]))


def test_batches_and_acks_travel_together_only_with_a_peer_that_says_so(labd) -> None:  # type: ignore[no-untyped-def]
    agent_token, engineer = make_token(labd, "agent"), make_token(labd, "engineer")
    new = RawDevice(labd.addr, agent_token, "dev-new", features=(ACKS,))
    old = RawDevice(labd.addr, agent_token, "dev-old")  # an agent that predates Acks: its Hello lists nothing
    try:
        assert RESULT_BATCHES in new.welcome.features  # the lab takes several batches in one message
        labctl_json(labd, engineer, "run", "submit", "--suite", "smoke", "--device", "dev-new")
        labctl_json(labd, engineer, "run", "submit", "--suite", "smoke", "--device", "dev-old")
        attempt_new, attempt_old = new.next().assignment.attempt_id, old.next().assignment.attempt_id

        # Three batches in one message, answered with one Acks message, in order; then a resend of two of them
        # with a new one (idempotent: the resent are acknowledged again, stored once).
        new.send(_batches(attempt_new, range(3)))
        m = new.next()
        assert m.WhichOneof("msg") == "acks", m
        assert [(a.seq, a.finished, a.error) for a in m.acks.acks] == [(0, False, ""), (1, False, ""), (2, False, "")]
        new.send(_batches(attempt_new, range(1, 4)))
        assert [a.seq for a in new.next().acks.acks] == [1, 2, 3]

        # The older agent may send them together too, but each Ack comes alone.
        old.send(_batches(attempt_old, range(3)))
        singles = [old.next() for _ in range(3)]
        assert [(m.WhichOneof("msg"), m.ack.seq) for m in singles] == [("ack", 0), ("ack", 1), ("ack", 2)]

        metrics = labd.metrics()
        assert 'labd_results_ingested_total{kind="latency"} 14.0' in metrics  # (4 + 3) batches of 2 samples
        assert "labd_result_batches_duplicate_total 2.0" in metrics
        # Every batch of a multi-batch message left the window once acknowledged.
        wait_until(lambda: "labd_result_batches_in_flight 0.0" in labd.metrics(), timeout=30,
                   what="labd's window of result batches in flight to empty")
    finally:
        new.close()
        old.close()


def test_more_batches_in_one_message_than_the_window_ends_the_session(labd) -> None:  # type: ignore[no-untyped-def]
    dev = RawDevice(labd.addr, make_token(labd, "agent"), "dev-greedy", features=(ACKS,))
    try:
        labctl_json(labd, make_token(labd, "engineer"), "run", "submit", "--suite", "smoke", "--device", "dev-greedy")
        attempt = dev.next().assignment.attempt_id
        dev.send(_batches(attempt, range(MAX_BATCHES_PER_MESSAGE + 1)))
        with pytest.raises(grpc.RpcError) as e:
            dev.next()
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == (f"a ResultBatches message carries {MAX_BATCHES_PER_MESSAGE + 1} result batches; "
                                     f"send at most {MAX_BATCHES_PER_MESSAGE} in one")
        assert 'labd_results_ingested_total{kind="latency"}' not in labd.metrics()  # none of them stored
    finally:
        dev.close()


def test_artifact_download_resumes_from_offset(labd) -> None:  # type: ignore[no-untyped-def]
    dev = RawDevice(labd.addr, make_token(labd, "agent"), "dl")
    try:
        # A device downloads only what a running assignment of its own needs.
        labctl_json(labd, make_token(labd, "engineer"), "run", "submit", "--suite", "smoke", "--device", "dl")
        assert dev.next().HasField("assignment")
        data = MODEL.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        stub = artifact_pb2_grpc.ArtifactServiceStub(dev.channel)
        info = stub.Stat(artifact_pb2.StatArtifactRequest(sha256=sha), metadata=dev.md, timeout=10)
        assert info.size == len(data) and info.kind == "model"
        head = b"".join(c.data for c in stub.Get(artifact_pb2.GetArtifactRequest(sha256=sha, chunk_size=1000),
                                                 metadata=dev.md, timeout=10))
        assert head == data
        tail = list(stub.Get(artifact_pb2.GetArtifactRequest(sha256=sha, offset=1234, chunk_size=1000),
                             metadata=dev.md, timeout=10))
        assert tail[0].offset == 1234 and b"".join(c.data for c in tail) == data[1234:]
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Get(artifact_pb2.GetArtifactRequest(sha256="0" * 64), metadata=dev.md, timeout=10))
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as e:
            stub.Stat(artifact_pb2.StatArtifactRequest(sha256=sha), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        dev.close()
