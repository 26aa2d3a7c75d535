"""report.json and the evidence bundle of a smoke run measured by the real agent and ingested by the real handlers."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.artifact_cache import ArtifactCache
from agents.capabilities import probe
from agents.credentials import public_raw
from agents.job_runner import Job, JobRunner
from agents.lab_client import LabClient
from labctl.verify import recompute, verify_bundle
from labd.evidence.bundle import report_bundle
from labd.evidence.keys import Issuer, load_or_create_signing_key
from labd.handlers import agents, runs
from labd.scheduler.dispatcher import assignment
from pilotlab import domain as d
from pilotlab import dsse, tasks
from pilotlab.compliance import Assigned, latency_kinds, required_sets
from pilotlab.samples import batch_signing_bytes
from tests.labd.conftest import ENGINEER, Parts


class Collector:
    """The agent's Reporter boundary: keeps the batches and the finish for the test to hand to the lab."""

    def __init__(self) -> None:
        self.batches: list[d.ResultBatch] = []
        self.finishes: list[d.AttemptFinish] = []

    def batch(self, batch: d.ResultBatch) -> None:
        self.batches.append(batch)

    def finished(self, fin: d.AttemptFinish) -> None:
        self.finishes.append(fin)

    def progress(self, attempt_id: str, phase: str, fraction: float, message: str = "") -> None:
        pass


@dataclass
class Issued:
    run: d.Run
    device: d.Device
    fin: d.AttemptFinish
    root: Path  # the unpacked bundle
    pubkey: Path  # the lab's public key, kept apart from the bundle to pin it
    report: dict[str, Any]


def _measure(parts: Parts, key: Ed25519PrivateKey, a: d.Assignment, cache_dir: Path) -> Collector:
    """Run the assignment with the real agent job runner, over a cache filled from the lab's own artifacts."""
    client = LabClient("127.0.0.1:1")  # never dialled: every artifact is already in the cache
    try:
        cache = ArtifactCache(cache_dir, client)
        for ref in (a.model, a.dataset):
            assert ref is not None
            shutil.copyfile(parts.store.get_artifact(ref.sha256).path, cache.path(ref.sha256))

        def sign(b: d.ResultBatch) -> None:
            arrays: dict[str, list[int] | list[float]] = {
                "index": b.index, "sample_index": b.sample_index, "t_ns": b.t_ns, "value": b.value, "aux": b.aux,
                "fvalue": b.fvalue}
            b.signature = key.sign(batch_signing_bytes(b.attempt_id, b.seq, b.kind, arrays))

        rep = Collector()
        JobRunner(cache, rep, 128, sign).run(Job(a))
    finally:
        client.close()
    return rep


@pytest.fixture
def issued(parts: Parts, tmp_path: Path) -> Issued:
    key = Ed25519PrivateKey.generate()
    dev, _ = agents.enrol(parts.store, parts.clock, "r1", "robot", "eu", {"make": "Acme"}, probe(),
                          public_raw(key))
    run = runs.submit_run(parts.store, parts.sessions, parts.clock, ENGINEER,
                          runs.SubmitOptions(suite_id="smoke", device="r1"))
    parts.clock.advance(1_000)
    task, att = parts.claim(dev)
    rep = _measure(parts, key, assignment(task, att), tmp_path / "cache")
    fin = rep.finishes[0]
    assert fin.outcome == d.Outcome.OK, fin.reason
    for b in rep.batches:
        assert agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, b, dev.public_key)
    parts.clock.advance(2_000)
    done, ack = agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id, fin)
    assert ack and done is not None and done.status == d.Status.COMPLETED

    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    issuer = Issuer("PilotLab test lab", load_or_create_signing_key(lab_dir))
    files = report_bundle(parts.store, issuer, parts.clock, run.id)
    root = tmp_path / "bundle"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    pubkey = lab_dir / "lab.pub.pem"
    pubkey.write_text(dsse.public_pem(issuer.key.public_key()))
    return Issued(parts.store.get_run(run.id), parts.store.get_device(dev.id), fin, root, pubkey,
                  json.loads(files["report.json"]))


def test_report_json_carries_the_contract_keys(issued: Issued, parts: Parts) -> None:
    r, run, dev = issued.report, issued.run, issued.device
    assert run.verdict is not None
    assert (r["run"]["id"], r["run"]["status"], r["run"]["verdict"]) == (run.id, "completed", run.verdict.value)
    assert r["run"]["suite"] == {"id": "smoke", "version": parts.suite.version, "digest": parts.suite.digest,
                                 "title": parts.suite.title}
    caps = dev.capabilities
    device = r["device"]
    assert (device["name"], device["class"], device["region"], device["make"]) == ("r1", "robot", "eu", "Acme")
    assert device["agent_version"] == caps.agent_version and caps.agent_version
    assert device["onnxruntime_version"] == caps.onnxruntime_version and caps.onnxruntime_version
    assert device["providers"] == caps.providers and "CPUExecutionProvider" in device["providers"]
    assert device["cpu_flags"] == caps.cpu_flags and isinstance(device["cpu_flags"], list)
    assert device["public_key"]  # the device registered a key; the verifier checks samples against it

    [t] = r["tasks"]
    stored = run.tasks[0]
    spec = stored.spec
    assert spec is not None
    assert (t["id"], t["name"], t["scenario"]) == (stored.id, "digits-single-stream", "single-stream")
    assert t["model"]["name"] == "digits-logreg" and t["model"]["sha256"] == spec.model.sha256
    assert t["execution_provider"] == "CPUExecutionProvider"
    assert t["verdict"] == r["run"]["verdict"] and t["attempts"] == 1
    assert t["metrics"] == stored.metrics and {"latency_ms", "accuracy"} <= set(t["metrics"])
    assert t["attempt_id"] == issued.fin.attempt_id
    assert set(required_sets(Assigned.of(spec))) <= set(t["samples"])
    assert t["metrics"]["validity"] == {"valid": True, "reasons": []}  # the real agent complies with its assignment
    for path in t["samples"].values():
        assert (issued.root / path).is_file()
    # Who authorised it: the lab, by its key, named by the sha256 of the PEM `labctl lab pubkey` prints.
    fingerprint = hashlib.sha256(issued.pubkey.read_bytes()).hexdigest()
    assert r["lab"]["public_key_sha256"] == fingerprint
    assert {k: r["authorised_by"][k] for k in ("name", "key_id", "public_key_sha256")} == {
        "name": "PilotLab test lab", "key_id": r["lab"]["key_id"], "public_key_sha256": fingerprint}
    # The runner measured without a meter: the report says why energy is unavailable.
    assert t["metrics"]["energy"]["source"] == "unavailable" and t["figure_notes"]["energy"].startswith("the ")


def test_settings_are_the_effective_ones_and_observations_stand_apart(issued: Issued) -> None:
    [t] = issued.report["tasks"]
    spec = issued.run.tasks[0].spec
    assert spec is not None
    eff = tasks.effective(spec.settings).to_dict()
    assert t["settings"] == eff  # what the lab assigned and grades with ...
    assert t["device_settings"] == issued.fin.effective_settings == eff  # ... and what the device says it ran
    assert t["execution_provider"] == spec.execution_provider == t["device_execution_provider"]
    assert t["accuracy_metric"] == "top1" and t["golden"] is None
    assert t["requested_settings"] == spec.settings.to_dict() != t["settings"]  # defaults filled in
    assert t["settings"]["audit_queries"] == tasks.AUDIT_QUERIES and "audit_queries" not in t["requested_settings"]
    obs = t["observations"]
    assert set(obs) == set(d.Observations().to_dict())
    assert obs == issued.fin.observations.to_dict()
    assert {w["kind"] for w in obs["windows"]} == set(latency_kinds(spec.scenario, eff))
    assert obs["session_options"]["graph_optimization"] == eff["graph_optimization"]
    assert "cpu_seconds" in obs["energy"]
    assert not set(obs) & set(t["settings"])  # neither "energy" nor "session_options" is a setting


def test_the_bundle_verifies_and_its_metrics_recompute_from_the_samples(issued: Issued) -> None:
    problems, notes = verify_bundle(issued.root, issued.pubkey)
    assert problems == [], problems
    assert not any("registered no key" in n for n in notes)
    assert recompute(issued.root, issued.report) == []
    sigs = json.loads((issued.root / "device-signatures.json").read_bytes())
    assert len(sigs[issued.fin.attempt_id]) == issued.fin.batches


def test_altering_one_sample_byte_fails_verification_naming_the_file(issued: Issued) -> None:
    path = issued.report["tasks"][0]["samples"]["latency;repeat=0"]
    target = issued.root / path
    records = np.load(target, allow_pickle=False)
    records["value"][0] ^= 1  # one bit of the first query's latency
    np.save(target, records, allow_pickle=False)

    problems, _ = verify_bundle(issued.root, issued.pubkey)
    assert f"altered file {path}: its sha256 differs from the signed digest" in problems
    assert any(path in p and "does not match the device's signature" in p for p in problems), problems
