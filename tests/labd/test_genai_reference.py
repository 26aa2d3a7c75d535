"""The lab, not the device, compares a generative task's tokens and log-likelihoods with the reference: over the real
handlers and store, a device that sends wrong tokens with a forged "reference" beside them (in aux, the column that
once carried it) gets no credit for it, and one that sends poor log-likelihoods cannot send reference log-likelihoods
to match (the set that once carried them is refused); the lab's own golden goes into the report bundle's `label` and
`reference` columns, and the verifier recomputes the same conformance and perplexity from them."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from evalsuites import builtin_suites_dir, load_suite
from labctl.verify import recompute, verify_bundle
from labd.evidence.bundle import report_bundle
from labd.evidence.keys import Issuer, load_or_create_signing_key
from labd.handlers import agents
from pilotlab import domain as d
from pilotlab.compliance import Assigned, latency_kinds, token_kinds
from pilotlab.genai import LL_KIND
from pilotlab.samples import read_samples_npy
from tests.labd.agent_results import Sets, batches, finish
from tests.labd.conftest import Parts

GENAI = builtin_suites_dir() / "terminal-genai"
MS = 1_000_000


@pytest.fixture
def genai_parts(parts: Parts) -> Parts:
    """parts with terminal-genai registered, its artifacts where the suite keeps them (the model is not copied)."""
    suite = load_suite(GENAI)
    for art in suite.artifacts.values():
        if art.path is None or not art.path.is_file():
            pytest.fail(f"{art.name} is missing: make install builds it (python -m evalsuites.genai build {GENAI})")
        parts.store.put_artifact(d.ArtifactRecord(sha256=art.sha256, size=art.size, name=art.name, kind=art.kind,
                                                  path=str(art.path)))
    parts.store.put_suite(d.SuiteRecord(id=suite.id, version=suite.version, title=suite.title, digest=suite.digest,
                                        suite_json=suite.to_json()))
    return replace(parts, suite=suite)


def _token_sets(a: Assigned, tokens: np.ndarray, echoed: np.ndarray) -> tuple[Sets, d.Observations]:
    """Every timed run of a chat task: each prompt's tokens `tokens[row]`, one 10 ms apart, and `echoed[row]` in
    aux where an old agent put the reference."""
    prompts, new = tokens.shape
    sets: Sets = {}
    windows = []
    t = 9_000_000 * MS
    for lat_kind, tok_kind in zip(latency_kinds("generative", a.settings), token_kinds(a.settings), strict=True):
        issue = t + np.arange(prompts, dtype=np.int64) * (new + 1) * 10 * MS
        times = issue[:, None] + (np.arange(new, dtype=np.int64)[None, :] + 1) * 10 * MS
        rows = np.arange(prompts, dtype=np.int64)
        sets[lat_kind] = {"index": rows, "sample_index": rows, "t_ns": issue, "value": times[:, -1] - issue,
                          "aux": np.full(prompts, 40, dtype=np.int64)}
        sets[tok_kind] = {"index": np.repeat(rows, new), "sample_index": np.repeat(rows, new),
                          "t_ns": times.ravel(), "value": tokens.ravel(), "aux": echoed.ravel()}
        windows.append({"kind": lat_kind, "start_ns": int(issue[0]), "end_ns": int(times[-1, -1])})
        t = int(times[-1, -1]) + 100 * MS
    return sets, d.Observations(windows=windows)


def test_a_forged_reference_cannot_raise_conformance(genai_parts: Parts, tmp_path: Path) -> None:
    parts = genai_parts
    dev = parts.enrol("terminal", device_class="smart-terminal")
    run = parts.queue(dev)
    task, att = parts.claim(dev)
    assert task.spec is not None and task.spec.golden is not None and task.name.startswith("chat-")
    assigned = Assigned.of(task.spec)
    golden = Path(parts.store.get_artifact(task.spec.golden.sha256).path)
    new = int(assigned.settings["max_new_tokens"])
    reference = np.load(golden)["generated_ids"][:, :new]
    wrong = reference + 1  # every token differs from the reference decode ...
    sets, obs = _token_sets(assigned, wrong, echoed=wrong)  # ... and the device claims a reference equal to them
    for b in batches(att.id, sets):
        assert agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, b)
    fin = finish(att.id, assigned, len(sets), obs)
    done, ack = agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id, fin)
    assert ack and done is not None
    graded = next(t for t in done.tasks if t.id == task.id)
    m = graded.metrics
    assert m["validity"] == {"valid": True, "reasons": []}
    n = reference.size * int(assigned.settings["repeats"])
    assert m["conformance"] == {"token_agreement": 0.0, "n": n, "matching": 0, "requests": 18,
                                "identical_requests": 0}
    assert graded.verdict == d.Verdict.FAIL

    while (rest := parts.leases.claim(dev.id)) is not None:  # the suite's other tasks: refused, so the run ends
        refused = d.AttemptFinish(rest[1].id, d.Outcome.REFUSED, reason="not this test's task")
        agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id, refused)

    # The bundle carries the lab's reference beside the device's tokens; the verifier recomputes the same figure.
    root = _bundle(parts, tmp_path, run)
    report = json.loads((root / "report.json").read_bytes())
    t = next(t for t in report["tasks"] if t["name"] == task.name)
    tokens = read_samples_npy((root / t["samples"]["token;repeat=0"]).read_bytes())
    assert tokens["label"].tolist() == reference.ravel().tolist()  # the lab's golden, not the device's aux
    assert tokens["aux"].tolist() == wrong.ravel().tolist()  # what the device sent stays as it signed it
    assert verify_bundle(root)[0] == []
    assert t["metrics"]["conformance"]["token_agreement"] == 0.0

    t["metrics"]["conformance"]["token_agreement"] = 1.0  # a report that claims the forged figure
    assert any(f"task {task.name}: metric conformance.token_agreement does not recompute" in p
               for p in recompute(root, report))


def _bundle(parts: Parts, tmp_path: Path, run: d.Run) -> Path:
    root = tmp_path / "bundle"
    (tmp_path / "lab").mkdir()
    issuer = Issuer("PilotLab test lab", load_or_create_signing_key(tmp_path / "lab"))
    for name, data in report_bundle(parts.store, issuer, parts.clock, run.id).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_a_forged_reference_cannot_lower_the_perplexity_ratio(genai_parts: Parts, tmp_path: Path) -> None:
    parts = genai_parts
    dev = parts.enrol("terminal", device_class="smart-terminal")
    run = parts.queue(dev)
    refused = []
    while True:  # the suite's other tasks: refused, so the run ends with the perplexity task
        task, att = parts.claim(dev)
        if task.name == "perplexity-256":
            break
        refused.append(task.name)
        agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id,
                      d.AttemptFinish(att.id, d.Outcome.REFUSED, reason="not this test's task"))
    assert task.spec is not None and task.spec.golden is not None
    assigned = Assigned.of(task.spec)
    windows = int(assigned.settings["perplexity_windows"])
    golden = np.load(Path(parts.store.get_artifact(task.spec.golden.sha256).path))["log_likelihoods"][:windows]
    worse = golden - 0.5  # every token half a nat less likely than the reference: perplexity e^0.5 times as high
    prompts = int(assigned.settings["min_query_count"])
    sets, obs = _token_sets(assigned, np.zeros((prompts, int(assigned.settings["max_new_tokens"])), np.int64),
                            echoed=np.zeros((prompts, int(assigned.settings["max_new_tokens"])), np.int64))
    n = golden.size
    ll = {"index": np.arange(n, dtype=np.int64), "sample_index": np.repeat(np.arange(windows), golden.shape[1]),
          "value": np.tile(np.arange(1, golden.shape[1] + 1), windows), "aux": np.zeros(n, dtype=np.int64),
          "t_ns": np.zeros(n, dtype=np.int64)}
    sets[LL_KIND] = {**ll, "fvalue": worse.ravel()}
    # ... and a "reference" as poor as its own, in the set that once carried the golden's: the lab refuses it
    forged = {"log-likelihood-reference": {**ll, "fvalue": worse.ravel()}}
    for b in batches(att.id, sets):
        assert agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, b)
    (forged_batch,) = batches(att.id, forged)
    forged_batch.seq = len(sets)
    with pytest.raises(agents.BatchRefused, match="log-likelihood-reference"):
        agents.ingest(parts.store, parts.metrics, parts.clock, dev.id, forged_batch)
    done, ack = agents.finish(parts.store, parts.leases, parts.health, parts.clock, dev.id,
                              finish(att.id, assigned, len(sets), obs))
    assert ack and done is not None
    graded = next(t for t in done.tasks if t.id == task.id)
    m = graded.metrics
    assert m["validity"] == {"valid": True, "reasons": []}
    ppl = m["perplexity"]
    assert ppl["ratio"] == pytest.approx(np.exp(0.5)) and ppl["n"] == n and ppl["windows"] == windows
    assert ppl["reference"] == pytest.approx(np.exp(-golden.mean()))  # the lab's golden, not the device's
    assert graded.verdict == d.Verdict.FAIL

    # The bundle carries the lab's reference beside the device's log-likelihoods, which stay as it signed them.
    root = _bundle(parts, tmp_path, run)
    report = json.loads((root / "report.json").read_bytes())
    t = next(t for t in report["tasks"] if t["name"] == task.name)
    rel = t["samples"][LL_KIND]
    records = read_samples_npy((root / rel).read_bytes())
    assert records["reference"].tolist() == golden.ravel().tolist()
    assert records["fvalue"].tolist() == worse.ravel().tolist()
    assert verify_bundle(root)[0] == []
    assert t["metrics"]["perplexity"]["ratio"] == pytest.approx(np.exp(0.5))
    assert [c["verdict"] for c in t["criteria"] if c["metric"] == "perplexity.ratio"] == ["fail", "fail"]  # GA-1, 3

    t["metrics"]["perplexity"]["ratio"] = 1.0  # a report that claims the forged figure
    t["metrics"]["perplexity"]["value"] = ppl["reference"]
    problems = recompute(root, report)
    assert any(f"task {task.name}: metric perplexity.ratio does not recompute" in p for p in problems), problems
    assert any(f"task {task.name}: metric perplexity.value does not recompute" in p for p in problems), problems

    edited = records.copy()  # a bundle whose reference column is edited to match the device's values
    edited["reference"] = edited["fvalue"]
    buf = io.BytesIO()
    np.save(buf, edited, allow_pickle=False)
    (root / rel).write_bytes(buf.getvalue())
    assert any(f"altered file {rel}" in p for p in verify_bundle(root)[0])
