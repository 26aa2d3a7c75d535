"""JobRunner.run on the smoke suite's real ONNX model and dataset, with a real artifact cache and device key."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.artifact_cache import ArtifactCache
from agents.credentials import device_key
from agents.job_runner import Job, JobRunner
from agents.lab_client import LabClient
from evalsuites import Suite, builtin_suites_dir, load_suite
from pilotlab import domain as d
from pilotlab import tasks
from pilotlab.samples import batch_signing_bytes

SMALL = {"min_query_count": 50, "min_duration_ms": 0, "warmup_queries": 5}
BATCH_SIZE = 64


class Collector:
    """The Reporter boundary: records every batch, the finish and the progress phases, in order."""

    def __init__(self, cancel_at: str = "") -> None:
        self.batches: list[d.ResultBatch] = []
        self.finishes: list[d.AttemptFinish] = []
        self.phases: list[str] = []
        self.cancel_at = cancel_at
        self.job: Job | None = None

    def batch(self, batch: d.ResultBatch) -> None:
        self.batches.append(batch)

    def finished(self, fin: d.AttemptFinish) -> None:
        self.finishes.append(fin)

    def progress(self, attempt_id: str, phase: str, fraction: float, message: str = "") -> None:
        self.phases.append(phase)
        if phase == self.cancel_at and self.job is not None:
            self.job.cancel.set()

    @property
    def fin(self) -> d.AttemptFinish:
        assert len(self.finishes) == 1, f"expected exactly one finish, got {len(self.finishes)}"
        return self.finishes[0]


def _arrays(b: d.ResultBatch) -> dict[str, Any]:
    return {"index": b.index, "sample_index": b.sample_index, "t_ns": b.t_ns, "value": b.value, "aux": b.aux,
            "fvalue": b.fvalue}


def _signer(key: Ed25519PrivateKey) -> Any:
    def sign(b: d.ResultBatch) -> None:
        b.signature = key.sign(batch_signing_bytes(b.attempt_id, b.seq, b.kind, _arrays(b)))

    return sign


@pytest.fixture(scope="module")
def suite() -> Suite:
    return load_suite(builtin_suites_dir() / "smoke")


@pytest.fixture
def cache(tmp_path: Path, suite: Suite) -> Iterator[ArtifactCache]:
    """A real cache over a temp dir, pre-filled with the suite's files under their sha256 (as it stores them); its
    lab client points nowhere and is never dialled, since every artifact is already there."""
    client = LabClient("127.0.0.1:1")
    c = ArtifactCache(tmp_path / "cache", client)
    for art in suite.artifacts.values():
        assert art.path is not None
        shutil.copyfile(art.path, c.path(art.sha256))
    try:
        yield c
    finally:
        client.close()


def _record(suite: Suite, name: str) -> d.ArtifactRecord:
    a = suite.artifacts[name]
    return d.ArtifactRecord(sha256=a.sha256, size=a.size, name=a.name, kind=a.kind, path="")


def _assignment(suite: Suite, settings: dict[str, Any], model: d.ArtifactRecord | None = None) -> d.Assignment:
    t = suite.tasks[0]
    assert t.dataset is not None
    return d.Assignment(attempt_id="att-1", task_id="task-1", run_id="run-1", task_name=t.name,
                        model=model or _record(suite, t.model), dataset=_record(suite, t.dataset),
                        scenario=t.scenario, settings=settings, execution_provider=t.execution_provider,
                        accuracy=dict(t.accuracy) if t.accuracy else None)


def _run(cache: ArtifactCache, key: Ed25519PrivateKey, a: d.Assignment, cancel_at: str = "") -> Collector:
    rep = Collector(cancel_at)
    job = Job(a)
    rep.job = job
    JobRunner(cache, rep, BATCH_SIZE, _signer(key)).run(job)
    return rep


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    return device_key(tmp_path)  # the agent's own key file, as the worker keeps it in its work dir


def test_single_stream_smoke_task_finishes_ok_with_signed_contiguous_batches(
        suite: Suite, cache: ArtifactCache, key: Ed25519PrivateKey) -> None:
    a = _assignment(suite, {**suite.tasks[0].settings, **SMALL})
    rep = _run(cache, key, a)
    fin = rep.fin
    assert fin.outcome == d.Outcome.OK, fin.reason
    assert fin.attempt_id == "att-1" and fin.reason == ""
    assert [b.seq for b in rep.batches] == list(range(len(rep.batches))) and rep.batches
    assert fin.batches == len(rep.batches)
    public = key.public_key()
    for b in rep.batches:
        assert b.attempt_id == "att-1" and len(b.index) <= BATCH_SIZE
        public.verify(b.signature, batch_signing_bytes(b.attempt_id, b.seq, b.kind, _arrays(b)))

    eff = tasks.effective(tasks.requested(a.scenario, a.settings))
    assert fin.effective_settings == eff.to_dict()
    assert fin.effective_settings["min_query_count"] == 50 and fin.effective_settings["warmup_queries"] == 5
    assert not {"energy", "session_options"} & set(fin.effective_settings)
    opts = fin.observations.session_options
    assert opts == {"intra_op_threads": eff.intra_op_threads, "inter_op_threads": eff.inter_op_threads,
                    "graph_optimization": eff.graph_optimization}
    assert set(fin.observations.energy) == {"cpu_seconds"}  # no meter, no TDP: only the CPU time is observed
    assert fin.observations.energy["cpu_seconds"] >= 0
    assert fin.execution_provider == "CPUExecutionProvider" and "CPUExecutionProvider" in fin.providers_used
    assert set(fin.environment) == {"before", "after"}

    by_kind: dict[str, int] = {}
    for b in rep.batches:
        by_kind[b.kind] = by_kind.get(b.kind, 0) + len(b.index)
    assert by_kind["latency"] == 50
    assert {"audit-same", "audit-varied"} <= set(by_kind)
    assert suite.tasks[0].accuracy is not None
    assert by_kind["prediction"] == 360  # every sample of the digits test split, once
    for b in rep.batches:  # latency samples carry real, positive timings
        if b.kind == "latency":
            assert all(v > 0 for v in b.value) and b.t_ns == sorted(b.t_ns)
    assert rep.phases[0] == "fetch" and rep.phases[-1] == "upload"
    assert rep.phases.index("warmup") < rep.phases.index("performance") < rep.phases.index("accuracy")


def test_an_unknown_setting_is_refused_naming_it(suite: Suite, cache: ArtifactCache, key: Ed25519PrivateKey) -> None:
    rep = _run(cache, key, _assignment(suite, {**SMALL, "turbo_mode": 1}))
    assert rep.fin.outcome == d.Outcome.REFUSED
    assert "turbo_mode" in rep.fin.reason and rep.fin.reason.startswith("settings:")
    assert rep.batches == [] and rep.fin.batches == 0


def test_a_model_that_is_not_onnx_is_refused_without_batches(suite: Suite, cache: ArtifactCache,
                                                             key: Ed25519PrivateKey) -> None:
    junk = b"this is not an ONNX protobuf\x00\xff" * 8
    digest = hashlib.sha256(junk).hexdigest()
    cache.path(digest).write_bytes(junk)
    bad = d.ArtifactRecord(sha256=digest, size=len(junk), name="digits-logreg", kind="model", path="")
    rep = _run(cache, key, _assignment(suite, SMALL, model=bad))
    fin = rep.fin
    assert fin.outcome == d.Outcome.REFUSED
    assert "onnxruntime could not load the model" in fin.reason and "cannot run here" in fin.reason
    assert rep.batches == [] and fin.batches == 0
    assert fin.effective_settings == {}  # nothing ran, so no settings were in effect


def test_cancelling_during_performance_ends_cancelled(suite: Suite, cache: ArtifactCache,
                                                       key: Ed25519PrivateKey) -> None:
    rep = _run(cache, key, _assignment(suite, {**SMALL, "min_query_count": 100_000}), cancel_at="performance")
    fin = rep.fin
    assert fin.outcome == d.Outcome.CANCELLED and fin.reason == "cancelled by the lab"
    assert "performance" in rep.phases and "upload" not in rep.phases
    assert rep.batches == [] and fin.batches == 0
