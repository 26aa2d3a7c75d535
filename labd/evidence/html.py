"""Renders report.html: verdict first, then per task its charts, figures, criteria and environment."""

from __future__ import annotations

from typing import Any

import jinja2

from labd.evidence import present
from labd.evidence.charts import latency_cdf_svg, power_trace_svg, throughput_bars_svg
from labd.evidence.genai_charts import section as genai_section
from labd.evidence.int8 import INT8_FLAGS, int8_relevant, x86_without_vnni
from pilotlab.samples import column, read_samples_npy

_env = jinja2.Environment(loader=jinja2.PackageLoader("labd.evidence", "templates"),
                          autoescape=jinja2.select_autoescape(["html", "j2"]), extensions=["jinja2.ext.do"])


def _fmt(v: Any, digits: int | None = None) -> str:
    """A figure: fixed decimals when asked, otherwise about four significant digits; never a Python repr."""
    if v is None or isinstance(v, jinja2.Undefined):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float) and digits is not None:  # an integral float reads back from report.json as an int
        return f"{v:.{digits}f}"
    if isinstance(v, int | float):
        return present.number(v)
    return str(v)


_env.filters["fmt"] = _fmt


def _relevant(settings: dict[str, Any]) -> list[tuple[str, Any]]:
    """Settings worth a reader's eye: unset scenario knobs (0, False, empty) are left out; report.json has all."""
    keep = {"seed", "intra_op_threads", "inter_op_threads"}
    return [(k, v) for k, v in sorted(settings.items())
            if k in keep or not (v in (0, 0.0, False, "", None) or v == {} or v == [])]


_env.filters["relevant"] = _relevant
_env.filters["int8_flags"] = int8_relevant
_env.tests["x86_without_vnni"] = x86_without_vnni
_env.globals["INT8_FLAGS"] = INT8_FLAGS


def _environment(env: dict[str, Any], device_flags: list[str]) -> dict[str, Any]:
    """The fingerprint with its CPU feature lists told against the device's (shown in full once, under Platform)."""
    out: dict[str, Any] = {}
    for k, v in env.items():
        if isinstance(v, dict) and isinstance(v.get("cpu_flags"), list):
            flags = v["cpu_flags"]
            added, lost = sorted(set(flags) - set(device_flags)), sorted(set(device_flags) - set(flags))
            told = f"{len(flags)} features, as enrolled" if not (added or lost) else (
                f"{len(flags)} features; vs enrolled: " + " ".join([f"+{f}" for f in added] + [f"-{f}" for f in lost]))
            v = {**v, "cpu_flags": told}
        out[k] = v
    return out


_env.filters["environment"] = _environment
_env.filters["value"] = lambda v, key="": present.value_html(key, v)
_env.filters["columns"] = present.columns
_env.filters["deciding"] = present.deciding
_env.filters["grade_only"] = present.grade_only
_env.filters["task_basis"] = present.task_basis
_env.filters["run_basis"] = present.run_basis
_env.filters["cold_start"] = present.cold_start


def _graded_repeat(task: dict[str, Any]) -> str:
    """The sample kind of the repeat the latency figures come from (the median repeat by p50)."""
    p50s = (task.get("metrics", {}).get("repeats") or {}).get("p50_ms") or []
    if not p50s or task.get("scenario") == "offline":
        return ""
    order = sorted(range(len(p50s)), key=lambda i: p50s[i])
    return f"latency;repeat={order[len(order) // 2]}"


def _pct(x: Any) -> str:
    return "—" if x is None or isinstance(x, jinja2.Undefined) else f"{float(x) * 100:.1f}%"


_env.filters["pct"] = _pct


def render_html(report: dict[str, Any], files: dict[str, bytes]) -> str:
    charts: dict[str, str] = {}
    for task in report["tasks"]:
        samples = task.get("samples", {})
        lat_path = samples.get("latency") or samples.get(_graded_repeat(task)) or next(
            (p for k, p in sorted(samples.items()) if k.startswith("latency")), None)
        lat = task.get("metrics", {}).get("latency_ms")
        if lat_path and lat and lat_path in files:
            latency_ns = column(read_samples_npy(files[lat_path]), "value")
            charts[task["id"]] = latency_cdf_svg(latency_ns, {f"p{p}": lat[f"p{p}"] for p in (50, 99)})
        offline = task.get("metrics", {}).get("offline")
        if offline:
            charts[task["id"] + ":batch"] = throughput_bars_svg(offline["by_batch"])
        power_path = samples.get("power;phase=perf")
        energy = (task.get("observations") or {}).get("energy") or {}
        if power_path and power_path in files:
            records = read_samples_npy(files[power_path])
            trace = {c: column(records, c) for c in ("t_ns", "fvalue")}
            window = _window(task, files)
            charts[task["id"] + ":power"] = power_trace_svg(trace["t_ns"], trace["fvalue"],
                                                            energy.get("quantity", "power"), window)
    return _env.get_template("report.html.j2").render(r=report, charts=charts, genai=genai_section(report, files))


def _window(task: dict[str, Any], files: dict[str, bytes]) -> tuple[int, int] | None:
    ends, starts = [], []
    for kind, path in task.get("samples", {}).items():
        if kind.startswith("latency") and path in files:
            a = read_samples_npy(files[path])
            if a.size:
                scheduled = task.get("scenario") in ("server", "periodic")
                t_ns = column(a, "t_ns")
                starts.append(int((column(a, "aux") if scheduled else t_ns).min()))
                ends.append(int((t_ns + column(a, "value")).max()))
    return (min(starts), max(ends)) if starts else None
