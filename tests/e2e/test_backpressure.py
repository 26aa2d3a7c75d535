"""Backpressure on result batches, against a real labd: a device that floods large batches faster than labd stores
them finds labd reading at most 8 of them ahead (its window; HTTP/2 flow control holds the rest on the device), labd's
memory does not grow with the flood, and every batch is acknowledged and stored exactly once, a resend included."""

from __future__ import annotations

import re
from pathlib import Path

from pilotlab.v1 import agent_pb2
from tests.e2e.conftest import Labd, labctl_json, make_token, wait_until
from tests.e2e.test_protocol import RawDevice

BATCHES = 32
SAMPLES = 40_000  # about 0.7 MiB a batch on the wire
WINDOW = 8


def _status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {key} for pid {pid}")


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    assert m, f"{name} not in labd's metrics"
    return float(m.group(1))


def _batch(attempt_id: str, seq: int) -> agent_pb2.AgentMessage:
    base = seq * SAMPLES
    idx = list(range(base, base + SAMPLES))
    return agent_pb2.AgentMessage(results=agent_pb2.ResultBatch(
        attempt_id=attempt_id, seq=seq, kind="latency", index=idx, sample_index=[i % 1797 for i in idx],
        t_ns=[1_700_000_000_000_000_000 + 1_000 * i for i in idx], value=[400_000 + i % 977 for i in idx]))


def _flood(dev: RawDevice, batches: list[agent_pb2.AgentMessage]) -> list[agent_pb2.Ack]:
    for m in batches:  # all at once: gRPC sends them as fast as labd's flow control lets it
        dev.send(m)
    return [dev.next(timeout=60).ack for _ in batches]


def test_a_flood_of_batches_is_read_within_the_window_and_each_stored_once(labd: Labd) -> None:
    assert labd.proc is not None
    dev = RawDevice(labd.addr, make_token(labd, "agent"), "flood")
    try:
        labctl_json(labd, make_token(labd, "engineer"), "run", "submit", "--suite", "smoke", "--device", "flood")
        attempt = dev.next().assignment.attempt_id
        first = [_batch(attempt, seq) for seq in range(BATCHES)]
        second = [_batch(attempt, seq) for seq in range(BATCHES, 2 * BATCHES)]
        size_mb = first[0].ByteSize() / 2**20
        start = _status_mb(labd.proc.pid, "VmHWM")
        acks = _flood(dev, first)
        assert sorted(a.seq for a in acks) == list(range(BATCHES)) and not any(a.error for a in acks)
        warm = _status_mb(labd.proc.pid, "VmHWM")  # the first flood warms labd up (threads, caches)
        assert sorted(a.seq for a in _flood(dev, second)) == list(range(BATCHES, 2 * BATCHES))
        peak = _status_mb(labd.proc.pid, "VmHWM")
        metrics = labd.metrics()
        print(f"\n2 x {BATCHES} batches of {size_mb:.2f} MiB: labd read at most "
              f"{_metric(metrics, 'labd_result_batches_in_flight_peak'):.0f} ahead "
              f"({_metric(metrics, 'labd_result_batch_bytes_in_flight_peak') / 2**20:.1f} MiB), paused "
              f"{_metric(metrics, 'labd_session_read_pauses_total'):.0f} times; peak RSS {start:.1f} MB, "
              f"{warm:.1f} after the first flood, {peak:.1f} after the second (+{peak - warm:.1f} MB)")
        assert _metric(metrics, "labd_result_batches_in_flight_peak") == WINDOW  # reached, never passed
        assert _metric(metrics, "labd_session_read_pauses_total") >= 1
        # The device reads the last Ack before labd's session resumes from writing it and frees its window slot.
        wait_until(lambda: _metric(labd.metrics(), "labd_result_batches_in_flight") == 0, timeout=30,
                   what="labd's window of result batches in flight to empty once every Ack is written")
        assert _metric(metrics, 'labd_results_ingested_total{kind="latency"}') == 2 * BATCHES * SAMPLES
        # The second flood costs labd less than its own size (what is left is thread arenas and database connections
        # warming up: a third flood adds about nothing).
        assert peak - warm < BATCHES * size_mb

        # The device resends the first flood (as after a reconnect): acknowledged, stored nowhere again.
        assert sorted(a.seq for a in _flood(dev, first)) == list(range(BATCHES))
        metrics = labd.metrics()
        assert _metric(metrics, 'labd_results_ingested_total{kind="latency"}') == 2 * BATCHES * SAMPLES
        assert _metric(metrics, "labd_result_batches_duplicate_total") == BATCHES
        # Every batch read went through a group of the ingest (batches read ahead together share one trip).
        assert _metric(metrics, "labd_ingest_group_batches_sum") == 3 * BATCHES
        print(f"{3 * BATCHES} batches stored in {_metric(metrics, 'labd_ingest_group_batches_count'):.0f} groups")
    finally:
        dev.close()
