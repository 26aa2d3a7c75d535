"""labd's per-message limit, against a real labd: oversized result batches get RESOURCE_EXHAUSTED from gRPC, labd
stays up and answers, and its memory does not grow with the attempts."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc

from pilotlab.v1 import agent_pb2
from tests.e2e.conftest import Labd, labctl_json, make_token
from tests.e2e.test_protocol import RawDevice

ATTEMPTS = 12
BATCH_BYTES = 16 << 20


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _huge_batch() -> agent_pb2.AgentMessage:
    n = BATCH_BYTES // 8 + 1  # t_ns values of 2**53 take 8 bytes each on the wire
    batch = agent_pb2.ResultBatch(attempt_id="none", seq=0, kind="latency", t_ns=[1 << 53] * n)
    msg = agent_pb2.AgentMessage(results=batch)
    assert BATCH_BYTES < msg.ByteSize() < BATCH_BYTES + 4096
    return msg


def test_oversized_batches_are_refused_and_labd_stays_up_and_small(labd: Labd) -> None:
    assert labd.proc is not None
    token = make_token(labd, "agent")
    huge = _huge_batch()
    devices = [RawDevice(labd.addr, token, f"big-{i}") for i in range(ATTEMPTS)]
    before = _rss_mb(labd.proc.pid)
    codes: list[grpc.StatusCode] = []

    def send(dev: RawDevice) -> None:
        dev.send(huge)
        try:
            dev.next(timeout=60)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as e:
            codes.append(e.code())

    threads = [threading.Thread(target=send, args=(dev,)) for dev in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    for dev in devices:
        dev.close()
    after = _rss_mb(labd.proc.pid)
    print(f"\nlabd VmRSS before {before:.1f} MB, after {ATTEMPTS} concurrent {huge.ByteSize() / 2**20:.1f} MiB "
          f"batches {after:.1f} MB (+{after - before:.1f} MB)")
    assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED] * ATTEMPTS
    assert labd.proc.poll() is None
    assert after - before < 50

    # labd answers the next device and the next user.
    nxt = RawDevice(labd.addr, token, "after")
    nxt.close()
    names = {dev["name"] for dev in labctl_json(labd, make_token(labd, "engineer"), "devices", "list")}
    assert {"after", "big-0"} <= names
