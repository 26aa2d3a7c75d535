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
