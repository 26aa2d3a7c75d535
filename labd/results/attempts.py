"""Turns an attempt's raw samples into metrics and a verdict, with the lab's assignment and the suite's criteria."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

from labd.state import Store
from labd.state.base import FinishRead
from pilotlab import domain as d
from pilotlab.attempt_metrics import Samples
from pilotlab.compliance import Assigned, Reported, graded_metrics
from pilotlab.genai import GENERATED_IDS, LOG_LIKELIHOODS
from pilotlab.genai_metrics import with_reference
from pilotlab.grading import evaluate
from pilotlab.tasks import TaskSpec


@lru_cache(maxsize=16)
def dataset_labels(path: str) -> np.ndarray | None:
    with np.load(path) as z:
        return np.asarray(z["labels"], dtype=np.int64) if "labels" in z.files else None


@lru_cache(maxsize=16)
def golden_references(path: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A generative golden's reference decode (generated_ids, int64) and reference log-likelihoods
    (log_likelihoods, float64), each None where the artifact holds none; read-only, as they are shared."""
    with np.load(path, allow_pickle=False) as z:
        ids = np.asarray(z[GENERATED_IDS], dtype=np.int64) if GENERATED_IDS in z.files else None
        ll = np.asarray(z[LOG_LIKELIHOODS], dtype=np.float64) if LOG_LIKELIHOODS in z.files else None
    for a in (ids, ll):
        if a is not None:
            a.setflags(write=False)
    return ids, ll


def attempt_samples(store: Store, attempt_id: str) -> Samples:
    """Every kind of raw sample of an attempt as whole numpy columns, read from its batches' blobs at once."""
    return store.all_samples(attempt_id)


def _artifact_path(store: Store) -> Callable[[str], str]:
    return lambda sha256: store.get_artifact(sha256).path


def _labels(path_of: Callable[[str], str], spec: TaskSpec) -> np.ndarray | None:
    if spec.accuracy and spec.dataset is not None:
        return dataset_labels(path_of(spec.dataset.sha256))
    return None


def _references(path_of: Callable[[str], str], spec: TaskSpec) -> tuple[np.ndarray | None, np.ndarray | None]:
    if spec.scenario == "generative" and spec.golden is not None:
        return golden_references(path_of(spec.golden.sha256))
    return None, None


def _with_references(samples: Samples, path_of: Callable[[str], str], spec: TaskSpec) -> Samples:
    if spec.scenario == "generative":
        generated_ids, log_likelihoods = _references(path_of, spec)
        return with_reference(samples, generated_ids, log_likelihoods)
    return samples


def task_labels(store: Store, spec: TaskSpec) -> np.ndarray | None:
    return _labels(_artifact_path(store), spec)


def graded_samples(store: Store, attempt_id: str, spec: TaskSpec) -> Samples:
    """The attempt's raw samples with what the lab joins to them from its own artifacts: a generative task's
    golden decode beside its tokens and golden log-likelihoods beside its log-likelihoods (never a reference the
    device sent)."""
    return _with_references(attempt_samples(store, attempt_id), _artifact_path(store), spec)


def attempt_metrics(store: Store, attempt_id: str, spec: TaskSpec, reported: Reported) -> dict[str, Any]:
    """Metrics of one attempt from its stored samples, computed with the settings the lab assigned (never the
    device's) and invalid where what the device reported does not comply with that assignment."""
    path_of = _artifact_path(store)
    return graded_metrics(Assigned.of(spec), reported,
                          _with_references(attempt_samples(store, attempt_id), path_of, spec), _labels(path_of, spec))


def finish_metrics(read: FinishRead, spec: TaskSpec, reported: Reported) -> dict[str, Any]:
    """attempt_metrics from what a finish read of the store (Store.read_finish): its samples and the artifacts'
    paths as read with the attempt, in the same order (samples, references, labels)."""
    return graded_metrics(Assigned.of(spec), reported,
                          _with_references(read.all_samples(), read.artifact_path, spec),
                          _labels(read.artifact_path, spec))


def grade(metrics: dict[str, Any], spec: TaskSpec) -> tuple[d.Verdict, list[dict[str, Any]]]:
    verdict, results = evaluate(metrics, [c.to_dict() for c in spec.criteria])
    return d.Verdict(verdict), results
