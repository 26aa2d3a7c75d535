"""Conformance on the device: run the golden samples one query each and collect the outputs the rule compares.

The comparison itself is pilotlab.conformance.compare, the one definition the builder, the lab and the verifier
share; this module only issues the queries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np


def golden_outputs(issue: Callable[[Any], list[Any]], samples: Sequence[Any], output_names: list[str],
                   golden: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs named in `golden` for its first N samples (N = the golden arrays' common length), sample axis first.

    Each sample is one query (batch 1), as in every other measurement. Raises ValueError when the golden arrays
    name none of the model's outputs, disagree on their length, or hold more samples than the dataset.
    """
    names = [n for n in output_names if n in golden]
    if not names:
        raise ValueError(f"golden outputs name none of the model's outputs ({', '.join(output_names)})")
    missing = sorted(set(golden) - set(names))
    if missing:
        raise ValueError(f"golden arrays {', '.join(missing)} name no output of the model ({', '.join(output_names)})")
    lengths = {len(golden[n]) for n in names}
    if len(lengths) != 1:
        raise ValueError(f"golden arrays hold different sample counts {sorted(lengths)}")
    count = lengths.pop()
    if count > len(samples):
        raise ValueError(f"golden arrays hold {count} samples, the dataset only {len(samples)}")
    idx = [output_names.index(n) for n in names]
    rows: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i in range(count):
        outs = issue(samples[i])
        for name, j in zip(names, idx, strict=True):
            y = np.asarray(outs[j])
            rows[name].append(y[0] if y.ndim and y.shape[0] == 1 else y)  # drop the query's batch axis of 1
    return {n: np.stack(v) if v else np.zeros((0, *np.shape(golden[n])[1:])) for n, v in rows.items()}
