"""Accuracy pass: every labelled sample once, on the same issue path as the timed run, outside timing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from agents.harness.single_stream import Cancelled


def run_accuracy(issue: Callable[[Any], Any], samples: Sequence[Any], decode: Callable[[Any], int],
                 cancel: threading.Event | None = None) -> np.ndarray:
    """Predicted class per sample, in dataset order."""
    out = np.zeros(len(samples), dtype=np.int64)
    for i, s in enumerate(samples):
        if i & 255 == 0 and cancel is not None and cancel.is_set():
            raise Cancelled()
        out[i] = decode(issue(s))
    return out


def decoder(output_names: list[str], output: str) -> Callable[[list[Any]], int]:
    """The predicted class from a query's outputs: the named output's integer label, or its argmax."""
    if output not in output_names:
        raise ValueError(f"the model has no output {output!r} (it has {', '.join(output_names)})")
    k = output_names.index(output)

    def decode(outputs: list[Any]) -> int:
        arr = np.asarray(outputs[k])
        if arr.dtype.kind in "iu":
            return int(arr.ravel()[0])
        return int(np.argmax(arr.reshape(arr.shape[0], -1)[0]))

    return decode
