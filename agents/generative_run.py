"""The executor's generative repeat: session and decoder, prompts preloaded, warm-up, the timed prompts (raw issue
and per-token times, generated ids), and in the first repeat the perplexity windows' log-likelihoods. The device
needs no golden: the lab joins its own copy of the reference decode and log-likelihoods to what it sends.

It follows agents/executor.py's run() step for step (progress, gates, windows, phases, the result document) for a
model that is a KV-cache decoder; the sample sets are those pilotlab.genai describes.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.executor import Channel, _rss_mb, _save
from pilotlab import genai

RawSet = tuple[str, dict[str, np.ndarray]]


def _npz(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _prompts(arrays: dict[str, np.ndarray], vocab: int) -> np.ndarray:
    from agents.backends.onnxruntime import Refusal

    ids = arrays.get(genai.INPUT_IDS)
    if ids is None or ids.ndim != 2 or ids.dtype != np.int64 or ids.shape[0] < 1 or ids.shape[1] < 1:
        have = ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in sorted(arrays.items())) or "none"
        raise Refusal(f"a generative dataset holds {genai.INPUT_IDS!r} int64 [prompts, length]; this one: {have}")
    if ids.min() < 0 or ids.max() >= vocab:
        raise Refusal(f"the dataset's token ids run from {ids.min()} to {ids.max()}, outside the model's vocabulary "
                      f"of {vocab}")
    return ids


def timed_sets(run: Any, suffix: str) -> list[RawSet]:
    """A PromptRun as the `latency` and `token` raw sets of pilotlab.genai: the generated ids only; the lab joins
    its own golden decode to them (the device echoes no reference)."""
    q, n = run.token_ids.shape
    index = np.arange(q, dtype=np.int64)
    latency = {"index": index, "sample_index": run.sample_index, "t_ns": run.t_issue_ns,
               "value": run.t_token_ns[:, -1] - run.t_issue_ns, "aux": run.prompt_tokens}
    tokens = {"index": np.repeat(index, n), "sample_index": np.repeat(run.sample_index, n),
              "t_ns": run.t_token_ns.ravel(), "value": run.token_ids.ravel()}
    return [("latency" + suffix, latency), (genai.TOKEN_KIND + suffix, tokens)]


def perplexity_sets(session: Any, ids: np.ndarray, windows: int, tokens: int) -> list[RawSet]:
    """The `log-likelihood` set: the model's log-likelihoods of the first `windows` rows (their first `tokens`,
    0 = all). Only what the device measured: the lab joins the golden's reference log-likelihoods itself."""
    from agents.backends.onnxruntime import Refusal
    from agents.harness.generative import score

    length = tokens or ids.shape[1]
    if windows > ids.shape[0] or length > ids.shape[1] or length < 2:
        raise Refusal(f"perplexity over {windows} windows of {length} tokens; the dataset has {ids.shape[0]} of "
                      f"{ids.shape[1]}")
    ll = np.stack([score(session, ids[w, :length]) for w in range(windows)])
    w_idx = np.repeat(np.arange(windows, dtype=np.int64), length - 1)
    pos = np.tile(np.arange(1, length, dtype=np.int64), windows)
    return [(genai.LL_KIND, {"index": np.arange(w_idx.size, dtype=np.int64), "sample_index": w_idx, "value": pos,
                             "aux": ids[:windows, 1:length].ravel().astype(np.int64), "fvalue": ll.ravel()})]


def run_generative(plan: dict[str, Any], ch: Channel) -> dict[str, Any]:
    """One repeat of a generative task as the plan says; returns the result document (sample sets saved beside)."""
    from agents.backends.onnxruntime import Refusal, open_session
    from agents.harness.generative import Decoder, run_prompts, warm_up

    out_dir = Path(plan["out_dir"])
    eff: dict[str, Any] = plan["settings"]
    repeat, first = int(plan["repeat"]), bool(plan["extras"])
    if eff.get("profile"):
        raise Refusal("the generative scenario records no operator profile; set profile = false")
    max_new = int(eff["max_new_tokens"])
    ch.progress("prepare")
    rss0 = _rss_mb()
    sess = open_session(Path(plan["model"]), plan["execution_provider"], eff)
    try:
        decoder = Decoder(sess.session)
    except genai.NotADecoder as e:
        raise Refusal(str(e)) from None
    ids = _prompts(_npz(plan["dataset"]), decoder.spec.vocab)
    prompts = [np.ascontiguousarray(ids[i:i + 1]) for i in range(ids.shape[0])]
    t0 = time.perf_counter()
    decoder.generate(prompts[0], 1)
    phases: dict[str, Any] = {"session_create_ms": sess.create_ms,
                              "first_inference_ms": (time.perf_counter() - t0) * 1000}
    if plan.get("idle_gate"):
        ch.gate("idle")
    ch.progress("warmup")
    phases["warmup"] = warm_up(decoder, prompts, int(eff["warmup_queries"]), max_new)
    ch.gate("performance")
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter_ns()
    run = run_prompts(decoder, prompts, max_new, int(eff["min_query_count"]),
                      max(int(eff["min_duration_ms"]), int(plan.get("min_window_ms", 0))), int(eff["max_query_count"]))
    end = time.perf_counter_ns()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    ch.emit("performance-done")
    suffix = f";repeat={repeat}" if int(eff["repeats"]) > 1 else ""
    sets = timed_sets(run, suffix)
    windows = [{"kind": "latency" + suffix, "start_ns": start, "end_ns": end}]
    cpu_s = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    phases["performance_s"] = (end - start) / 1e9
    phases["performance_cpu_s"] = cpu_s
    if first and int(eff.get("perplexity_windows", 0)):
        ch.progress("perplexity")
        t1 = time.perf_counter()
        sets += perplexity_sets(sess.session, ids, int(eff["perplexity_windows"]), int(eff.get("perplexity_tokens", 0)))
        phases["perplexity_s"] = time.perf_counter() - t1
    phases["peak_rss_growth_mb"] = max(0.0, _rss_mb() - rss0)
    return {"sets": _save(out_dir, sets), "windows": windows, "phases": phases,
            "session_options": dict(sess.options), "execution_provider": sess.provider,
            "providers_used": sess.providers_used, "peak_rss_mb": _rss_mb(),
            "affinity": sorted(os.sched_getaffinity(0)), "cpu_s": cpu_s}
