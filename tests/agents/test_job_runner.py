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

SMALL = {"min_query_count": 50, "min_duration_ms": 0, "warmup_queries": 5, "repeats": 1}
MODELS = Path(__file__).resolve().parent.parent / "models"
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
    executor = fin.observations.executor
    # intra-op 0 resolves to one thread per CPU the executor was pinned to, and says so
    assert opts["intra_op_threads_requested"] == 0 and opts["intra_op_threads"] == len(executor["affinity"]) >= 1
    assert opts["inter_op_threads"] == eff.inter_op_threads and opts["graph_optimization"] == "all"
    assert opts["allow_spinning"] is True
    assert executor["processes"] == 1 and executor["timeout_s"] == 1800 and executor["memory_mb"] > 0
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


def _windows_cover(fin: d.AttemptFinish, rep: Collector) -> dict[str, int]:
    """Each latency set's samples lie inside the window the agent reported for it; returns samples per set."""
    windows = {w["kind"]: w for w in fin.observations.windows}
    seen: dict[str, int] = {}
    for b in rep.batches:
        if b.kind.startswith("latency"):
            w = windows[b.kind]
            assert min(b.t_ns) >= w["start_ns"]
            assert max(t + v for t, v in zip(b.t_ns, b.value, strict=True)) <= w["end_ns"]
            seen[b.kind] = seen.get(b.kind, 0) + len(b.value)
    return seen


def test_repeats_run_in_fresh_executors_with_windows_and_machine_state(
        suite: Suite, cache: ArtifactCache, key: Ed25519PrivateKey) -> None:
    rep = _run(cache, key, _assignment(suite, {**SMALL, "repeats": 3}))
    fin = rep.fin
    assert fin.outcome == d.Outcome.OK, fin.reason
    assert _windows_cover(fin, rep) == {f"latency;repeat={r}": 50 for r in range(3)}
    assert fin.observations.executor["processes"] == 3
    assert [x["repeat"] for x in fin.observations.system] == [0, 1, 2]
    for x in fin.observations.system:
        # None when the window was shorter than one kernel tick (these timed runs last about a millisecond)
        assert all(x[k] is None or 0.0 <= x[k] <= 1.0 for k in ("steal_share", "other_processes_cpu_share"))
        assert x["elapsed_s"] > 0 and x["peak_rss_mb"] > 0 and "thermal" in x
    assert len(fin.phases["repeats"]) == 3
    kinds = {b.kind for b in rep.batches}
    assert {"audit-same", "audit-varied", "prediction"} <= kinds  # once, in the first repeat's executor


def _fault_model(cache: ArtifactCache, name: str) -> d.ArtifactRecord:
    data = (MODELS / name).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    cache.path(digest).write_bytes(data)
    return d.ArtifactRecord(sha256=digest, size=len(data), name=name, kind="model", path="")


def test_a_model_that_never_finishes_is_killed_at_its_timeout(suite: Suite, cache: ArtifactCache,
                                                              key: Ed25519PrivateKey) -> None:
    model = _fault_model(cache, "hang.onnx")
    rep = _run(cache, key, _assignment(suite, {**SMALL, "timeout_s": 2}, model=model))
    fin = rep.fin
    assert fin.outcome == d.Outcome.FAULT
    assert fin.reason.startswith("timeout:") and "2 s" in fin.reason and model.sha256 in fin.reason
    assert rep.batches == []
    # the executor is gone: no process still runs the model from its work dir
    assert not any((cache.root.parent / "exec").glob("*/r0"))


def test_a_model_that_allocates_40gb_ends_on_its_memory_limit(suite: Suite, cache: ArtifactCache,
                                                              key: Ed25519PrivateKey) -> None:
    model = _fault_model(cache, "alloc40g.onnx")
    rep = _run(cache, key, _assignment(suite, {**SMALL, "memory_mb": 1024}, model=model))
    fin = rep.fin
    assert fin.outcome == d.Outcome.FAULT, fin.reason
    assert fin.reason.startswith("memory:") and "1024 MiB" in fin.reason and model.sha256 in fin.reason


def test_a_crashing_executor_is_a_fault_naming_the_signal_and_model(
        suite: Suite, cache: ArtifactCache, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    model = suite.artifacts[suite.tasks[0].model]
    monkeypatch.setenv("PILOTLAB_TEST_EXECUTOR_SIGNAL", f"SIGSEGV@{model.sha256}")
    rep = _run(cache, key, _assignment(suite, SMALL))
    fin = rep.fin
    assert fin.outcome == d.Outcome.FAULT
    assert "killed by SIGSEGV" in fin.reason and model.sha256 in fin.reason
    monkeypatch.delenv("PILOTLAB_TEST_EXECUTOR_SIGNAL")
    again = _run(cache, key, _assignment(suite, SMALL))  # the same runner's next task is unaffected
    assert again.fin.outcome == d.Outcome.OK, again.fin.reason


def test_the_executor_inherits_no_credentials_or_lab_settings(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    from agents.sandbox import clean_env

    monkeypatch.setenv("LAB_TOKEN", "secret")
    monkeypatch.setenv("LAB_ADDR", "lab:1")
    env = clean_env(tmp_path)
    assert not [k for k in env if k.startswith("LAB_")] and env["HOME"] == str(tmp_path)


def test_external_data_outside_the_artifact_set_is_refused(suite: Suite, cache: ArtifactCache,
                                                           key: Ed25519PrivateKey) -> None:
    from agents.model_files import external_data

    good = (MODELS / "hang.onnx").read_bytes()
    assert external_data(MODELS / "hang.onnx") == []
    # A tensor whose data lives at ../../etc/passwd: TensorProto{name=8:"w", data_location=14:1,
    # external_data=13:{key=1:"location", value=2:"../../etc/passwd"}} as an initializer (5) of the graph (7).
    def ld(field: int, payload: bytes) -> bytes:
        return bytes([field << 3 | 2, len(payload)]) + payload
    entry = ld(1, b"location") + ld(2, b"../../etc/passwd")
    tensor = ld(8, b"w") + ld(13, entry) + bytes([14 << 3, 1])
    data = good + ld(7, ld(5, tensor))  # a repeated graph field merges into the model's graph
    digest = hashlib.sha256(data).hexdigest()
    cache.path(digest).write_bytes(data)
    bad = d.ArtifactRecord(sha256=digest, size=len(data), name="m", kind="model", path="")
    rep = _run(cache, key, _assignment(suite, SMALL, model=bad))
    assert rep.fin.outcome == d.Outcome.REFUSED
    assert "../../etc/passwd" in rep.fin.reason and rep.batches == []


@pytest.mark.parametrize(("cpus", "agent", "measure"), [({0, 1}, {0, 1}, None), ({0, 1, 2, 3}, {0}, {1, 2, 3}),
                                                        ({2, 5, 6, 7, 9}, {2}, {5, 6, 7, 9})])
def test_isolate_cpus_keeps_the_agent_off_the_measurement_cores(monkeypatch: pytest.MonkeyPatch, cpus: set[int],
                                                                agent: set[int], measure: set[int] | None) -> None:
    import os

    from agents import worker

    pinned: list[set[int]] = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(cpus))
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, s: pinned.append(set(s)))
    got = worker.isolate_cpus()
    assert (set(got) if got is not None else None) == measure
    assert (pinned[-1] if pinned else set(cpus)) == agent  # on fewer than 4 CPUs nothing is pinned


def test_the_executor_runs_on_its_measurement_cores_with_one_thread_each(suite: Suite, cache: ArtifactCache,
                                                                          key: Ed25519PrivateKey) -> None:
    from agents.job_runner import Caps

    rep = Collector()
    job = Job(_assignment(suite, SMALL))
    JobRunner(cache, rep, BATCH_SIZE, _signer(key), caps=Caps(cpus=frozenset({0}))).run(job)
    fin = rep.fin
    assert fin.outcome == d.Outcome.OK, fin.reason
    assert fin.observations.executor["affinity"] == [0] and fin.observations.executor["cpus"] == [0]
    assert fin.observations.session_options["intra_op_threads"] == 1  # 0 resolved to the one pinned CPU
