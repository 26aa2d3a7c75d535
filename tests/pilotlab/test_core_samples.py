"""The raw-sample .npy format round-trips exactly (ns stamps beyond 2**53 included), reads as a zero-copy view, and
gives back the bytes each device batch was signed over."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilotlab.samples import (
    DTYPE,
    batch_bytes,
    batch_signing_bytes,
    batches,
    column,
    kind_filename,
    read_samples_npy,
    samples_npy,
)

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _arrays(n: int, base: int = 1_700_000_000_000_000_000) -> dict[str, np.ndarray]:
    idx = np.arange(n, dtype=np.int64)
    return {"seq": idx // 7, "index": idx, "sample_index": idx * 3, "t_ns": base + idx * 1_000_003,
            "value": idx + 500, "aux": base + idx, "fvalue": np.linspace(0, 1, n) / 3}


def test_round_trip_exact_and_zero_copy() -> None:
    a = {**_arrays(50), "reference": -np.linspace(0, 1, 50) / 7}  # the lab's float reference column
    data = samples_npy(a, labels=np.arange(50) % 10)
    back = read_samples_npy(data)
    for k, v in a.items():
        assert column(back, k).tolist() == v.tolist(), k
    assert back["label"].tolist() == (np.arange(50) % 10).tolist()
    assert back.dtype == DTYPE and not back.flags.owndata  # a view of the file's bytes, not a copy
    assert np.load(io.BytesIO(data), allow_pickle=False)["t_ns"].tolist() == a["t_ns"].tolist()  # plain numpy reads it


def test_missing_columns_default_and_empty() -> None:
    back = read_samples_npy(samples_npy({"index": np.arange(3), "value": np.array([7, 8, 9])}))
    assert back.dtype.names == ("seq", "index", "value")  # columns holding only their default are left out
    assert column(back, "aux").tolist() == [0, 0, 0] and column(back, "label").tolist() == [-1, -1, -1]
    assert np.isnan(column(back, "reference")).all() and column(back, "reference").dtype == np.float64
    nan = read_samples_npy(samples_npy({"index": np.arange(3), "value": np.arange(3), "reference": np.full(3, np.nan)}))
    assert nan.dtype.names == ("seq", "index", "value")  # a reference of NaN only (the lab has none) is left out
    some = read_samples_npy(samples_npy({"index": np.arange(2), "value": np.arange(2),
                                         "reference": np.array([np.nan, 0.0])}))
    assert some.dtype.names == ("seq", "index", "value", "reference") and some["reference"][1] == 0.0
    empty = read_samples_npy(samples_npy({"index": np.zeros(0, dtype=np.int64)}))
    assert empty.size == 0 and batches(empty) == []


def test_bad_input_rejected() -> None:
    with pytest.raises(ValueError, match="not a samples .npy file"):
        read_samples_npy(b"seq,index\n1,2\n")
    other = io.BytesIO()
    np.save(other, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="one-dimensional records"):
        read_samples_npy(samples_npy({"index": np.arange(3), "value": np.arange(3)}).replace(b"'seq'", b"'sex'"))
    with pytest.raises(ValueError, match="one-dimensional records"):
        read_samples_npy(other.getvalue())
    good = samples_npy(_arrays(10))
    with pytest.raises(ValueError, match="header says 10 records"):
        read_samples_npy(good[:-8])


def test_batches_and_their_signed_bytes() -> None:
    a = _arrays(20)
    records = read_samples_npy(samples_npy(a))
    groups = batches(records)
    assert groups == [(0, 0, 7), (1, 7, 14), (2, 14, 20)]
    seq, lo, hi = groups[1]
    sent = {k: a[k][lo:hi] for k in ("index", "sample_index", "t_ns", "value", "aux", "fvalue")}
    assert batch_bytes("att", "latency", records, lo, hi) == batch_signing_bytes("att", seq, "latency", sent)


def test_kind_filename() -> None:
    assert kind_filename("latency") == "latency.npy"
    assert kind_filename("latency;batch=8") == "latency_batch-8.npy"
    assert kind_filename("../x") == ".._x.npy"


@given(st.lists(st.tuples(I64, I64, I64, I64, I64, st.floats(allow_nan=False, allow_infinity=False)), max_size=30))
def test_property_round_trip(rows: list[tuple[int, int, int, int, int, float]]) -> None:
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 6
    a = {k: np.array(c, dtype=np.float64 if k == "fvalue" else np.int64)
         for k, c in zip(("index", "sample_index", "t_ns", "value", "aux", "fvalue"), cols, strict=True)}
    back = read_samples_npy(samples_npy(a))
    for k, v in a.items():
        assert column(back, k).tolist() == v.tolist()
