"""Generative figures from raw per-token timestamps: TTFT, TPOT, decode and prefill rates, the graded repeat,
conformance and perplexity, malformed evidence, and what compliance asks of a generative attempt."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pilotlab.attempt_metrics import compute_metrics
from pilotlab.compliance import Assigned, Reported, check, required_sets
from pilotlab.domain import Observations
from pilotlab.genai import LL_KIND, REFERENCE_NONE, NotADecoder, decoder_spec
from pilotlab.genai_metrics import reference_log_likelihoods, reference_tokens, with_reference
from pilotlab.tasks import effective, requested

MS = 1_000_000


def run(ttft_ms: list[float], gaps_ms: list[list[float]], prompt: int = 40, start_ms: float = 1000.0,
        tokens: list[list[int]] | None = None, reference: list[list[int]] | None = None) -> dict[str, dict[str, Any]]:
    """A timed run's latency and token sets: request q issued when q - 1 ended (+1 ms), its first token after
    ttft_ms[q], then gaps_ms[q]."""
    lat: dict[str, list[int]] = {c: [] for c in ("index", "sample_index", "t_ns", "value", "aux")}
    tok: dict[str, list[int]] = {c: [] for c in ("index", "sample_index", "t_ns", "value", "aux")}
    t = start_ms * MS
    for q, (first, gaps) in enumerate(zip(ttft_ms, gaps_ms, strict=True)):
        issue = t
        times = np.cumsum([first, *gaps]) * MS + issue
        n = len(times)
        ids = tokens[q] if tokens else list(range(100, 100 + n))
        ref = reference[q] if reference else [REFERENCE_NONE] * n
        lat["index"].append(q), lat["sample_index"].append(q), lat["t_ns"].append(int(issue))
        lat["value"].append(int(times[-1] - issue)), lat["aux"].append(prompt)
        for k in range(n):
            tok["index"].append(q), tok["sample_index"].append(q), tok["t_ns"].append(int(times[k]))
            tok["value"].append(ids[k]), tok["aux"].append(ref[k])
        t = times[-1] + MS
    as_np = {c: np.asarray(v, dtype=np.int64) for c, v in lat.items()}
    token = {c: np.asarray(v, dtype=np.int64) for c, v in tok.items()}
    if reference:  # the lab's reference, joined as the lab joins it (the device sends none)
        token["label"] = token.pop("aux")
        token["aux"] = np.zeros_like(token["label"])
    return {"latency": as_np, "token": token}


def settings(**kw: Any) -> dict[str, Any]:
    return effective(requested("generative", {"min_query_count": 2, **kw})).to_dict()


def test_ttft_tpot_and_rates_come_from_the_raw_timestamps() -> None:
    r = run([80.0, 120.0], [[20.0, 20.0, 40.0], [10.0, 30.0, 20.0]], prompt=40)
    m = compute_metrics("generative", settings(max_new_tokens=4), {"latency": r["latency"], "token": r["token"]},
                        None)
    assert m["validity"] == {"valid": True, "reasons": []}
    assert m["ttft_ms"]["p50"] == 80.0 and m["ttft_ms"]["p90"] == 120.0 and m["ttft_ms"]["n"] == 2
    assert m["tpot_ms"]["n"] == 6 and m["tpot_ms"]["p50"] == 20.0 and m["tpot_ms"]["p99"] == 40.0
    # decode excludes the first token: 6 tokens after the first over 80 + 60 ms of decoding
    assert m["decode_tokens_per_s"] == pytest.approx(6 / 0.140)
    assert m["prefill_tokens_per_s"] == pytest.approx(80 / 0.200)
    assert m["latency_ms"]["p50"] == 160.0 and m["latency_ms"]["p99"] == 180.0  # end to end per prompt
    g = m["generative"]
    assert g["prompts"] == 2 and g["output_tokens"] == 8 and g["max_new_tokens"] == 4
    assert g["by_prompt_length"] == [{"prompt_tokens": 40, "prompts": 2, "ttft_p50_ms": 80.0,
                                      "decode_tokens_per_s": m["decode_tokens_per_s"],
                                      "prefill_tokens_per_s": m["prefill_tokens_per_s"]}]
    assert "conformance" not in m  # no reference tokens: nothing to conform to


def test_the_graded_repeat_is_the_median_by_end_to_end_p50() -> None:
    fast, mid, slow = run([50.0], [[10.0]]), run([60.0], [[10.0]]), run([200.0], [[10.0]])
    samples = {}
    for r, x in enumerate((slow, fast, mid)):
        samples[f"latency;repeat={r}"] = x["latency"]
        samples[f"token;repeat={r}"] = x["token"]
    m = compute_metrics("generative", settings(max_new_tokens=2, min_query_count=1, repeats=3), samples, None)
    assert m["generative"]["repeat"] == 2 and m["ttft_ms"]["p50"] == 60.0 and m["latency_ms"]["p50"] == 70.0
    assert m["generative"]["repeats"]["ttft_p50_ms"] == [200.0, 50.0, 60.0]
    assert m["repeats"]["k"] == 3


def test_conformance_is_the_share_of_tokens_equal_to_the_reference_decode() -> None:
    ref = [[5, 6, 7, 8], [1, 2, 3, 4]]
    r = run([80.0, 80.0], [[20.0] * 3] * 2, tokens=[[5, 6, 7, 8], [1, 2, 9, 9]], reference=ref)
    m = compute_metrics("generative", settings(max_new_tokens=4), r, None)
    assert m["conformance"] == {"token_agreement": 0.75, "n": 8, "matching": 6, "requests": 2,
                                "identical_requests": 1}
    partial = run([80.0, 80.0], [[20.0] * 3] * 2, tokens=[[5, 6, 7, 8], [1, 2, 9, 9]],
                  reference=[[5, 6, REFERENCE_NONE, REFERENCE_NONE], [1, 2, 3, REFERENCE_NONE]])
    c = compute_metrics("generative", settings(max_new_tokens=4), partial, None)["conformance"]
    assert (c["n"], c["matching"]) == (5, 4)  # positions without a reference are not counted


def test_the_reference_is_the_labs_golden_joined_by_row_and_position_never_the_devices() -> None:
    golden = np.array([[5, 6, 7, 8, 0], [1, 2, 3, 4, 0], [9, 9, 9, 9, 0]], dtype=np.int64)
    index = np.array([0, 0, 0, 1, 1, 1], dtype=np.int64)
    assert reference_tokens(index, np.array([2, 2, 2, 0, 0, 0]), golden).tolist() == [9, 9, 9, 5, 6, 7]
    assert reference_tokens(index, np.array([7, 7, 7, 1, 1, 1]), golden).tolist() == [-1, -1, -1, 1, 2, 3]
    assert reference_tokens(index, index, golden[:, :2]).tolist() == [5, 6, -1, 1, 2, -1]
    assert reference_tokens(index, index, None).tolist() == [REFERENCE_NONE] * 6

    # A device that decodes wrongly and sends, where the reference once went, a "reference" equal to its tokens:
    forged = run([80.0, 80.0], [[20.0] * 3] * 2, tokens=[[9, 9, 9, 9], [1, 2, 3, 4]])
    forged["token"]["aux"] = forged["token"]["value"].copy()
    assert "conformance" not in compute_metrics("generative", settings(max_new_tokens=4), forged, None)
    joined = with_reference(forged, golden)
    assert all(joined[k][c] is forged[k][c] for k in forged for c in forged[k])  # the device's columns as they came
    c = compute_metrics("generative", settings(max_new_tokens=4), joined, None)["conformance"]
    assert (c["token_agreement"], c["matching"], c["identical_requests"]) == (0.5, 4, 1)


@pytest.mark.parametrize("edit,reason", [
    (lambda t, lat: t.update(t_ns=t["t_ns"][::-1].copy()), "token times run backwards"),
    (lambda t, lat: [t.__setitem__(k, v[:-1]) for k, v in list(t.items())], "request 1 has 3 tokens"),
    (lambda t, lat: lat.update(value=lat["value"] + 1), "end-to-end latency is not its last token's time"),
    (lambda t, lat: t.update(index=t["index"][::-1].copy()), "not contiguous and in request order"),
])
def test_malformed_token_evidence_is_invalid_naming_why(edit: Any, reason: str) -> None:
    r = run([80.0, 80.0], [[20.0] * 3] * 2)
    edit(r["token"], r["latency"])
    m = compute_metrics("generative", settings(max_new_tokens=4), r, None)
    assert not m["validity"]["valid"] and "ttft_ms" not in m
    assert any(reason in x for x in m["validity"]["reasons"]), m["validity"]["reasons"]


def _ll(values: list[float], windows: list[int]) -> dict[str, np.ndarray]:
    n = len(values)
    return {"index": np.arange(n, dtype=np.int64), "sample_index": np.asarray(windows, dtype=np.int64),
            "value": np.arange(1, n + 1, dtype=np.int64), "aux": np.zeros(n, dtype=np.int64),
            "fvalue": np.asarray(values, dtype=np.float64)}


def test_perplexity_and_its_ratio_to_the_reference() -> None:
    golden_ll = np.array([[-2.0, -9.0], [-3.0, -9.0]])  # window 0 position 1, window 1 position 2 are scored
    r = run([80.0], [[20.0]])
    r[LL_KIND] = _ll([-2.0, -4.0], [0, 1])
    r[LL_KIND]["value"] = np.array([1, 1], dtype=np.int64)  # position 1 of each window
    s2 = settings(max_new_tokens=2, min_query_count=1, perplexity_windows=2)
    m = compute_metrics("generative", s2, with_reference(r, None, golden_ll), None)
    p = m["perplexity"]
    assert p["value"] == pytest.approx(np.exp(3.0)) and p["reference"] == pytest.approx(np.exp(2.5))
    assert p["ratio"] == pytest.approx(np.exp(0.5)) and p["n"] == 2 and p["windows"] == 2
    assert p["max_abs_diff"] == 1.0 and m["validity"]["valid"]
    short = compute_metrics("generative", settings(max_new_tokens=2, min_query_count=1, perplexity_windows=3),
                            with_reference(r, None, golden_ll), None)
    assert "2 windows scored, fewer than perplexity_windows 3" in short["validity"]["reasons"][0]
    for golden in (golden_ll[:1], None):  # the lab's golden lacks window 1, or has no log-likelihoods at all
        bad = compute_metrics("generative", s2, with_reference(r, None, golden), None)
        want = "no reference log-likelihood for 1 of the 2" if golden is not None else "for 2 of the 2"
        assert "perplexity" not in bad and want in bad["validity"]["reasons"][0], bad["validity"]
    raw = compute_metrics("generative", s2, r, None)  # nothing joined: no reference, no figure
    assert "perplexity" not in raw and not raw["validity"]["valid"]


def test_the_reference_log_likelihoods_are_the_labs_golden_never_the_devices() -> None:
    golden = np.array([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]])
    w, t = np.array([0, 0, 1, 1, 2, 0]), np.array([1, 3, 2, 4, 1, 0])  # t is 1-based; 4, window 2 and 0 are outside
    ref = reference_log_likelihoods(w, t, golden)
    assert ref[:3].tolist() == [-1.0, -3.0, -5.0] and np.isnan(ref[3:]).all()
    assert np.isnan(reference_log_likelihoods(w, t, None)).all()

    # A device that scores badly and sends a "reference" set as bad as its own: the ratio is against the lab's golden.
    r = run([80.0], [[20.0]])
    r[LL_KIND] = _ll([-3.0, -3.0], [0, 0])  # positions 1, 2 of window 0, golden -1, -2
    r["log-likelihood-reference"] = _ll([-3.0, -3.0], [0, 0])
    joined = with_reference(r, None, golden)
    assert all(joined[k][c] is r[k][c] for k in r for c in r[k])  # the device's columns as they came
    p = compute_metrics("generative", settings(max_new_tokens=2, min_query_count=1, perplexity_windows=1), joined,
                        None)["perplexity"]
    assert p["reference"] == pytest.approx(np.exp(1.5)) and p["ratio"] == pytest.approx(np.exp(1.5))
    r[LL_KIND]["value"] = np.array([1, 1], dtype=np.int64)  # nor can it pick one position twice
    twice = compute_metrics("generative", settings(max_new_tokens=2, min_query_count=1, perplexity_windows=1),
                            with_reference(r, None, golden), None)
    assert "perplexity" not in twice and "scored more than once" in twice["validity"]["reasons"][0]


def test_peak_memory_and_model_load_come_from_the_executor_observations() -> None:
    obs = Observations(executor={"peak_rss_mb": [250.5, 300.0], "session_create_ms": [600.0, 550.0]})
    m = compute_metrics("generative", settings(max_new_tokens=2, min_query_count=1), run([80.0], [[20.0]]), None,
                        observations=obs)
    assert m["peak_rss_mb"] == 300.0 and m["model_load_ms"] == 600.0


def test_compliance_asks_for_token_sets_and_perplexity_and_their_windows() -> None:
    s = settings(max_new_tokens=2, min_query_count=1, repeats=2, perplexity_windows=1)
    a = Assigned("generative", s, "CPUExecutionProvider", None, True)
    assert set(required_sets(a)) == {"latency;repeat=0", "latency;repeat=1", "token;repeat=0", "token;repeat=1",
                                     LL_KIND}  # no reference set: the lab's golden is the reference
    r0, r1 = run([80.0], [[20.0]]), run([80.0], [[20.0]], start_ms=5000.0)
    samples = {"latency;repeat=0": r0["latency"], "token;repeat=0": r0["token"], "latency;repeat=1": r1["latency"],
               "token;repeat=1": r1["token"], LL_KIND: _ll([-1.0], [0])}
    windows = [{"kind": "latency;repeat=0", "start_ns": 999 * MS, "end_ns": 1200 * MS},
               {"kind": "latency;repeat=1", "start_ns": 4999 * MS, "end_ns": 5090 * MS}]  # ends before its 2nd token
    reported = Reported(s, "CPUExecutionProvider", Observations(windows=windows))
    reasons = check(a, reported, samples)
    assert "1 samples of 'token;repeat=1' lie outside the reported performance window" in reasons
    del samples["token;repeat=0"]
    assert any("missing result set 'token;repeat=0'" in x for x in check(a, reported, samples))


class _Io:
    def __init__(self, name: str, type_: str, shape: list[Any]) -> None:
        self.name, self.type, self.shape = name, type_, shape


def test_the_decoder_interface_is_read_from_the_model_inputs_and_outputs() -> None:
    ins = [_Io("input_ids", "tensor(int64)", [1, "s"]), _Io("logits_to_keep", "tensor(int64)", [1])]
    ins += [_Io(f"past_key_values.{i}.{k}", "tensor(float)", [1, 3, "p", 64]) for i in range(2) for k in ("key",
                                                                                                        "value")]
    outs = [_Io("logits", "tensor(float)", [1, "k", 49152])]
    outs += [_Io(f"present.{i}.{k}", "tensor(float)", [1, 3, "t", 64]) for i in range(2) for k in ("key", "value")]
    spec = decoder_spec(ins, outs)
    assert (spec.layers, spec.kv_heads, spec.head_dim, spec.vocab) == (2, 3, 64, 49152)
    with pytest.raises(NotADecoder, match="output present.1.value is missing"):
        decoder_spec(ins, outs[:-1])
    with pytest.raises(NotADecoder, match="unexpected inputs position_ids"):
        decoder_spec([*ins, _Io("position_ids", "tensor(int64)", [1, "s"])], outs)
