"""The open raw-sample format of report bundles: one NumPy .npy file per sample kind, a one-dimensional array of
records (DTYPE: int64 columns and the float64 fvalue and reference, little-endian), written by labd and read by the
offline verifier without parsing. Rows are grouped by the result batch (`seq`) the device signed them in. The device
signs SIGNED_INT and fvalue; `label` and `reference` are what the lab joins from its own artifacts (covered by the
lab's signature of the bundle)."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

COLUMNS = ("seq", "index", "sample_index", "t_ns", "value", "aux", "fvalue", "label", "reference")
FLOAT_COLUMNS = ("fvalue", "reference")
DTYPE = np.dtype([(c, "<f8" if c in FLOAT_COLUMNS else "<i8") for c in COLUMNS])
REQUIRED = ("seq", "index", "value")
SIGNED_INT = ("index", "sample_index", "t_ns", "value", "aux")


def batch_signing_bytes(attempt_id: str, seq: int, kind: str, arrays: Mapping[str, Sequence[Any] | np.ndarray | None]
                        ) -> bytes:
    """What a device signs for one result batch: a fixed header, then the int64 arrays and the float64 fvalue
    array in little-endian order, absent arrays as zeros. The offline verifier rebuilds it from the .npy records."""
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
    """`latency;batch=8` → `latency_batch-8.npy`: a file name that names its kind."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", kind.replace("=", "-").replace(";", "_")) + ".npy"


def _default(column: str) -> float:
    """What a column holds where a file leaves it out: label -1, reference NaN (the lab has none), others 0."""
    return -1 if column == "label" else math.nan if column == "reference" else 0


def _only_default(column: str, a: np.ndarray) -> bool:
    return bool(np.all(np.isnan(a))) if column == "reference" else not bool(np.any(a != _default(column)))


def column(records: np.ndarray, name: str) -> np.ndarray:
    """A column of a samples file; a column the file leaves out holds its default (label -1, reference NaN,
    others 0), as a read-only view that takes no memory."""
    if records.dtype.names and name in records.dtype.names:
        return np.asarray(records[name])
    return np.broadcast_to(np.array(_default(name), dtype=DTYPE[name]), (records.size,))


def as_columns(records: np.ndarray) -> dict[str, np.ndarray]:
    """Every column of a samples file by name, the left-out ones at their defaults."""
    return {c: column(records, c) for c in COLUMNS}


def samples_npy(arrays: Mapping[str, np.ndarray], labels: np.ndarray | None = None) -> bytes:
    """One kind's samples as a NumPy .npy file of records (fields of DTYPE, little-endian): numpy, pandas and any
    .npy reader load it without parsing. A column that only holds its default (label -1, reference NaN, others 0)
    is left out, so a latency file carries seq, index, sample_index, t_ns and value. `label` is the dataset label of
    sample_index for predictions (or arrays' own `label`: the golden token of a generative token); `reference`, where
    arrays hold one, the golden's float value of a row (a generative log-likelihood's)."""
    n = len(arrays["index"])
    cols = {c: np.asarray(arrays[c]) for c in COLUMNS if c in arrays and len(arrays[c])}
    if labels is not None:
        cols["label"] = np.asarray(labels)
    kept = [c for c in COLUMNS if c in REQUIRED or (c in cols and not _only_default(c, cols[c]))]
    rec = np.zeros(n, dtype=[(c, DTYPE[c]) for c in kept])
    for c in kept:
        if c in cols:
            rec[c] = cols[c]
    buf = io.BytesIO()
    np.save(buf, rec, allow_pickle=False)
    return buf.getvalue()


def read_samples_npy(data: bytes | memoryview) -> np.ndarray:
    """The records of a samples file, as a zero-copy view of `data` (fields as in DTYPE). Raises ValueError for
    anything but a one-dimensional .npy of exactly DTYPE."""
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as e:
        raise ValueError(f"not a samples .npy file: {e}") from None
    names = dtype.names or ()
    fields_ok = bool(names) and set(REQUIRED) <= set(names) and all(
        n in COLUMNS and dtype[n] == DTYPE[n] for n in names) and dtype.itemsize == 8 * len(names)
    if not fields_ok or len(shape) != 1 or fortran:
        raise ValueError(f"a samples file holds one-dimensional records with fields among {', '.join(COLUMNS)} "
                         f"(int64, fvalue and reference float64; seq, index and value always); this one holds "
                         f"{dtype.descr if names else dtype} with shape {shape}")
    offset = f.tell()
    if len(data) - offset != shape[0] * dtype.itemsize:
        raise ValueError(f"the file holds {len(data) - offset} bytes of records, its header says {shape[0]} records")
    return np.frombuffer(data, dtype=dtype, count=shape[0], offset=offset)


def batches(records: np.ndarray) -> list[tuple[int, int, int]]:
    """(seq, start, end) of each result batch in a samples file, in file order (rows are grouped by batch)."""
    seq = records["seq"]
    if seq.size == 0:
        return []
    cuts = np.flatnonzero(seq[1:] != seq[:-1]) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [seq.size]))
    return [(int(seq[a]), int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def batch_bytes(attempt_id: str, kind: str, records: np.ndarray, start: int, end: int) -> bytes:
    """What the device signed for the batch held in records[start:end] (see batch_signing_bytes)."""
    part = records[start:end]
    return batch_signing_bytes(attempt_id, int(records["seq"][start]), kind,
                               {c: np.ascontiguousarray(column(part, c)) for c in (*SIGNED_INT, "fvalue")})
