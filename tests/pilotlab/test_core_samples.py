"""The raw-sample CSV format of report bundles: exact int64 round trips, empty files, bad headers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilotlab.samples import (
    LATENCY_HEADER,
    PREDICTION_HEADER,
    latency_csv,
    predictions_csv,
    read_latency_csv,
    read_predictions_csv,
)

I64 = np.int64
int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def test_latency_round_trip_beyond_2_53() -> None:
    issue = np.array([2**53 + 1, 2**62 + 7, 9_223_372_036_854_775_807], dtype=I64)
    lat = np.array([1, 2**53 + 3, 123_456_789], dtype=I64)
    data = latency_csv(np.arange(3, dtype=I64), np.array([5, 0, 2], dtype=I64), issue, lat)
    assert data.startswith((LATENCY_HEADER + "\n").encode())
    assert b"9007199254740993" in data  # 2**53 + 1 written exactly, not as a float
    t, lat_ns = read_latency_csv(data)
    assert t.dtype == I64 and lat_ns.dtype == I64
    assert t.tolist() == issue.tolist()
    assert lat_ns.tolist() == lat.tolist()


@given(st.lists(st.tuples(int64s, int64s, int64s, int64s), max_size=40))
def test_latency_round_trip_property(rows: list[tuple[int, int, int, int]]) -> None:
    cols = [np.array([r[i] for r in rows], dtype=I64) for i in range(4)]
    t, lat_ns = read_latency_csv(latency_csv(*cols))
    assert t.tolist() == cols[2].tolist()
    assert lat_ns.tolist() == cols[3].tolist()


@given(st.lists(st.tuples(int64s, int64s, int64s), max_size=40))
def test_predictions_round_trip_property(rows: list[tuple[int, int, int]]) -> None:
    cols = [np.array([r[i] for r in rows], dtype=I64) for i in range(3)]
    got = read_predictions_csv(predictions_csv(*cols))
    assert [g.tolist() for g in got] == [c.tolist() for c in cols]


def test_single_row() -> None:
    si, p, lab = read_predictions_csv(predictions_csv(np.array([3]), np.array([1]), np.array([2])))
    assert (si.tolist(), p.tolist(), lab.tolist()) == ([3], [1], [2])


def test_empty_files() -> None:
    empty = np.array([], dtype=I64)
    data = latency_csv(empty, empty, empty, empty)
    assert data == (LATENCY_HEADER + "\n").encode()
    t, lat_ns = read_latency_csv(data)
    assert t.shape == (0,) and lat_ns.shape == (0,)
    got = read_predictions_csv(predictions_csv(empty, empty, empty))
    assert all(g.shape == (0,) for g in got)
    assert read_predictions_csv(PREDICTION_HEADER.encode())[0].size == 0  # no trailing newline


@pytest.mark.parametrize("data", [
    b"",
    b"query,sample_index,issue_ns\n1,2,3\n",
    PREDICTION_HEADER.encode() + b"\n1,2,3\n",
    b"1,2,3,4\n",
])
def test_wrong_latency_header(data: bytes) -> None:
    with pytest.raises(ValueError, match="header"):
        read_latency_csv(data)


def test_wrong_prediction_header() -> None:
    with pytest.raises(ValueError, match="header"):
        read_predictions_csv(latency_csv(*(np.array([1]) for _ in range(4))))


def test_wrong_column_count() -> None:
    with pytest.raises(ValueError):
        read_predictions_csv(PREDICTION_HEADER.encode() + b"\n1,2\n3,4\n")
