"""Generative metrics from raw per-token timestamps, computed alike by the lab and `labctl report verify`.

Per request q of a timed run (pilotlab.genai's `latency` and `token` sets): TTFT = first token's time - issue time
(prefill and the first argmax); TPOT = the gaps between its later tokens; decode tokens/s = (n - 1) / (last - first
token's time), the first token excluded as MLPerf Client does; prefill tokens/s = prompt tokens / TTFT. The timing
figures come from the graded repeat (the median repeat by end-to-end p50, as latency_ms); conformance pools every
repeat's tokens, compared with the golden decode the lab joins to them from its own copy of the suite's artifact
(with_reference); perplexity comes from the first repeat's scored windows, its ratio against the golden's
log-likelihoods the lab joins to them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pilotlab.figures import PERCENTILE_METHOD, PERCENTILES
from pilotlab.genai import LL_KIND, REFERENCE_NONE, TOKEN_KIND
from pilotlab.stats import nearest_rank

Arrays = Mapping[str, np.ndarray]
REFERENCE_COLUMN = "label"  # the lab's golden token of a token row; the report bundle's samples column of that name
LL_REFERENCE_COLUMN = "reference"  # the lab's golden log-likelihood of a log-likelihood row (float; NaN: none)


def distribution_ms(values_ns: np.ndarray) -> dict[str, Any]:
    """Percentiles (nearest rank), mean, min, max and n of durations given in ns, in ms."""
    ms = np.sort(np.asarray(values_ns, dtype=np.float64)) / 1e6
    if ms.size == 0:
        return {"n": 0, "method": PERCENTILE_METHOD}
    out: dict[str, Any] = {f"p{p}": nearest_rank(ms, p) for p in PERCENTILES}
    out.update({"mean": float(ms.mean()), "min": float(ms[0]), "max": float(ms[-1]), "n": int(ms.size),
                "method": PERCENTILE_METHOD})
    return out


class Requests:
    """One timed run's requests with their tokens, checked: `problems` says what is malformed (then nothing else
    is set)."""

    def __init__(self, latency: Arrays, tokens: Arrays | None, max_new_tokens: int) -> None:
        self.problems: list[str] = []
        q = np.asarray(latency["index"], dtype=np.int64)
        order = np.argsort(q, kind="stable")
        self.q, self.issue = q[order], np.asarray(latency["t_ns"], dtype=np.int64)[order]
        self.e2e = np.asarray(latency["value"], dtype=np.int64)[order]
        self.prompt_tokens = np.asarray(latency["aux"], dtype=np.int64)[order]
        if tokens is None or not np.asarray(tokens["index"]).size:
            self.problems.append("no token samples")
            return
        tq = np.asarray(tokens["index"], dtype=np.int64)
        t = np.asarray(tokens["t_ns"], dtype=np.int64)
        if np.unique(self.q).size != self.q.size:
            self.problems.append("a request index occurs twice")
            return
        if tq.size > 1 and np.any(np.diff(tq) < 0):
            self.problems.append("the tokens of a request are not contiguous and in request order")
            return
        ids, first, counts = np.unique(tq, return_index=True, return_counts=True)
        if ids.size != self.q.size or np.any(ids != self.q):
            self.problems.append(f"tokens belong to {ids.size} requests, the run issued {self.q.size}")
            return
        if np.any(counts != max_new_tokens):
            bad = int(np.flatnonzero(counts != max_new_tokens)[0])
            self.problems.append(f"request {int(ids[bad])} has {int(counts[bad])} tokens, not max_new_tokens "
                                 f"{max_new_tokens}")
            return
        last = first + counts - 1
        steps = np.diff(t)
        inside = np.ones(steps.size, dtype=bool)
        inside[last[:-1]] = False  # a gap from one request's last token to the next request's first is no step
        if np.any(t[first] < self.issue) or np.any(steps[inside] < 0):
            self.problems.append("token times run backwards (before their request's issue, or decreasing)")
            return
        if np.any(t[last] - self.issue != self.e2e):
            self.problems.append("a request's end-to-end latency is not its last token's time minus its issue")
            return
        self.first, self.last, self.counts = t[first], t[last], counts
        self.ttft = self.first - self.issue
        self.tpot = steps[inside]

    @property
    def ok(self) -> bool:
        return not self.problems

    def decode_rate(self, mask: np.ndarray | None = None) -> float | None:
        """Tokens after the first per second of decoding (first excluded); None without any such token."""
        m = slice(None) if mask is None else mask
        span = float((self.last[m] - self.first[m]).sum())
        return float((self.counts[m] - 1).sum()) / (span / 1e9) if span > 0 else None

    def prefill_rate(self, mask: np.ndarray | None = None) -> float | None:
        m = slice(None) if mask is None else mask
        span = float(self.ttft[m].sum())
        return float(self.prompt_tokens[m].sum()) / (span / 1e9) if span > 0 else None

    def figures(self) -> dict[str, Any]:
        """ttft_ms, tpot_ms, the decode and prefill rates, and the same per prompt length."""
        by_length = []
        for length in np.unique(self.prompt_tokens).tolist():
            m = self.prompt_tokens == length
            by_length.append({"prompt_tokens": int(length), "prompts": int(m.sum()),
                              "ttft_p50_ms": nearest_rank(np.sort(self.ttft[m].astype(np.float64)) / 1e6, 50),
                              "decode_tokens_per_s": self.decode_rate(m), "prefill_tokens_per_s": self.prefill_rate(m)})
        return {"ttft_ms": distribution_ms(self.ttft), "tpot_ms": distribution_ms(self.tpot),
                "decode_tokens_per_s": self.decode_rate(), "prefill_tokens_per_s": self.prefill_rate(),
                "by_prompt_length": by_length}


def _token_sets(samples: Mapping[str, Arrays]) -> dict[int, Arrays]:
    out = {}
    for kind, arrs in samples.items():
        base, *params = kind.split(";")
        if base == TOKEN_KIND:
            opts = dict(p.split("=", 1) for p in params if "=" in p)
            out[int(opts.get("repeat", 0))] = arrs
    return out


def reference_tokens(index: np.ndarray, sample_index: np.ndarray, generated_ids: np.ndarray | None) -> np.ndarray:
    """The lab's golden decode for each token row: generated_ids[row's dataset row, row's position within its
    request (its tokens counted in order)], REFERENCE_NONE where the golden has no such token."""
    q = np.asarray(index, dtype=np.int64)
    rows = np.asarray(sample_index, dtype=np.int64)
    ref = np.full(q.size, REFERENCE_NONE, dtype=np.int64)
    g = None if generated_ids is None else np.asarray(generated_ids)
    if g is None or g.ndim != 2 or q.size == 0 or rows.size != q.size:
        return ref
    order = np.argsort(q, kind="stable")
    new = np.ones(q.size, dtype=bool)
    new[1:] = q[order][1:] != q[order][:-1]
    position = np.empty(q.size, dtype=np.int64)
    position[order] = np.arange(q.size) - np.flatnonzero(new)[np.cumsum(new) - 1]
    have = (rows >= 0) & (rows < g.shape[0]) & (position < g.shape[1])
    ref[have] = g[rows[have], position[have]]
    return ref


def reference_log_likelihoods(sample_index: np.ndarray, position: np.ndarray,
                              log_likelihoods: np.ndarray | None) -> np.ndarray:
    """The lab's golden log-likelihood for each log-likelihood row: log_likelihoods[row's window, row's position t
    - 1] (t is 1-based: the predicted token's place in the window), NaN where the golden has no such value."""
    w = np.asarray(sample_index, dtype=np.int64)
    t = np.asarray(position, dtype=np.int64)
    ref = np.full(w.size, np.nan, dtype=np.float64)
    g = None if log_likelihoods is None else np.asarray(log_likelihoods, dtype=np.float64)
    if g is None or g.ndim != 2 or w.size == 0 or t.size != w.size:
        return ref
    have = (w >= 0) & (w < g.shape[0]) & (t >= 1) & (t <= g.shape[1])
    ref[have] = g[w[have], t[have] - 1]
    return ref


def with_reference(samples: Mapping[str, Arrays], generated_ids: np.ndarray | None,
                   log_likelihoods: np.ndarray | None = None) -> dict[str, dict[str, np.ndarray]]:
    """samples with the lab's golden joined to them: its decode to every token set as the `label` column
    (reference_tokens), its log-likelihoods to the log-likelihood set as the float `reference` column
    (reference_log_likelihoods). The device's own columns are left as they came (the arrays themselves, not copies).
    What conformance and perplexity's ratio are computed against: the lab's copy of the suite's golden artifact,
    never a reference the device sent."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for kind, arrs in samples.items():
        out[kind] = dict(arrs)
        base = kind.split(";")[0]
        if base == TOKEN_KIND:
            out[kind][REFERENCE_COLUMN] = reference_tokens(arrs["index"], arrs["sample_index"], generated_ids)
        elif base == LL_KIND:
            out[kind][LL_REFERENCE_COLUMN] = reference_log_likelihoods(arrs["sample_index"], arrs["value"],
                                                                       log_likelihoods)
    return out


def _conformance(token_sets: dict[int, Arrays]) -> dict[str, Any] | None:
    """Greedy-decode conformance over every repeat: the share of generated tokens equal to the golden decode, as the
    lab joined it to the tokens (with_reference; the report bundle's `label` column)."""
    n = matching = requests = identical = 0
    for arrs in token_sets.values():
        if REFERENCE_COLUMN not in arrs:
            continue
        ref = np.asarray(arrs[REFERENCE_COLUMN], dtype=np.int64)
        has = ref != REFERENCE_NONE
        if not has.any():
            continue
        same = np.asarray(arrs["value"], dtype=np.int64) == ref
        n += int(has.sum())
        matching += int((same & has).sum())
        q = np.asarray(arrs["index"], dtype=np.int64)[has]
        ids, inverse = np.unique(q, return_inverse=True)
        wrong = np.bincount(inverse, weights=(~same[has]).astype(np.float64), minlength=ids.size)
        requests += int(ids.size)
        identical += int(np.count_nonzero(wrong == 0))
    if n == 0:
        return None
    return {"token_agreement": matching / n, "n": n, "matching": matching, "requests": requests,
            "identical_requests": identical}


def _perplexity(samples: Mapping[str, Arrays], windows: int) -> tuple[dict[str, Any] | None, list[str]]:
    """Perplexity of the device's log-likelihoods, and its ratio to the golden's perplexity over the same positions,
    as the lab joined them (with_reference; the report bundle's `reference` column), never a reference the device
    sent."""
    dev = samples.get(LL_KIND)
    if dev is None or not np.asarray(dev["index"]).size:
        return None, []  # compliance names the missing set
    ll = np.asarray(dev["fvalue"], dtype=np.float64)
    rl = np.asarray(dev[LL_REFERENCE_COLUMN], dtype=np.float64) if LL_REFERENCE_COLUMN in dev \
        else np.full(ll.size, np.nan)
    if not (np.all(np.isfinite(ll)) and np.all(ll <= 0)):
        return None, ["perplexity: a log-likelihood is not a finite number <= 0"]
    w, t = np.asarray(dev["sample_index"], dtype=np.int64), np.asarray(dev["value"], dtype=np.int64)
    if np.unique(np.stack([w, t]), axis=1).shape[1] != ll.size:
        return None, ["perplexity: a window's position is scored more than once"]
    if rl.size != ll.size or not np.all(np.isfinite(rl)):
        missing = int(np.count_nonzero(~np.isfinite(rl))) if rl.size == ll.size else ll.size
        return None, [f"perplexity: the golden has no reference log-likelihood for {missing} of the {ll.size} scored "
                      "positions (window and position outside its log_likelihoods)"]
    scored = int(np.unique(np.asarray(dev["sample_index"])).size)
    value, reference = float(np.exp(-ll.mean())), float(np.exp(-rl.mean()))
    out = {"value": value, "reference": reference, "ratio": value / reference, "n": int(ll.size),
           "windows": scored, "max_abs_diff": float(np.abs(ll - rl).max())}
    reasons = [f"perplexity: {scored} windows scored, fewer than perplexity_windows {windows}"] \
        if scored < windows else []
    return out, reasons


def generative_metrics(settings: Mapping[str, Any], samples: Mapping[str, Arrays],
                       latency: Mapping[int, Arrays], executor: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(metrics, validity reasons) of a generative attempt. `latency` holds each repeat's latency set by repeat;
    `executor` is what the device observed of its executor processes (peak RSS, session creation per repeat)."""
    out: dict[str, Any] = {}
    reasons: list[str] = []
    max_new = int(settings.get("max_new_tokens", 0))
    tokens = _token_sets(samples)
    runs = {}
    for r, lat in sorted(latency.items()):
        req = Requests(lat, tokens.get(r), max_new)
        if req.ok:
            runs[r] = req
        elif tokens.get(r) is not None:
            where = f"repeat {r}: " if len(latency) > 1 else ""
            reasons += [f"{where}token samples: {p}" for p in req.problems]
    if runs and len(runs) == len(latency):
        p50 = {r: nearest_rank(np.sort(req.e2e.astype(np.float64)) / 1e6, 50) for r, req in runs.items()}
        graded = sorted(runs, key=lambda r: p50[r])[len(runs) // 2]  # the median repeat, as latency_ms's
        figs = runs[graded].figures()
        by_length = figs.pop("by_prompt_length")
        out.update(figs)
        out["generative"] = {"max_new_tokens": max_new, "repeat": graded, "prompts": int(runs[graded].q.size),
                             "output_tokens": int(runs[graded].counts.sum()), "by_prompt_length": by_length}
        if len(runs) > 1:
            per = [runs[r].figures() for r in sorted(runs)]
            out["generative"]["repeats"] = {
                "ttft_p50_ms": [f["ttft_ms"]["p50"] for f in per], "tpot_p50_ms": [f["tpot_ms"].get("p50")
                                                                                   for f in per],
                "decode_tokens_per_s": [f["decode_tokens_per_s"] for f in per]}
    conf = _conformance(tokens)
    if conf is not None:
        out["conformance"] = conf
    windows = int(settings.get("perplexity_windows", 0))
    if windows:
        ppl, ppl_reasons = _perplexity(samples, windows)
        reasons += ppl_reasons
        if ppl is not None:
            out["perplexity"] = ppl
    rss = [float(x) for x in executor.get("peak_rss_mb") or [] if x is not None]
    if rss:
        out["peak_rss_mb"] = max(rss)
    load = [float(x) for x in executor.get("session_create_ms") or [] if x is not None]
    if load:
        out["model_load_ms"] = max(load)
    return out, reasons
