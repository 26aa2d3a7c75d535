"""The reference computation of the conformance.* metrics, shared by agents, the lab and the builder's tests."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["measure_conformance"]


def measure_conformance(outputs: Mapping[str, np.ndarray], golden: Mapping[str, np.ndarray]) -> dict[str, float]:
    """conformance.max_abs_err / max_rel_err / top1_agreement of model outputs against golden arrays.

    For each golden array g (its rows are the first len(g) dataset samples) the model output y of the same
    name is cut to those rows and compared in float64: max_abs_err = max |y - g| over all arrays;
    max_rel_err = the largest max |y - g| / max |g| over arrays; top1_agreement = the smallest, over arrays of
    rank >= 2, share of rows whose argmax over the last axis agrees (absent when no array has rank >= 2).
    Raises KeyError for a golden array the outputs lack, ValueError when shapes differ.
    """
    if not golden:
        raise ValueError("no golden arrays to compare")
    abs_err, rel_err, agreement = 0.0, 0.0, None
    for name, g_raw in golden.items():
        g = np.asarray(g_raw, dtype=np.float64)
        y = np.asarray(outputs[name], dtype=np.float64)[: g.shape[0]]
        if y.shape != g.shape:
            raise ValueError(f"output {name!r} has shape {list(y.shape)} for golden {list(g.shape)}")
        err = float(np.max(np.abs(y - g))) if g.size else 0.0
        peak = float(np.max(np.abs(g))) if g.size else 0.0
        abs_err = max(abs_err, err)
        rel_err = max(rel_err, err / peak if peak > 0 else (0.0 if err == 0 else float("inf")))
        if g.ndim >= 2 and g.shape[0]:
            share = float(np.mean(np.argmax(y, axis=-1) == np.argmax(g, axis=-1)))
            agreement = share if agreement is None else min(agreement, share)
    out = {"conformance.max_abs_err": abs_err, "conformance.max_rel_err": rel_err}
    if agreement is not None:
        out["conformance.top1_agreement"] = agreement
    return out
