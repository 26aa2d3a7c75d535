"""The raw-sample CSV format round-trips exactly, including ns stamps beyond 2**53."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilotlab.samples import HEADER, kind_filename, read_samples_csv, samples_csv

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _arrays(n: int, base: int = 1_700_000_000_000_000_000) -> dict[str, np.ndarray]:
    idx = np.arange(n, dtype=np.int64)
    return {"index": idx, "sample_index": idx * 3, "t_ns": base + idx * 1_000_003, "value": idx + 500,
            "aux": base + idx, "fvalue": np.linspace(0, 1, n) / 3}


def test_round_trip_exact() -> None:
    a = _arrays(50)
    back = read_samples_csv(samples_csv(a, labels=np.arange(50) % 10))
    for k, v in a.items():
        assert back[k].tolist() == v.tolist(), k
    assert back["label"].tolist() == (np.arange(50) % 10).tolist()
    assert back["t_ns"].dtype == np.int64 and back["fvalue"].dtype == np.float64


def test_missing_columns_default_and_empty() -> None:
    back = read_samples_csv(samples_csv({"index": np.arange(3), "value": np.array([7, 8, 9])}))
    assert back["aux"].tolist() == [0, 0, 0] and back["label"].tolist() == [-1, -1, -1]
    empty = read_samples_csv(samples_csv({"index": np.zeros(0, dtype=np.int64)}))
    assert all(v.size == 0 for v in empty.values())


def test_bad_input_rejected() -> None:
    with pytest.raises(ValueError, match="unexpected header"):
        read_samples_csv(b"a,b\n1,2\n")
    with pytest.raises(ValueError, match="columns"):
        read_samples_csv((HEADER + "\n1,2,3\n").encode())


def test_kind_filename() -> None:
    assert kind_filename("latency") == "latency.csv"
    assert kind_filename("latency;batch=8") == "latency_batch-8.csv"
    assert kind_filename("../x") == ".._x.csv"


@given(st.lists(st.tuples(I64, I64, I64, I64, I64, st.floats(allow_nan=False, allow_infinity=False)), max_size=30))
def test_property_round_trip(rows: list[tuple[int, int, int, int, int, float]]) -> None:
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 6
    a = {k: np.array(c, dtype=np.float64 if k == "fvalue" else np.int64)
         for k, c in zip(("index", "sample_index", "t_ns", "value", "aux", "fvalue"), cols, strict=True)}
    back = read_samples_csv(samples_csv(a))
    for k, v in a.items():
        assert back[k].tolist() == v.tolist()
