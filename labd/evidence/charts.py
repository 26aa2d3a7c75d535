"""Inline SVG charts for the self-contained HTML report (no scripts, no network)."""

from __future__ import annotations

import numpy as np

W, H, PAD = 560, 260, 48


def latency_cdf_svg(latency_ns: np.ndarray, marks: dict[str, float]) -> str:
    """Empirical CDF of per-query latency (ms) with the reported percentiles marked."""
    if latency_ns.size == 0:
        return ""
    ms = np.sort(latency_ns.astype(np.float64)) / 1e6
    n = ms.size
    # The axis ends at the 99.5th percentile so the body of the distribution stays readable; the tail past it
    # is drawn at the right edge.
    lo, hi = float(ms[0]), float(ms[min(n - 1, max(0, int(np.ceil(0.995 * n)) - 1))])
    if hi <= lo:
        hi = lo + 1e-3
    step = max(1, n // 400)
    idx = np.unique(np.r_[np.arange(0, n, step), n - 1])

    def x(v: float) -> float:
        return PAD + (min(v, hi) - lo) / (hi - lo) * (W - 2 * PAD)

    def y(p: float) -> float:
        return H - PAD + -p * (H - 2 * PAD)

    pts = " ".join(f"{x(float(ms[i])):.1f},{y((i + 1) / n):.1f}" for i in idx)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" class="chart" role="img" '
             f'aria-label="Latency CDF">',
             f'<rect x="{PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" fill="#fafafa" '
             'stroke="#ccc"/>']
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        v = lo + frac * (hi - lo)
        parts.append(f'<text x="{x(v):.1f}" y="{H - PAD + 16}" font-size="11" text-anchor="middle">{v:.3f}</text>')
        parts.append(f'<text x="{PAD - 6}" y="{y(frac) + 4:.1f}" font-size="11" text-anchor="end">{frac:.2f}</text>')
    parts.append(f'<polyline points="{pts}" fill="none" stroke="#1f6feb" stroke-width="2"/>')
    for label, v in marks.items():
        parts.append(f'<line x1="{x(v):.1f}" y1="{PAD}" x2="{x(v):.1f}" y2="{H - PAD}" stroke="#d1242f" '
                     'stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{x(v) + 3:.1f}" y="{PAD + 12}" font-size="11" fill="#d1242f">{label}</text>')
    parts.append(f'<text x="{W / 2}" y="{H - 8}" font-size="12" text-anchor="middle">latency (ms)</text>')
    parts.append(f'<text x="14" y="{H / 2}" font-size="12" transform="rotate(-90 14 {H / 2})" '
                 'text-anchor="middle">fraction of queries</text>')
    parts.append("</svg>")
    return "".join(parts)


def power_trace_svg(t_ns: np.ndarray, values: np.ndarray, quantity: str, window: tuple[int, int] | None) -> str:
    """Power over time (W) during the performance phase; an energy counter is shown as its derivative."""
    if t_ns.size < 2:
        return ""
    t = (t_ns - t_ns[0]).astype(np.float64) / 1e9
    v = values.astype(np.float64)
    if quantity == "energy":
        dt = np.diff(t)
        v = np.divide(np.diff(v), dt, out=np.zeros_like(dt), where=dt > 0)
        t = t[1:]
    lo_v, hi_v = 0.0, float(v.max()) * 1.15 or 1.0
    t_max = float(t[-1]) or 1.0

    def x(s: float) -> float:
        return PAD + s / t_max * (W - 2 * PAD)

    def y(w: float) -> float:
        return H - PAD - (w - lo_v) / (hi_v - lo_v) * (H - 2 * PAD)

    pts = " ".join(f"{x(float(a)):.1f},{y(float(b)):.1f}" for a, b in zip(t, v, strict=True))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" class="chart" role="img" '
             'aria-label="Power trace">',
             f'<rect x="{PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" fill="#fafafa" stroke="#ccc"/>']
    if window is not None:
        a, b = (window[0] - int(t_ns[0])) / 1e9, (window[1] - int(t_ns[0])) / 1e9
        parts.append(f'<rect x="{x(a):.1f}" y="{PAD}" width="{max(1.0, x(b) - x(a)):.1f}" height="{H - 2 * PAD}" '
                     'fill="#ddf4ff"/>')
    for frac in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{x(frac * t_max):.1f}" y="{H - PAD + 16}" font-size="11" '
                     f'text-anchor="middle">{frac * t_max:.1f}</text>')
        parts.append(f'<text x="{PAD - 6}" y="{y(frac * hi_v) + 4:.1f}" font-size="11" '
                     f'text-anchor="end">{frac * hi_v:.1f}</text>')
    parts.append(f'<polyline points="{pts}" fill="none" stroke="#bf3989" stroke-width="2"/>')
    parts.append(f'<text x="{W / 2}" y="{H - 8}" font-size="12" text-anchor="middle">time (s); shaded: '
                 'performance window</text>')
    parts.append(f'<text x="14" y="{H / 2}" font-size="12" transform="rotate(-90 14 {H / 2})" '
                 'text-anchor="middle">power (W)</text></svg>')
    return "".join(parts)


def throughput_bars_svg(by_batch: list[dict[str, float]]) -> str:
    """Samples per second for each batch size of an offline sweep."""
    if not by_batch:
        return ""
    top = max(float(b["throughput_per_s"]) for b in by_batch) * 1.15 or 1.0
    slot = (W - 2 * PAD) / len(by_batch)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" class="chart" role="img" '
             'aria-label="Throughput per batch size">',
             f'<rect x="{PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" fill="#fafafa" stroke="#ccc"/>']
    for i, b in enumerate(by_batch):
        v = float(b["throughput_per_s"])
        h = v / top * (H - 2 * PAD)
        x = PAD + i * slot + slot * 0.2
        parts.append(f'<rect x="{x:.1f}" y="{H - PAD - h:.1f}" width="{slot * 0.6:.1f}" height="{h:.1f}" '
                     'fill="#1a7f37"/>')
        parts.append(f'<text x="{x + slot * 0.3:.1f}" y="{H - PAD - h - 4:.1f}" font-size="11" '
                     f'text-anchor="middle">{v:,.0f}</text>')
        parts.append(f'<text x="{x + slot * 0.3:.1f}" y="{H - PAD + 16}" font-size="11" '
                     f'text-anchor="middle">{int(b["batch"])}</text>')
    parts.append(f'<text x="{W / 2}" y="{H - 8}" font-size="12" text-anchor="middle">batch size</text>')
    parts.append(f'<text x="14" y="{H / 2}" font-size="12" transform="rotate(-90 14 {H / 2})" '
                 'text-anchor="middle">samples / s</text></svg>')
    return "".join(parts)
