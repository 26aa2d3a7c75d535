"""The open raw-sample format of report bundles (CSV, one file per sample kind), written by labd and read by
the offline verifier. Integers are written exactly (ns stamps exceed 2**53); fvalue with 17 significant digits."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

COLUMNS = ("seq", "index", "sample_index", "t_ns", "value", "aux", "fvalue", "label")
HEADER = ",".join(COLUMNS)
SIGNED_INT = ("index", "sample_index", "t_ns", "value", "aux")


def batch_signing_bytes(attempt_id: str, seq: int, kind: str, arrays: Mapping[str, Sequence[Any] | np.ndarray | None]
                        ) -> bytes:
    """What a device signs for one result batch: a fixed header, then the int64 arrays and the float64 fvalue
    array in little-endian order, absent arrays as zeros. The offline verifier rebuilds it from the CSVs."""
    index = np.asarray(arrays["index"], dtype="<i8")
    n = index.size
    parts = [f"pilotlab-batch-v1\n{attempt_id}\n{seq}\n{kind}\n{n}\n".encode()]
    for name in SIGNED_INT:
        a = arrays.get(name)
        parts.append((np.asarray(a, dtype="<i8") if a is not None and len(a) else np.zeros(n, "<i8")).tobytes())
    f = arrays.get("fvalue")
    parts.append((np.asarray(f, dtype="<f8") if f is not None and len(f) else np.zeros(n, "<f8")).tobytes())
    return b"".join(parts)


def kind_filename(kind: str) -> str:
    """`latency;batch=8` → `latency_batch-8.csv`: a file name that names its kind."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", kind.replace("=", "-").replace(";", "_")) + ".csv"


def samples_csv(arrays: dict[str, np.ndarray], labels: np.ndarray | None = None) -> bytes:
    """One kind's samples; label is the dataset label of sample_index for predictions, else -1."""
    n = len(arrays["index"])
    cols = {c: arrays.get(c, np.zeros(n, dtype=np.float64 if c == "fvalue" else np.int64)) for c in COLUMNS}
    cols["label"] = labels if labels is not None else np.full(n, -1, dtype=np.int64)
    buf = io.StringIO()
    buf.write(HEADER + "\n")
    ints = [cols[c].astype(np.int64).tolist() for c in COLUMNS[:6]]
    fv = [repr(float(x)) for x in cols["fvalue"].tolist()]
    lab = cols["label"].astype(np.int64).tolist()
    for i in range(n):
        buf.write(f"{ints[0][i]},{ints[1][i]},{ints[2][i]},{ints[3][i]},{ints[4][i]},{ints[5][i]},{fv[i]},{lab[i]}\n")
    return buf.getvalue().encode()


def read_samples_csv(data: bytes) -> dict[str, np.ndarray]:
    text = data.decode()
    first, _, rest = text.partition("\n")
    if first.strip() != HEADER:
        raise ValueError(f"unexpected header {first.strip()!r}, expected {HEADER!r}")
    rows = [line.split(",") for line in rest.splitlines() if line.strip()]
    for i, r in enumerate(rows):
        if len(r) != len(COLUMNS):
            raise ValueError(f"row {i + 2} has {len(r)} columns, expected {len(COLUMNS)}")
    out: dict[str, np.ndarray] = {}
    for j, c in enumerate(COLUMNS):
        if c == "fvalue":
            out[c] = np.array([float(r[j]) for r in rows], dtype=np.float64)
        else:
            out[c] = np.array([int(r[j]) for r in rows], dtype=np.int64)
    return out
