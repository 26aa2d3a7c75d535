"""terminal-genai end to end: real labd and lab-agent processes run the suite (SmolLM2 built by make install) on the
CPU, the lab grades it from the raw per-token timestamps, and the certifier's verifier recomputes every figure.

This is the one end-to-end run of terminal-genai (test_shipped_suites.py leaves it out): the shipped suite's models,
data, tasks and criteria, with fewer of what takes the time (CI below: one repeat, 3 of each set's 6 prompts, 16 new
tokens instead of 32, perplexity over 2 windows of 128 tokens instead of 4 of 256), so the run takes seconds per task
on 2 cores (`--wait` gives it 4 minutes at most, for a loaded machine). `labctl suites validate` checks the shipped
suite itself, deep.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evalsuites import builtin_suites_dir
from labctl.verify import recompute, verify_bundle
from pilotlab.samples import column, read_samples_npy
from tests.e2e.conftest import Labd, labctl, make_token

GENAI = builtin_suites_dir() / "terminal-genai"
CI_ID = "terminal-genai-ci"
PROMPTS, NEW_TOKENS = 3, 16  # per chat task (the shipped suite: 6 prompts, 32 new tokens)
WINDOWS, WINDOW_TOKENS = 2, 128  # perplexity (the shipped suite: 4 windows of 256 tokens)
CI = (("repeats = 3", "repeats = 1"), ("min_query_count = 6", f"min_query_count = {PROMPTS}"),
      ("max_new_tokens = 32", f"max_new_tokens = {NEW_TOKENS}"),
      ("perplexity_windows = 4", f"perplexity_windows = {WINDOWS}\nperplexity_tokens = {WINDOW_TOKENS}"))


def ci_suite(root: Path) -> Path:
    """The shipped suite as terminal-genai-ci with the CI counts; models/ and data/ link to the shipped files."""
    dest = root / CI_ID
    dest.mkdir(parents=True)
    for sub in ("models", "data"):
        (dest / sub).symlink_to(GENAI / sub)
    toml = (GENAI / "suite.toml").read_text().replace('id = "terminal-genai"', f'id = "{CI_ID}"', 1)
    for shipped, ci in CI:
        assert shipped in toml, f"the shipped suite no longer says {shipped!r}: update CI"
        toml = toml.replace(shipped, ci)
    (dest / "suite.toml").write_text(toml)
    return root


def test_terminal_genai_runs_grades_and_verifies(tmp_path: Path, start_agent) -> None:  # type: ignore[no-untyped-def]
    check = labctl("127.0.0.1:1", None, "suites", "validate", str(GENAI))
    assert check.returncode == 0 and "valid" in check.stdout, check.stdout + check.stderr
    lab = Labd(tmp_path / "lab", extra=["--suites", str(ci_suite(tmp_path / "suites"))]).start()
    try:
        agent = start_agent(lab, "terminal", device_class="smart-terminal")
        eng = make_token(lab, "engineer")
        p = labctl(lab, eng, "run", "submit", "--suite", CI_ID, "--device", "terminal", "--wait", "--json",
                   timeout=240)
        run = json.loads(p.stdout)
        assert run["status"] == "completed", (run, p.stderr)
        out = tmp_path / "report"
        assert labctl(lab, eng, "report", "pull", run["id"], "--out", str(out)).returncode == 0
        assert labctl(lab, eng, "report", "verify", str(out)).returncode == 0
    finally:
        lab.stop()
    assert verify_bundle(out, None)[0] == []
    # The device got the model and the prompts, never a reference: the lab joins the goldens itself.
    import hashlib

    cached = {f.name for f in (agent.work_dir / "cache").iterdir() if f.is_file()}
    goldens = {hashlib.sha256(f.read_bytes()).hexdigest() for f in (GENAI / "data").glob("*-reference.npz")}
    assert cached and not cached & goldens, (sorted(cached), sorted(goldens))

    report = json.loads((out / "report.json").read_text())
    tasks = {t["name"]: t for t in report["tasks"]}
    assert set(tasks) == {"chat-40", "chat-128", "chat-512", "perplexity-256"}
    for name, t in tasks.items():
        m = t["metrics"]
        assert t["scenario"] == "generative" and m["validity"]["valid"], (name, m["validity"])
        for key in ("ttft_ms", "tpot_ms"):
            assert {"p50", "p90", "p99", "n"} <= set(m[key]) and m[key]["p50"] <= m[key]["p90"] <= m[key]["p99"]
        assert m["decode_tokens_per_s"] > 0 and m["prefill_tokens_per_s"] > 0 and m["latency_ms"]["n"] >= 2
        assert 100 < m["peak_rss_mb"] < t["settings"]["memory_mb"] and m["model_load_ms"] > 0
        assert {s.split(";")[0] for s in t["samples"]} >= {"latency", "token"}
    for length in (40, 128, 512):
        m = tasks[f"chat-{length}"]["metrics"]
        assert m["ttft_ms"]["n"] == PROMPTS and m["tpot_ms"]["n"] == PROMPTS * (NEW_TOKENS - 1)
        assert m["generative"]["by_prompt_length"][0]["prompt_tokens"] == length
        assert m["conformance"]["n"] == PROMPTS * NEW_TOKENS and m["conformance"]["token_agreement"] >= 0.95, \
            m["conformance"]
    ppl = tasks["perplexity-256"]["metrics"]["perplexity"]
    assert ppl["windows"] == WINDOWS and ppl["n"] == WINDOWS * (WINDOW_TOKENS - 1) and abs(ppl["ratio"] - 1) < 1e-3, ppl
    # The level reached depends on the machine (and its load); the verdict follows from every criterion.
    assert report["grade"]["scheme"].startswith("PilotLab terminal-genai levels")
    assert [lv["name"] for lv in report["grade"]["levels"]] == ["GA-1 basic", "GA-2 interactive", "GA-3 fluent"]
    assert (run["verdict"] == "pass") == all(c["verdict"] == "pass" for t in tasks.values() for c in t["criteria"]
                                            if c.get("required", True))

    # The lab's reference decode beside the device's tokens (the device sends none), from its copy of the golden.
    tok = read_samples_npy((out / tasks["chat-40"]["samples"]["token"]).read_bytes())
    golden = np.load(GENAI / "data/prompts-40-reference.npz")["generated_ids"]
    assert column(tok, "label").tolist() == golden[:PROMPTS, :NEW_TOKENS].ravel().tolist()
    assert not column(tok, "aux").any()
    # Likewise its reference log-likelihoods beside the device's (the device sends none either).
    ppl_samples = tasks["perplexity-256"]["samples"]
    assert set(ppl_samples) == {"latency", "token", "log-likelihood"}
    ll = read_samples_npy((out / ppl_samples["log-likelihood"]).read_bytes())
    reference = np.load(GENAI / "data/perplexity-reference.npz")["log_likelihoods"][:WINDOWS, :WINDOW_TOKENS - 1]
    assert column(ll, "reference").tolist() == reference.ravel().tolist()

    html = (out / "report.html").read_text()
    assert 'id="genai"' in html and "Time to first token, CDF per task" in html
    assert "Tokens per second by prompt length" in html and 'id="genai-quality"' in html

    # A figure edited after the fact does not recompute from the raw per-token timestamps.
    tasks["chat-128"]["metrics"]["ttft_ms"]["p90"] *= 0.5
    problems = recompute(out, report)
    assert any("chat-128: metric ttft_ms.p90 does not recompute" in p for p in problems), problems
