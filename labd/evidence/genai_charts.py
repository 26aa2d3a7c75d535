"""The generative section of report.html: per task the time to first token and time per output token figures, their
distributions (CDF, one line per task) and tokens per second by prompt length, as inline SVG from the bundle's raw
samples and report.json's figures (no scripts, no network). Only reports with generative tasks have the section."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from markupsafe import Markup, escape

from pilotlab.genai import TOKEN_KIND
from pilotlab.genai_metrics import Requests
from pilotlab.samples import column, read_samples_npy

W, H, PAD, LEGEND = 560, 280, 48, 130
TOP = 12  # a CDF's top margin: its title is the heading above it, so only the "1.00" tick needs room
COLOURS = ("#1f6feb", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e")


def _graded_run(task: Mapping[str, Any], files: Mapping[str, bytes]) -> Requests | None:
    """The requests of the repeat the task's figures come from, read from its raw latency and token files."""
    metrics = task.get("metrics") or {}
    g = metrics.get("generative") or {}
    samples = task.get("samples") or {}
    repeat = g.get("repeat")
    suffix = f";repeat={repeat}" if f"latency;repeat={repeat}" in samples else ""
    lat_path, tok_path = samples.get("latency" + suffix), samples.get(TOKEN_KIND + suffix)
    if repeat is None or lat_path is None or tok_path is None or lat_path not in files or tok_path not in files:
        return None
    cols = ("index", "sample_index", "t_ns", "value", "aux")
    lat, tok = read_samples_npy(files[lat_path]), read_samples_npy(files[tok_path])
    req = Requests({c: column(lat, c) for c in cols}, {c: column(tok, c) for c in cols}, int(g["max_new_tokens"]))
    return req if req.ok else None


def nice_step(top: float, ticks: int = 5) -> float:
    """A tick step of 1, 2 or 5 times a power of ten giving about `ticks` intervals up to top."""
    raw = top / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _rate(v: float) -> str:
    """As the tables beside the chart print it (decode to 0.1, prefill to 1 token/s)."""
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def cdf_svg(series: Mapping[str, np.ndarray], xlabel: str, label: str, ylabel: str = "fraction") -> Markup:
    """Empirical CDFs (durations in ns, drawn in ms), one line per series, with a legend; "" without data."""
    data = {k: np.sort(np.asarray(v, dtype=np.float64)) / 1e6 for k, v in series.items() if np.asarray(v).size}
    if not data:
        return Markup("")
    top = max(float(v[min(v.size - 1, int(np.ceil(0.995 * v.size)) - 1)]) for v in data.values()) or 1.0
    step = nice_step(top)
    hi = step * math.ceil(top * 1.02 / step)
    right = W - PAD - LEGEND

    def x(v: float) -> float:
        return PAD + min(v, hi) / hi * (right - PAD)

    def y(p: float) -> float:
        return H - PAD - p * (H - PAD - TOP)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" class="chart" role="img" '
             f'aria-label="{escape(label)}">',
             f'<rect x="{PAD}" y="{TOP}" width="{right - PAD}" height="{H - PAD - TOP}" fill="#fafafa" stroke="#ccc"/>']
    for k in range(round(hi / step) + 1):
        v = k * step
        parts.append(f'<text x="{x(v):.1f}" y="{H - PAD + 16}" font-size="11" text-anchor="middle">{v:g}</text>')
        parts.append(f'<line x1="{x(v):.1f}" y1="{TOP}" x2="{x(v):.1f}" y2="{H - PAD}" stroke="#eee"/>')
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{PAD - 6}" y="{y(frac) + 4:.1f}" font-size="11" text-anchor="end">{frac:.2f}</text>')
    for i, (name, ms) in enumerate(data.items()):
        colour = COLOURS[i % len(COLOURS)]
        n = ms.size
        # a step function: each value's rank before and after it
        pts = [f"{x(float(ms[0])):.1f},{y(0.0):.1f}"]
        for k in range(n):
            pts += [f"{x(float(ms[k])):.1f},{y(k / n):.1f}", f"{x(float(ms[k])):.1f},{y((k + 1) / n):.1f}"]
        parts.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{colour}" stroke-width="2"/>')
        ly = TOP + 14 + 18 * i
        parts.append(f'<line x1="{right + 10}" y1="{ly - 4}" x2="{right + 28}" y2="{ly - 4}" stroke="{colour}" '
                     'stroke-width="3"/>')
        parts.append(f'<text x="{right + 32}" y="{ly}" font-size="11">{escape(name)} (n={n})</text>')
    parts.append(f'<text x="{(PAD + right) / 2}" y="{H - 8}" font-size="12" text-anchor="middle">'
                 f'{escape(xlabel)}</text>')
    mid = (TOP + H - PAD) / 2
    parts.append(f'<text x="14" y="{mid}" font-size="12" transform="rotate(-90 14 {mid})" '
                 f'text-anchor="middle">{escape(ylabel)}</text></svg>')
    return Markup("".join(parts))


def rates_svg(rows: list[dict[str, Any]]) -> Markup:
    """Decode and prefill tokens per second by prompt length: two bar panels side by side; "" without data."""
    rows = [r for r in rows if r.get("decode_tokens_per_s") is not None or r.get("prefill_tokens_per_s") is not None]
    if not rows:
        return Markup("")
    half = W / 2
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" class="chart" role="img" '
             'aria-label="Tokens per second by prompt length">']
    for p, (key, title, colour) in enumerate((("decode_tokens_per_s", "decode tokens/s (first token excluded)",
                                               "#1a7f37"),
                                              ("prefill_tokens_per_s", "prefill tokens/s (prompt / TTFT)", "#1f6feb"))):
        left, width = p * half + PAD, half - PAD - 12
        top = max(float(r.get(key) or 0.0) for r in rows) * 1.18 or 1.0
        parts.append(f'<rect x="{left}" y="{PAD}" width="{width}" height="{H - 2 * PAD}" fill="#fafafa" '
                     'stroke="#ccc"/>')
        slot = width / len(rows)
        for i, r in enumerate(rows):
            v = float(r.get(key) or 0.0)
            h = v / top * (H - 2 * PAD)
            bx = left + i * slot + slot * 0.2
            parts.append(f'<rect x="{bx:.1f}" y="{H - PAD - h:.1f}" width="{slot * 0.6:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"/>')
            parts.append(f'<text x="{bx + slot * 0.3:.1f}" y="{H - PAD - h - 4:.1f}" font-size="11" '
                         f'text-anchor="middle">{_rate(v)}</text>')
            parts.append(f'<text x="{bx + slot * 0.3:.1f}" y="{H - PAD + 16}" font-size="11" '
                         f'text-anchor="middle">{int(r["prompt_tokens"])}</text>')
        parts.append(f'<text x="{left + width / 2:.1f}" y="{PAD - 10}" font-size="12" text-anchor="middle">'
                     f'{title}</text>')
        parts.append(f'<text x="{left + width / 2:.1f}" y="{H - 8}" font-size="12" text-anchor="middle">'
                     'prompt tokens</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def section(report: Mapping[str, Any], files: Mapping[str, bytes]) -> dict[str, Any] | None:
    """What templates/genai.html.j2 shows, or None when the report has no generative task."""
    tasks = [t for t in report.get("tasks", []) if t.get("scenario") == "generative"]
    if not tasks:
        return None
    rows, ttft, tpot, by_length = [], {}, {}, []
    for t in tasks:
        m = t.get("metrics") or {}
        g = m.get("generative") or {}
        lengths = [int(x["prompt_tokens"]) for x in g.get("by_prompt_length") or []]
        name = f"{t['name']}" + (f" ({lengths[0]} tokens)" if len(lengths) == 1 and str(lengths[0]) not in t["name"]
                                 else "")
        rows.append({"task": t["name"], "prompt_tokens": ", ".join(map(str, lengths)) or "—", "m": m,
                     "repeat": g.get("repeat"), "max_new_tokens": g.get("max_new_tokens"), "verdict": t.get("verdict"),
                     "settings": t.get("settings") or {}})
        req = _graded_run(t, files)
        if req is not None:
            ttft[name], tpot[name] = req.ttft, req.tpot
        by_length += [{**x, "task": t["name"]} for x in g.get("by_prompt_length") or []]
    by_length.sort(key=lambda r: (r["prompt_tokens"], r["task"]))
    return {"tasks": rows, "by_length": by_length,
            "ttft_svg": cdf_svg(ttft, "time to first token (ms)", "Time to first token, CDF per task",
                                "fraction of prompts"),
            "tpot_svg": cdf_svg(tpot, "time per output token after the first (ms)",
                                "Time per output token, CDF per task", "fraction of tokens"),
            "rates_svg": rates_svg(by_length)}
