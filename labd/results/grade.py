"""Turns an attempt's raw samples into metrics and a verdict, using the suite's criteria for the task."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from labd.state import Store
from pilotlab import domain as d
from pilotlab.grading import evaluate
from pilotlab.scenarios import Samples, compute_metrics


@lru_cache(maxsize=16)
def dataset_labels(path: str) -> np.ndarray | None:
    with np.load(path) as z:
        return np.asarray(z["labels"], dtype=np.int64) if "labels" in z.files else None


def attempt_samples(store: Store, attempt_id: str) -> Samples:
    return {kind: store.samples(attempt_id, kind) for kind in store.sample_kinds(attempt_id)}


def task_labels(store: Store, spec: dict[str, Any]) -> np.ndarray | None:
    if spec.get("accuracy") and spec.get("dataset"):
        return dataset_labels(store.get_artifact(spec["dataset"]["sha256"]).path)
    return None


def attempt_metrics(store: Store, attempt_id: str, spec: dict[str, Any],
                    settings: dict[str, Any] | None = None) -> dict[str, Any]:
    accuracy = spec.get("accuracy") or {}
    return compute_metrics(spec["scenario"], settings or spec.get("settings", {}), attempt_samples(store, attempt_id),
                           task_labels(store, spec), accuracy.get("metric", "top1"))


def grade(metrics: dict[str, Any], spec: dict[str, Any]) -> tuple[d.Verdict, list[dict[str, Any]]]:
    verdict, results = evaluate(metrics, list(spec.get("criteria", [])))
    return d.Verdict(verdict), results
