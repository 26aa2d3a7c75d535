"""A result batch as its device signed it: the signed bytes (pilotlab.samples.batch_signing_bytes, a header and then
whole little-endian columns) kept as one immutable blob, and its columns read back from those bytes without a copy.

The columns of a batch are the last 48·n bytes of what the device signed (index, sample_index, t_ns, value, aux as
int64, then fvalue as float64), which is also the layout rows stored inline before revision 0006 hold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labd.blobs import digest_of
from pilotlab import domain as d
from pilotlab.samples import SIGNED_INT, batch_signing_bytes

INT_COLUMNS = SIGNED_INT  # index, sample_index, t_ns, value, aux
ROW_BYTES = 8 * (len(INT_COLUMNS) + 1)


def header(attempt_id: str, seq: int, kind: str, n: int) -> bytes:
    return f"pilotlab-batch-v1\n{attempt_id}\n{seq}\n{kind}\n{n}\n".encode()


@dataclass(frozen=True)
class SignedBatch:
    """One result batch as received: what the device signed (payload), its signature, and the index the store keeps
    (attempt, seq, kind, sample count, sha256 of payload)."""

    attempt_id: str
    seq: int
    kind: str
    n: int
    payload: bytes
    signature: bytes = b""
    sha256: str = field(default="")

    def __post_init__(self) -> None:
        if not self.sha256:
            object.__setattr__(self, "sha256", digest_of(self.payload))

    @classmethod
    def of(cls, attempt_id: str, seq: int, kind: str, arrays: Mapping[str, Sequence[Any] | np.ndarray | None],
           signature: bytes = b"") -> SignedBatch:
        """From parallel columns (lists, arrays or protobuf repeated fields; aux and fvalue may be empty)."""
        payload = batch_signing_bytes(attempt_id, seq, kind, arrays)
        index = arrays["index"]
        return cls(attempt_id, seq, kind, len(index) if index is not None else 0, payload, signature)

    @classmethod
    def from_domain(cls, b: d.ResultBatch) -> SignedBatch:
        return cls.of(b.attempt_id, b.seq, b.kind, {"index": b.index, "sample_index": b.sample_index,
                                                     "t_ns": b.t_ns, "value": b.value, "aux": b.aux,
                                                     "fvalue": b.fvalue}, b.signature)

    def check_framing(self) -> None:
        """The payload is exactly this batch's header and n rows (a blob read back names the batch it holds)."""
        head = header(self.attempt_id, self.seq, self.kind, self.n)
        if len(self.payload) != len(head) + ROW_BYTES * self.n or not self.payload.startswith(head):
            raise ValueError(f"result batch {self.seq} of attempt {self.attempt_id}: its bytes do not hold "
                             f"{self.n} samples of kind {self.kind!r}")


def columns(data: bytes | memoryview, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(int64 array of shape (5, n): index, sample_index, t_ns, value, aux; float64 fvalue) of a batch, read-only
    views of data's last 48·n bytes (a signed payload, or a row stored inline before revision 0006)."""
    start = len(data) - ROW_BYTES * n
    if start < 0:
        raise ValueError(f"a result batch of {n} samples needs {ROW_BYTES * n} bytes, found {len(data)}")
    ints = np.frombuffer(data, dtype="<i8", count=len(INT_COLUMNS) * n, offset=start).reshape(len(INT_COLUMNS), n)
    fvalue = np.frombuffer(data, dtype="<f8", count=n, offset=start + 8 * len(INT_COLUMNS) * n)
    return ints, fvalue


def concat(batches: Sequence[tuple[int, int, bytes | memoryview]]) -> dict[str, np.ndarray]:
    """Batches (seq, n, bytes) as the Store's samples: int64 columns index, sample_index, t_ns, value, aux, seq and
    float64 fvalue, ordered by index (stable, so equal indexes keep batch order). One copy, no per-sample work."""
    total = sum(n for _, n, _ in batches)
    ints = np.empty((len(INT_COLUMNS), total), dtype=np.int64)
    fvalue = np.empty(total, dtype=np.float64)
    seq = np.empty(total, dtype=np.int64)
    at = 0
    for s, n, data in batches:
        i, f = columns(data, n)
        ints[:, at:at + n] = i
        fvalue[at:at + n] = f
        seq[at:at + n] = s
        at += n
    out = {c: ints[j] for j, c in enumerate(INT_COLUMNS)}
    out["seq"], out["fvalue"] = seq, fvalue
    index = out["index"]
    if index.size > 1 and bool(np.any(index[1:] < index[:-1])):
        order = np.argsort(index, kind="stable")
        return {c: v[order] for c, v in out.items()}
    return out
