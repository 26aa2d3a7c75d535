"""The generative scenario through JobRunner and real executor processes: SmolLM2 (built by make install) on its
prompt and perplexity sets, the raw sets it returns and the lab's figures from them; refusals and limits."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.artifact_cache import ArtifactCache
from agents.credentials import device_key
from agents.job_runner import Job, JobRunner
from agents.lab_client import LabClient
from evalsuites import builtin_suites_dir
from pilotlab import domain as d
from pilotlab import genai, tasks
from pilotlab.compliance import Assigned, Reported, graded_metrics
from pilotlab.genai_metrics import with_reference
from tests.agents.test_job_runner import MODELS, Collector, _signer

GENAI = builtin_suites_dir() / "terminal-genai"
MODEL = "models/smollm2-135m-q4.onnx"
TINY = {"max_new_tokens": 4, "warmup_queries": 1, "min_query_count": 2, "repeats": 1}


@pytest.fixture(scope="module")
def model_file() -> Path:
    path = GENAI / MODEL
    if not path.is_file():
        pytest.fail(f"{path} is missing: make install builds it (python -m evalsuites.genai build {GENAI})")
    return path


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ArtifactCache]:
    client = LabClient("127.0.0.1:1")  # never dialled: every artifact is put in the cache first
    try:
        yield ArtifactCache(tmp_path / "cache", client)
    finally:
        client.close()


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    return device_key(tmp_path)


def _put(cache: ArtifactCache, path: Path, kind: str) -> d.ArtifactRecord:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not cache.path(digest).exists():
        shutil.copyfile(path, cache.path(digest))
    return d.ArtifactRecord(sha256=digest, size=path.stat().st_size, name=path.name, kind=kind, path="")


def _assignment(cache: ArtifactCache, model: Path, dataset: Path, golden: Path | None,
                settings: dict[str, Any]) -> d.Assignment:
    return d.Assignment(attempt_id="att-1", task_id="task-1", run_id="run-1", task_name="chat",
                        model=_put(cache, model, "model"), dataset=_put(cache, dataset, "dataset"),
                        golden=_put(cache, golden, "golden") if golden else None, scenario="generative",
                        settings=settings, execution_provider="CPUExecutionProvider", accuracy=None)


def _run(cache: ArtifactCache, key: Ed25519PrivateKey, a: d.Assignment) -> Collector:
    rep = Collector()
    JobRunner(cache, rep, 64, _signer(key)).run(Job(a))
    return rep


def _samples(rep: Collector) -> dict[str, dict[str, np.ndarray]]:
    """The batches as the lab stores them: one set of columns per kind."""
    cols = ("index", "sample_index", "t_ns", "value", "aux", "fvalue")
    out: dict[str, dict[str, list[Any]]] = {}
    for b in rep.batches:
        s = out.setdefault(b.kind, {c: [] for c in cols})
        for c in cols:
            s[c] += list(getattr(b, c)) or [0.0] * len(b.index)
    return {k: {c: np.asarray(v, dtype=np.float64 if c == "fvalue" else np.int64) for c, v in s.items()}
            for k, s in out.items()}


def _graded(rep: Collector, settings: dict[str, Any], golden: Path | None = None) -> dict[str, Any]:
    """The lab's figures: the assigned settings, and the golden decode and log-likelihoods joined to the tokens and
    log-likelihoods as the lab joins them."""
    fin = rep.fin
    assigned = Assigned("generative", tasks.effective(tasks.requested("generative", settings)).to_dict(),
                        "CPUExecutionProvider", None, True)
    g = dict(np.load(golden)) if golden else {}
    return graded_metrics(assigned, Reported(fin.effective_settings, fin.execution_provider, fin.observations),
                          with_reference(_samples(rep), g.get(genai.GENERATED_IDS), g.get(genai.LOG_LIKELIHOODS)),
                          None)


def test_prompts_are_timed_per_token_and_decode_the_reference(cache: ArtifactCache, key: Ed25519PrivateKey,
                                                              model_file: Path) -> None:
    settings = {**TINY, "repeats": 2}
    a = _assignment(cache, model_file, GENAI / "data/prompts-40.npz", GENAI / "data/prompts-40-reference.npz",
                    settings)
    rep = _run(cache, key, a)
    fin = rep.fin
    assert fin.outcome == d.Outcome.OK, fin.reason
    samples = _samples(rep)
    assert set(samples) == {"latency;repeat=0", "latency;repeat=1", "token;repeat=0", "token;repeat=1"}
    lat, tok = samples["latency;repeat=0"], samples["token;repeat=0"]
    assert lat["index"].tolist() == [0, 1] and lat["sample_index"].tolist() == [0, 1]
    assert lat["aux"].tolist() == [40, 40]  # prompt tokens
    assert tok["index"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    reference = np.load(GENAI / "data/prompts-40-reference.npz")["generated_ids"]
    assert not tok["aux"].any()  # the device sends no reference: the lab joins its own
    assert tok["value"].tolist() == reference[:2, :4].ravel().tolist()  # the greedy decode is the numpy reference's
    t = tok["t_ns"].reshape(2, 4)
    assert np.all(t[:, 0] > lat["t_ns"]) and np.all(np.diff(t, axis=1) > 0)
    assert np.array_equal(t[:, -1] - lat["t_ns"], lat["value"])  # end to end: issue to last token
    windows = {w["kind"]: w for w in fin.observations.windows}
    assert windows["latency;repeat=1"]["start_ns"] <= samples["latency;repeat=1"]["t_ns"].min()
    assert fin.observations.executor["session_create_ms"][0] > 0 and len(fin.observations.executor["peak_rss_mb"]) == 2

    m = _graded(rep, settings, GENAI / "data/prompts-40-reference.npz")
    assert m["validity"] == {"valid": True, "reasons": []}
    assert m["ttft_ms"]["n"] == 2 and m["tpot_ms"]["n"] == 6 and m["latency_ms"]["n"] == 2
    assert m["decode_tokens_per_s"] > 0 and m["prefill_tokens_per_s"] > 0
    assert m["conformance"] == {"token_agreement": 1.0, "n": 16, "matching": 16, "requests": 4,
                                "identical_requests": 4}
    assert m["peak_rss_mb"] == max(fin.observations.executor["peak_rss_mb"])
    assert m["generative"]["by_prompt_length"][0]["prompt_tokens"] == 40
    assert len(m["generative"]["repeats"]["ttft_p50_ms"]) == 2


def test_perplexity_windows_are_scored_beside_the_reference(cache: ArtifactCache, key: Ed25519PrivateKey,
                                                            model_file: Path) -> None:
    settings = {**TINY, "min_query_count": 1, "perplexity_windows": 2, "perplexity_tokens": 24}
    golden = GENAI / "data/perplexity-reference.npz"
    a = _assignment(cache, model_file, GENAI / "data/perplexity.npz", golden, settings)
    rep = _run(cache, key, a)
    assert rep.fin.outcome == d.Outcome.OK, rep.fin.reason
    samples = _samples(rep)
    assert set(samples) == {"latency", "token", genai.LL_KIND}  # the device sends no reference log-likelihoods
    ll = samples[genai.LL_KIND]
    assert ll["sample_index"].tolist() == [0] * 23 + [1] * 23 and ll["value"].tolist() == list(range(1, 24)) * 2
    reference = np.load(golden)[genai.LOG_LIKELIHOODS][:2, :23].ravel()
    assert np.abs(ll["fvalue"] - reference).max() < 1e-3
    m = _graded(rep, settings, golden)
    assert m["validity"]["valid"], m["validity"]
    assert m["perplexity"]["windows"] == 2 and m["perplexity"]["n"] == 46
    assert abs(m["perplexity"]["ratio"] - 1) < 1e-3 and "conformance" not in m  # no reference decode here


def test_a_model_needing_an_operator_the_runtime_lacks_is_refused_with_the_reason(
        cache: ArtifactCache, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    data = tmp_path / "prompts.npz"
    np.savez(data, input_ids=np.arange(6, dtype=np.int64).reshape(2, 3))
    rep = _run(cache, key, _assignment(cache, MODELS / "decoder_unknown_op.onnx", data, None, TINY))
    fin = rep.fin
    assert fin.outcome == d.Outcome.REFUSED and rep.batches == []
    assert "com.example.npu:MatMulNBits" in fin.reason and "cannot run here" in fin.reason


def test_a_model_that_is_not_a_decoder_is_refused(cache: ArtifactCache, key: Ed25519PrivateKey) -> None:
    smoke = builtin_suites_dir() / "smoke"
    rep = _run(cache, key, _assignment(cache, smoke / "models/digits_logreg.onnx", GENAI / "data/prompts-40.npz",
                                       None, TINY))
    assert rep.fin.outcome == d.Outcome.REFUSED
    assert rep.fin.reason.startswith("not a KV-cache decoder of the generative scenario: it needs an int64 input")


def test_perplexity_past_the_memory_limit_is_a_memory_fault(cache: ArtifactCache, key: Ed25519PrivateKey,
                                                            model_file: Path) -> None:
    settings = {**TINY, "min_query_count": 1, "perplexity_windows": 1, "memory_mb": 900}
    a = _assignment(cache, model_file, GENAI / "data/perplexity.npz", GENAI / "data/perplexity-reference.npz",
                    settings)
    fin = _run(cache, key, a).fin
    assert fin.outcome == d.Outcome.FAULT, fin.reason
    assert fin.reason.startswith("memory:") and "900 MiB" in fin.reason


def test_settings_reach_the_executor_as_effective_settings(cache: ArtifactCache, key: Ed25519PrivateKey,
                                                           model_file: Path) -> None:
    rep = _run(cache, key, _assignment(cache, model_file, GENAI / "data/prompts-40.npz", None,
                                       {**TINY, "profile": True}))
    assert rep.fin.outcome == d.Outcome.REFUSED and "no operator profile" in rep.fin.reason
    eff = tasks.effective(tasks.requested("generative", {}))
    assert (eff.warmup_queries, eff.min_query_count, eff.min_duration_ms, eff.max_new_tokens) == (1, 6, 0, 32)
    assert json.loads(json.dumps(eff.to_dict()))["perplexity_windows"] == 0
