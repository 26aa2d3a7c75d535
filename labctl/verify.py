"""Offline verification of a report bundle: signature, every digest, no unsigned file, metrics and validity
recomputed with the lab's assignment."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pilotlab import dsse
from pilotlab.attempt_metrics import parse_kind
from pilotlab.compliance import Assigned, Reported, graded_metrics
from pilotlab.domain import Observations
from pilotlab.grading import evaluate
from pilotlab.samples import batch_bytes, batches, column, read_samples_npy
from pilotlab.transparency import verify_proof

ATTESTATION = "attestation.dsse.json"
TRANSPARENCY = "transparency.json"
PRINTED = "report.pdf"  # `labctl report pull --pdf` prints it from report.html; derived, never signed
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


def _assigned(task: dict[str, Any]) -> Assigned:
    return Assigned(task["scenario"], task.get("settings") or {}, task.get("execution_provider") or "",
                    task.get("accuracy_metric"), task.get("golden") is not None)


def _reported(task: dict[str, Any]) -> Reported:
    return Reported(task.get("device_settings") or {}, task.get("device_execution_provider") or "",
                    Observations.from_dict(task.get("observations")))


def _validity(task: str, expected: dict[str, Any], reported: Any) -> list[str]:
    """The lab's validity against the one the report's own data gives, each differing reason named."""
    got = reported.get("reasons", []) if isinstance(reported, dict) else []
    out = [f"task {task}: validity reason {r!r} does not follow from the report's data" for r in got
           if r not in expected["reasons"]]
    out += [f"task {task}: the report's data gives validity reason {r!r}, which the report omits"
            for r in expected["reasons"] if r not in got]
    if not out and (not isinstance(reported, dict) or reported.get("valid") != expected["valid"]):
        out.append(f"task {task}: validity.valid does not follow from its reasons (expected {expected['valid']})")
    return out


# The columns metrics are computed from, per kind of sample file: what the verifier keeps once a file's
# signatures are checked, so a task's files are never all held whole at once.
_KEEP = {"latency": ("t_ns", "value", "aux"), "audit-same": ("t_ns", "value"), "audit-varied": ("t_ns", "value")}
_ALL = ("index", "sample_index", "t_ns", "value", "aux", "fvalue", "label", "reference")


def _own(a: np.ndarray) -> np.ndarray:
    """A column that no longer refers to its file's buffer (a left-out column stays a zero-memory view)."""
    return a if a.strides == (0,) else np.ascontiguousarray(a)


def _read_samples(root: Path, task: dict[str, Any], subjects: dict[str, str], key: Ed25519PublicKey | None,
                  signatures: dict[tuple[str, int], str], problems: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Each of the task's sample files read once: its digest, its device signatures and the columns the
    recomputation needs, all from the same buffer. Files that cannot be trusted are left out (and named)."""
    name, attempt = task["name"], str(task.get("attempt_id") or "")
    samples: dict[str, dict[str, np.ndarray]] = {}
    for kind, rel in sorted((task.get("samples") or {}).items()):
        path = root / rel
        if not path.is_file():
            if rel not in subjects:  # a signed file that is missing is named by the digest check
                problems.append(f"task {name}: its sample file {rel} is not in the bundle")
            continue
        data = path.read_bytes()
        altered = rel in subjects and hashlib.sha256(data).hexdigest() != subjects[rel]
        if altered:  # named, then still checked against its device's signatures, which say whose bytes changed
            problems.append(f"altered file {rel}: its sha256 differs from the signed digest")
        try:
            records = read_samples_npy(data)
        except ValueError as e:
            problems.append(f"task {name}: {rel}: {e}")
            continue
        groups = batches(records)
        if len({seq for seq, _, _ in groups}) != len(groups):
            problems.append(f"task {name}: {rel}: the rows of a batch are not contiguous")
        for seq, lo, hi in groups:
            if key is None:
                break
            sig = signatures.get((kind, seq))
            if sig is None:
                problems.append(f"task {name}: {rel} batch {seq} has no device signature")
                continue
            try:
                key.verify(base64.b64decode(sig), batch_bytes(attempt, kind, records, lo, hi))
            except (InvalidSignature, ValueError):
                problems.append(f"task {name}: {rel} batch {seq} does not match the device's signature "
                                "(forged or altered samples)")
        if not altered:
            # generative figures join each request's latency row to its tokens by index, and compare tokens and
            # log-likelihoods with the golden the lab wrote beside them (label, reference): keep every column
            keep = _ALL if task.get("scenario") == "generative" else _KEEP.get(parse_kind(kind)[0], _ALL)
            samples[kind] = {c: _own(column(records, c)) for c in keep}
        del records, data
    return samples


def _recompute_task(task: dict[str, Any], samples: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """The task's reported metrics recomputed from its raw samples with the settings the lab assigned, and its
    validity, re-checking the device's report against that assignment."""
    name, metrics = task["name"], task.get("metrics") or {}
    expected = graded_metrics(_assigned(task), _reported(task), samples, _labels(samples))
    problems = _validity(name, expected.pop("validity"), metrics.get("validity"))
    problems += _compare(name, expected, metrics, "")
    if task.get("criteria"):
        verdict, _ = evaluate(metrics, [c for c in task["criteria"] if c["metric"] != "validity"])
        if task.get("verdict") and verdict != task["verdict"]:
            problems.append(f"task {name}: verdict {task['verdict']!r} does not follow from its criteria "
                            f"({verdict!r})")
    return problems


def check_tasks(root: Path, report: dict[str, Any], subjects: dict[str, str], notes: list[str]) -> list[str]:
    """Every task: its raw samples signed by its device, batch by batch, and its figures recomputed from them."""
    problems: list[str] = []
    sig_path = root / "device-signatures.json"
    sigs = json.loads(sig_path.read_bytes()) if sig_path.exists() else {}
    keys = {dv["name"]: dv.get("public_key") for dv in report.get("devices", [])}
    for task in report.get("tasks", []):
        files = task.get("samples") or {}
        if not task.get("metrics") and not files:
            continue
        if not files:
            problems.append(f"task {task['name']}: figures without raw samples in the bundle")
            continue
        b64 = keys.get(task.get("device"))
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(b64)) if b64 else None
        if key is None:
            notes.append(f"task {task['name']}: device {task.get('device')} registered no key; its raw samples "
                         "are vouched for by the lab's signature only")
        signatures = {(e["kind"], int(e["seq"])): str(e["signature"]) for e in sigs.get(task.get("attempt_id"), [])}
        samples = _read_samples(root, task, subjects, key, signatures, problems)
        if task.get("metrics") and len(samples) == len(files):
            problems += _recompute_task(task, samples)
    return problems


def recompute(root: Path, report: dict[str, Any]) -> list[str]:
    """check_tasks without the attestation: each task's samples against their device signatures, and its figures
    recomputed from them (for a report.json edited in place, whose digests no longer hold)."""
    return check_tasks(root, report, {}, [])


def invalid_tasks(report: dict[str, Any]) -> list[str]:
    """A note per task the lab graded invalid, with its reasons: intact evidence of a measurement that does not
    count."""
    notes = []
    for t in report.get("tasks", []):
        validity = (t.get("metrics") or {}).get("validity") or {}
        if not validity.get("valid", True):
            notes.append(f"task {t['name']}: the lab graded the measurement invalid: "
                         f"{'; '.join(validity.get('reasons', []))}")
    return notes


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _task_files(report: dict[str, Any]) -> set[str]:
    return {rel for t in report.get("tasks", []) for rel in (t.get("samples") or {}).values()}


def _named_key(report: dict[str, Any], key: Ed25519PublicKey) -> list[str]:
    """The key fingerprint the report prints (sha256 of the PEM `labctl lab pubkey` shows) against the key that
    verified its signature."""
    named = (report.get("lab") or {}).get("public_key_sha256")
    actual = hashlib.sha256(dsse.public_pem(key).encode()).hexdigest()
    if named and named != actual:
        return [f"report.json names the lab key sha256 {named}, but its signature verifies with the key {actual}"]
    return []


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
    if PRINTED in on_disk and PRINTED not in subjects:
        on_disk.pop(PRINTED)
        notes.append(f"{PRINTED} is not signed: it is printed from report.html (`labctl report pull --pdf`); the "
                     "signed report is report.html with report.json")
    problems = [f"missing file {name}: signed but not in the bundle" for name in sorted(set(subjects) - set(on_disk))]
    for name, path in on_disk.items():
        if name not in subjects:
            problems.append(f"unsigned file {name}: not covered by the attestation")
        elif not name.endswith(".npy") and _sha256(path) != subjects[name]:
            problems.append(f"altered file {name}: its sha256 differs from the signed digest")
    if "report.json" not in on_disk:
        return problems, notes
    report_bytes = on_disk["report.json"].read_bytes()
    if TRANSPARENCY in on_disk:
        problems += verify_proof(json.loads(on_disk[TRANSPARENCY].read_bytes()), report_bytes, key)
    else:
        problems.append(f"missing file {TRANSPARENCY}: the report carries no proof that it is in the lab's log")
    try:
        report = json.loads(report_bytes)
        if rfc8785.dumps(report) != report_bytes:
            problems.append("report.json is not in RFC 8785 canonical form")
        problems += _named_key(report, key)
        # A task's sample files are hashed as its check reads them (once each); any other here.
        task_files = _task_files(report)
        problems += [f"altered file {name}: its sha256 differs from the signed digest"
                     for name, path in on_disk.items() if name.endswith(".npy") and name in subjects
                     and name not in task_files and _sha256(path) != subjects[name]]
        problems += check_tasks(root, report, subjects, notes)
        notes += invalid_tasks(report)
    except (OSError, ValueError, KeyError) as e:
        problems.append(f"report.json or its samples cannot be read: {e}")
    return problems, notes
