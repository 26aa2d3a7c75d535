"""The open raw-sample format of report bundles (CSV), written by labd and read by the offline verifier."""

from __future__ import annotations

import io

import numpy as np

LATENCY_HEADER = "query,sample_index,issue_ns,latency_ns"
PREDICTION_HEADER = "sample_index,predicted,label"


def _csv(header: str, cols: list[np.ndarray]) -> bytes:
    buf = io.StringIO()
    buf.write(header + "\n")
    for row in zip(*(c.tolist() for c in cols), strict=True):
        buf.write(",".join(str(v) for v in row) + "\n")
    return buf.getvalue().encode()


def _read(data: bytes, header: str) -> np.ndarray:
    text = data.decode()
    first, _, rest = text.partition("\n")
    if first.strip() != header:
        raise ValueError(f"unexpected header {first.strip()!r}, expected {header!r}")
    ncol = header.count(",") + 1
    if not rest.strip():
        return np.zeros((0, ncol), dtype=np.int64)
    arr = np.loadtxt(io.StringIO(rest), delimiter=",", dtype=np.int64, ndmin=2)
    if arr.shape[1] != ncol:
        raise ValueError(f"rows have {arr.shape[1]} columns, expected {ncol}")
    return arr


def latency_csv(query: np.ndarray, sample_index: np.ndarray, issue_ns: np.ndarray, latency_ns: np.ndarray) -> bytes:
    return _csv(LATENCY_HEADER, [query, sample_index, issue_ns, latency_ns])


def read_latency_csv(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(issue_ns, latency_ns) from a latency CSV."""
    arr = _read(data, LATENCY_HEADER)
    return arr[:, 2], arr[:, 3]


def predictions_csv(sample_index: np.ndarray, predicted: np.ndarray, label: np.ndarray) -> bytes:
    return _csv(PREDICTION_HEADER, [sample_index, predicted, label])


def read_predictions_csv(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sample_index, predicted, label) from a predictions CSV."""
    arr = _read(data, PREDICTION_HEADER)
    return arr[:, 0], arr[:, 1], arr[:, 2]
