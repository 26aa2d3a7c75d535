"""Numerical conformance: outputs on the golden samples against the suite's reference outputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def compare_outputs(issue: Callable[[Any], list[Any]], samples: Sequence[Any], output_names: list[str],
                    golden: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per golden sample: max abs error and max relative error over every output, and top-1 agreement of the
    first output that has a class axis (float scores: argmax; integer labels: equality)."""
    names = [n for n in output_names if n in golden]
    if not names:
        raise ValueError(f"golden outputs name none of the model's outputs ({', '.join(output_names)})")
    count = min(len(samples), min(len(golden[n]) for n in names))
    abs_err = np.zeros(count)
    rel_err = np.zeros(count)
    agree = np.zeros(count, dtype=np.int64)
    idx = [output_names.index(n) for n in names]
    for i in range(count):
        outs = issue(samples[i])
        worst_abs = worst_rel = 0.0
        agreed = 1
        for k, (name, j) in enumerate(zip(names, idx, strict=True)):
            got = np.asarray(outs[j]).astype(np.float64).reshape(-1)
            ref = np.asarray(golden[name][i]).astype(np.float64).reshape(-1)
            if got.size != ref.size:
                raise ValueError(f"output {name} has {got.size} values, golden has {ref.size}")
            diff = np.abs(got - ref)
            worst_abs = max(worst_abs, float(diff.max(initial=0.0)))
            worst_rel = max(worst_rel, float((diff / np.maximum(np.abs(ref), 1e-6)).max(initial=0.0)))
            if k == 0:
                agreed = int(np.argmax(got) == np.argmax(ref)) if got.size > 1 else int(got[0] == ref[0])
        abs_err[i], rel_err[i], agree[i] = worst_abs, worst_rel, agreed
    return {"sample_index": np.arange(count, dtype=np.int64), "abs_err": abs_err, "rel_err": rel_err,
            "agree": agree}
