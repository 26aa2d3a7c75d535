"""Offline verification of a report bundle: signature, every digest, no unsigned file, metrics recomputed."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from pilotlab import dsse
from pilotlab.grading import evaluate
from pilotlab.samples import read_samples_csv
from pilotlab.scenarios import compute_metrics

ATTESTATION = "attestation.dsse.json"
REL_TOL = 1e-9


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=1e-12)
    return bool(a == b)


def _compare(task: str, expected: Any, reported: Any, path: str) -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(reported, dict):
            return [f"task {task}: metric {path} is missing from report.json"]
        out: list[str] = []
        for key, value in expected.items():
            out += _compare(task, value, reported.get(key), f"{path}.{key}" if path else key)
        return out
    if not _close(expected, reported):
        return [f"task {task}: metric {path} does not recompute from the raw samples "
                f"(report says {reported!r}, samples give {expected!r})"]
    return []


def _labels(samples: dict[str, dict[str, np.ndarray]]) -> np.ndarray | None:
    pred = samples.get("prediction")
    if pred is None or not pred["sample_index"].size:
        return None
    labels = np.full(int(pred["sample_index"].max()) + 1, -1, dtype=np.int64)
    labels[pred["sample_index"]] = pred["label"]
    return labels


def recompute(root: Path, report: dict[str, Any]) -> list[str]:
    """Every reported metric of every task, recomputed from the bundle's raw samples alone."""
    problems: list[str] = []
    for task in report.get("tasks", []):
        name, metrics, files = task["name"], task.get("metrics") or {}, task.get("samples") or {}
        if not metrics:
            continue
        if not files:
            problems.append(f"task {name}: figures without raw samples in the bundle")
            continue
        samples = {kind: read_samples_csv((root / path).read_bytes()) for kind, path in files.items()}
        acc_name = (metrics.get("accuracy") or {}).get("name", "top1")
        expected = compute_metrics(task["scenario"], task.get("settings") or {}, samples, _labels(samples), acc_name)
        problems += _compare(name, expected, metrics, "")
        if task.get("criteria"):
            verdict, _ = evaluate(metrics, [c for c in task["criteria"] if c["metric"] != "validity"])
            if task.get("verdict") and verdict != task["verdict"]:
                problems.append(f"task {name}: verdict {task['verdict']!r} does not follow from its criteria "
                                f"({verdict!r})")
    return problems


def verify_bundle(root: Path, pubkey: Path | None = None) -> tuple[list[str], list[str]]:
    """(problems, notes). No problems means the bundle is intact and its figures recompute."""
    notes: list[str] = []
    env_path = root / ATTESTATION
    if not env_path.exists():
        return [f"missing file {ATTESTATION}: the bundle is unsigned"], notes
    key_path = pubkey or root / "lab.pub.pem"
    if pubkey is None:
        notes.append("checked against the bundle's own lab.pub.pem; pass --pubkey (from `labctl lab pubkey`) "
                     "to pin the lab's key")
    try:
        key = dsse.load_public_pem(key_path.read_bytes())
        stmt = dsse.open_envelope(json.loads(env_path.read_bytes()), key)
    except (OSError, ValueError, KeyError) as e:
        return [f"{ATTESTATION}: {e}"], notes
    subjects = {s["name"]: s["digest"]["sha256"] for s in stmt.get("subject", [])}
    on_disk = _files(root)
    on_disk.pop(ATTESTATION, None)
    problems = [f"missing file {name}: signed but not in the bundle" for name in sorted(set(subjects) - set(on_disk))]
    for name, path in on_disk.items():
        if name not in subjects:
            problems.append(f"unsigned file {name}: not covered by the attestation")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != subjects[name]:
            problems.append(f"altered file {name}: its sha256 differs from the signed digest")
    if "report.json" in on_disk and not any(p.endswith("report.json: its sha256 differs from the signed digest")
                                            for p in problems):
        try:
            problems += recompute(root, json.loads(on_disk["report.json"].read_bytes()))
        except (OSError, ValueError, KeyError) as e:
            problems.append(f"report.json or its samples cannot be read: {e}")
    return problems, notes
