"""Numerical conformance, defined once: the suite builder, the agent, the lab and `labctl report verify` call this.

The rule (evalsuites/README.md, `[tasks.conformance]`): for every golden array g and the model output y of the same
name, both in float64, over the first len(g) dataset samples:

- ``max_abs_err``   = max |y - g| over every array;
- ``max_rel_err``   = the largest, over arrays, of max |y - g| / max |g| (the golden array's peak magnitude);
- ``top1_agreement``= the smallest, over arrays of rank >= 2, of the share of samples whose argmax over the last
  axis of y equals that of g (for rank > 2, a sample agrees when every position agrees); absent when no array
  has rank >= 2.

It is computed in two steps so that a device can send its evidence as raw records and the lab and the verifier
reduce exactly what the device measured: `compare` turns outputs and golden arrays into per-(sample, array)
records, `reduce_records` turns records into the metrics. `measure_conformance` is both steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["NO_CLASS_AXIS", "PEAK_KIND", "RECORD_KIND", "Records", "compare", "from_samples", "measure_conformance",
           "reduce_records", "to_samples"]

RECORD_KIND = "conformance"        # raw sample kind: one row per (sample, golden array)
PEAK_KIND = "conformance-peak"     # raw sample kind: one row per golden array, its peak magnitude max |g|
NO_CLASS_AXIS = -1                 # `agree` of an array of rank < 2: top-1 agreement does not apply


@dataclass(frozen=True)
class Records:
    """Per-(sample, golden array) conformance evidence, and each golden array's peak magnitude.

    Arrays are numbered by the sorted order of their names. For row k: `sample_index[k]` is the dataset sample,
    `array[k]` the golden array, `abs_err[k]` = max |y - g| over that sample's part of the array, `agree[k]` 1 or 0
    (argmax over the last axis agrees at every position) or NO_CLASS_AXIS. `peaks[a]` = max |g| of array a.
    """

    sample_index: np.ndarray
    array: np.ndarray
    abs_err: np.ndarray
    agree: np.ndarray
    peaks: np.ndarray


def compare(outputs: Mapping[str, np.ndarray], golden: Mapping[str, np.ndarray]) -> Records:
    """Records of model outputs (each with the sample axis first) against golden arrays.

    Raises ValueError when there are no golden arrays, an output is missing, or shapes differ.
    """
    if not golden:
        raise ValueError("no golden arrays to compare")
    rows_s, rows_a, rows_e, rows_g, peaks = [], [], [], [], []
    for k, name in enumerate(sorted(golden)):
        g = np.asarray(golden[name], dtype=np.float64)
        if name not in outputs:
            raise ValueError(f"the model has no output {name!r} for the golden array of that name")
        y = np.asarray(outputs[name], dtype=np.float64)[: g.shape[0]]
        if y.shape != g.shape:
            raise ValueError(f"output {name!r} has shape {list(y.shape)} for golden {list(g.shape)}")
        n = g.shape[0]
        diff = np.abs(y - g).reshape(n, -1)
        rows_e.append(diff.max(axis=1) if diff.shape[1] else np.zeros(n))
        if g.ndim >= 2 and g.shape[-1]:
            same = (np.argmax(y, axis=-1) == np.argmax(g, axis=-1)).reshape(n, -1)
            rows_g.append(same.all(axis=1).astype(np.int64))
        else:
            rows_g.append(np.full(n, NO_CLASS_AXIS, dtype=np.int64))
        rows_s.append(np.arange(n, dtype=np.int64))
        rows_a.append(np.full(n, k, dtype=np.int64))
        peaks.append(float(np.max(np.abs(g))) if g.size else 0.0)
    return Records(np.concatenate(rows_s), np.concatenate(rows_a), np.concatenate(rows_e).astype(np.float64),
                   np.concatenate(rows_g), np.asarray(peaks, dtype=np.float64))


def reduce_records(r: Records) -> dict[str, float]:
    """The metrics of records: n (samples compared), max_abs_err, max_rel_err and, when some array has a class
    axis, top1_agreement. Raises ValueError for records that name an array without a peak."""
    if r.abs_err.size == 0:
        raise ValueError("no conformance records")
    arrays = np.unique(r.array)
    if arrays.min() < 0 or arrays.max() >= r.peaks.size:
        raise ValueError(f"conformance records name arrays {arrays.tolist()}, but {r.peaks.size} peaks were sent")
    out: dict[str, float] = {"n": float(np.unique(r.sample_index).size), "max_abs_err": float(r.abs_err.max())}
    rel, agreement = 0.0, None
    for a in arrays.tolist():
        sel = r.array == a
        err, peak = float(r.abs_err[sel].max()), float(r.peaks[a])
        rel = max(rel, err / peak if peak > 0 else (0.0 if err == 0 else float("inf")))
        agree = r.agree[sel]
        if agree.size and agree[0] != NO_CLASS_AXIS:
            share = float(np.count_nonzero(agree == 1)) / agree.size
            agreement = share if agreement is None else min(agreement, share)
    out["max_rel_err"] = rel
    if agreement is not None:
        out["top1_agreement"] = agreement
    return out


def measure_conformance(outputs: Mapping[str, np.ndarray], golden: Mapping[str, np.ndarray]) -> dict[str, float]:
    """`conformance.<metric>` of outputs against golden arrays: reduce_records(compare(outputs, golden))."""
    metrics = reduce_records(compare(outputs, golden))
    return {f"conformance.{k}": v for k, v in metrics.items() if k != "n"}


def to_samples(r: Records) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Records as raw sample sets: (RECORD_KIND, rows) and (PEAK_KIND, one row per array)."""
    rows = {"index": np.arange(r.abs_err.size, dtype=np.int64), "sample_index": r.sample_index.astype(np.int64),
            "value": r.agree.astype(np.int64), "aux": r.array.astype(np.int64),
            "fvalue": r.abs_err.astype(np.float64)}
    zeros = np.zeros(r.peaks.size, dtype=np.int64)
    peaks = {"index": np.arange(r.peaks.size, dtype=np.int64), "sample_index": zeros, "value": zeros, "aux": zeros,
             "fvalue": r.peaks.astype(np.float64)}
    return [(RECORD_KIND, rows), (PEAK_KIND, peaks)]


def from_samples(samples: Mapping[str, Mapping[str, np.ndarray]]) -> Records | None:
    """Records back from raw sample sets (as stored by the lab or read from a bundle); None without records."""
    rows, peaks = samples.get(RECORD_KIND), samples.get(PEAK_KIND)
    if rows is None or not np.asarray(rows["fvalue"]).size:
        return None
    if peaks is None:
        raise ValueError(f"conformance records came without their '{PEAK_KIND}' set")
    order = np.argsort(np.asarray(peaks["index"]), kind="stable")
    return Records(np.asarray(rows["sample_index"], dtype=np.int64), np.asarray(rows["aux"], dtype=np.int64),
                   np.asarray(rows["fvalue"], dtype=np.float64), np.asarray(rows["value"], dtype=np.int64),
                   np.asarray(peaks["fvalue"], dtype=np.float64)[order])
