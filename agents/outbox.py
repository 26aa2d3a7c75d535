"""Durable result outbox: every batch and finish is on disk before it is sent, and deleted only when acked."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from pilotlab.v1 import agent_pb2

FINISHED = "finished.pb"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Outbox:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _dir(self, attempt_id: str) -> Path:
        if not attempt_id or "/" in attempt_id or attempt_id.startswith("."):
            raise ValueError(f"bad attempt id {attempt_id!r}")
        return self.root / attempt_id

    def put_batch(self, batch: agent_pb2.ResultBatch) -> agent_pb2.AgentMessage:
        msg = agent_pb2.AgentMessage(results=batch)
        d = self._dir(batch.attempt_id)
        with self._lock:
            d.mkdir(exist_ok=True)
            _atomic_write(d / f"b-{batch.seq:010d}.pb", msg.SerializeToString())
        return msg

    def put_finished(self, finished: agent_pb2.TaskFinished) -> agent_pb2.AgentMessage:
        msg = agent_pb2.AgentMessage(finished=finished)
        d = self._dir(finished.attempt_id)
        with self._lock:
            d.mkdir(exist_ok=True)
            _atomic_write(d / FINISHED, msg.SerializeToString())
        return msg

    def ack_batch(self, attempt_id: str, seq: int) -> None:
        with self._lock:
            (self._dir(attempt_id) / f"b-{seq:010d}.pb").unlink(missing_ok=True)

    def ack_finished(self, attempt_id: str) -> None:
        with self._lock:
            shutil.rmtree(self._dir(attempt_id), ignore_errors=True)

    def attempts(self) -> list[str]:
        with self._lock:
            return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def has_finished(self, attempt_id: str) -> bool:
        return (self._dir(attempt_id) / FINISHED).exists()

    def batch_count(self, attempt_id: str) -> int:
        return len(list(self._dir(attempt_id).glob("b-*.pb")))

    def pending(self) -> list[agent_pb2.AgentMessage]:
        """Everything not yet acknowledged: per attempt its batches in order, then its finish."""
        out = []
        with self._lock:
            for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
                files = sorted(d.glob("b-*.pb"))
                if (d / FINISHED).exists():
                    files.append(d / FINISHED)
                for f in files:
                    out.append(agent_pb2.AgentMessage.FromString(f.read_bytes()))
        return out
