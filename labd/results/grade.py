"""Turns an attempt's raw samples into metrics and a verdict, using the suite's criteria for the task."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from labd.state import Store
from pilotlab import domain as d
from pilotlab.grading import evaluate
from pilotlab.metrics import task_metrics


@lru_cache(maxsize=16)
def dataset_labels(path: str) -> np.ndarray:
    with np.load(path) as z:
        return np.asarray(z["labels"], dtype=np.int64)


def attempt_metrics(store: Store, attempt_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    lat = store.samples(attempt_id, "latency")
    latency = (lat["t_ns"], lat["value"]) if lat["value"].size else None
    predictions = labels = None
    accuracy = spec.get("accuracy") or {}
    if accuracy and spec.get("dataset"):
        pred = store.samples(attempt_id, "prediction")
        if pred["value"].size:
            predictions = (pred["sample_index"], pred["value"])
            labels = dataset_labels(store.get_artifact(spec["dataset"]["sha256"]).path)
    return task_metrics(latency, predictions, labels, accuracy.get("metric", "top1"))


def grade(metrics: dict[str, Any], spec: dict[str, Any]) -> tuple[d.Verdict, list[dict[str, Any]]]:
    verdict, results = evaluate(metrics, list(spec.get("criteria", [])))
    return d.Verdict(verdict), results
