"""How report.html shows report.json's values to a reader: nested values as tables, yes/no, numbers rounded with
their units, and the one sentence that says what a verdict rests on. No Python repr ever reaches the page."""

from __future__ import annotations

import math
from typing import Any

from markupsafe import Markup, escape

# Unit by the key's suffix, as the agent and the lab name their fields.
_SUFFIX_UNITS = (("_mhz", "MHz"), ("_ms", "ms"), ("_us", "µs"), ("_ns", "ns"), ("_mb", "MB"), ("_w", "W"),
                 ("_hz", "Hz"), ("_c", "°C"), ("_j", "J"), ("_qps", "queries/s"), ("_per_s", "/s"),
                 ("_seconds", "s"), ("_s", "s"))
_SHARES = ("_share", "_spread", "max_spread", "_rate")
_ORDER = {"before": 0, "after": 1}  # snapshot columns in time order (report.json's keys are sorted by name)


def number(v: float | int) -> str:
    """A number as a reader wants it: integers with separators, others to about four significant digits."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 1:
        return f"{v:.4g}"
    return f"{v:.3g}"


def _fixed(v: Any, digits: int, unit: str) -> str:
    return f"{v:.{digits}f} {unit}" if isinstance(v, int | float) and not isinstance(v, bool) else "—"


def cold_start(task: dict[str, Any]) -> str:
    """The task's cold start and warm-up in its scenario's terms. The single-inference scenarios warm up until the
    rolling median latency settles (or its time limit passes); a generative task warms up with a fixed count of
    untimed requests, each a whole prompt and its new tokens, and has no settling test to pass or fail."""
    p = task.get("phases") or {}
    generative = task.get("scenario") == "generative"
    first = "first token (one prompt's prefill)" if generative else "first inference"
    out = (f"Cold start: session {_fixed(p.get('session_create_ms'), 1, 'ms')}, {first} "
           f"{_fixed(p.get('first_inference_ms'), 2, 'ms')}, RSS growth {_fixed(p.get('peak_rss_growth_mb'), 1, 'MB')}")
    w = p.get("warmup")
    if not isinstance(w, dict):
        return out
    n = int(w.get("queries") or 0)
    if generative:
        tokens = (task.get("settings") or {}).get("max_new_tokens")
        each = f"a prompt and {tokens} new tokens each" if tokens else "a prompt and its new tokens each"
        return (f"{out}; warm-up {_count(n, 'untimed request', 'untimed requests')} ({each}) in "
                f"{_fixed(w.get('ms'), 0, 'ms')}, the fixed count assigned (decode warm-up has no settling test)")
    state = "settled" if w.get("settled") else "not settled within its time limit"
    return f"{out}; warm-up {_count(n, 'query', 'queries')} in {_fixed(w.get('ms'), 0, 'ms')} (median latency {state})"


def unit(key: str) -> str:
    k = key.lower()
    return next((u for suffix, u in _SUFFIX_UNITS if k.endswith(suffix)), "")


def scalar(key: str, v: Any) -> str:
    """One value as text: yes/no, a number with the unit its key names, or the string itself."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        k = key.lower()
        if k.endswith("_bytes"):
            return f"{v / 2**30:.1f} GiB" if v >= 2**30 else f"{v / 2**20:.1f} MiB"
        if any(k.endswith(s) for s in _SHARES) and 0 <= v <= 1 and isinstance(v, float):
            return f"{v * 100:.3g}%"
        u = unit(key)
        return f"{number(v)} {u}" if u else number(v)
    return str(v)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


def value_html(key: str, v: Any) -> Markup:
    """A value of any shape as HTML: scalars as text, lists of scalars comma-separated, mappings as a key/value
    table and lists of mappings as a table with a column per key (nested as deep as the value is)."""
    if _is_scalar(v):
        return escape(scalar(key, v))
    if isinstance(v, dict):
        if not v:
            return Markup('<span class="muted">none</span>')
        rows = "".join(f"<tr><th>{escape(k)}</th><td>{value_html(k, x)}</td></tr>" for k, x in sorted(v.items()))
        return Markup(f'<table class="kv nested">{rows}</table>')
    if isinstance(v, list | tuple):
        if not v:
            return Markup('<span class="muted">none</span>')
        if all(_is_scalar(x) for x in v):
            return escape(", ".join(scalar(key, x) for x in v))
        if all(isinstance(x, dict) for x in v):
            cols = sorted({k for x in v for k in x})
            head = "".join(f"<th>{escape(c)}</th>" for c in cols)
            body = "".join("<tr>" + "".join(f"<td>{value_html(c, x.get(c))}</td>" for c in cols) + "</tr>"
                           for x in v)
            return Markup(f'<table class="grid nested"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
        return Markup("<br>").join(value_html(key, x) for x in v)
    return escape(str(v))


def columns(env: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[Any]]]]:
    """A mapping of snapshots ({"before": {...}, "after": {...}}) as side-by-side columns: (column names, rows of
    (field, value per column)); any other mapping as one column of values."""
    if env and all(isinstance(v, dict) for v in env.values()):
        names = sorted(env, key=lambda n: (_ORDER.get(n, len(_ORDER)), n))
        fields = sorted({k for v in env.values() for k in v})
        return names, [(f, [env[n].get(f) for n in names]) for f in fields]
    return ["value"], [(k, [v]) for k, v in sorted(env.items())]


def _name(c: dict[str, Any]) -> str:
    return str(c.get("id") or c.get("metric"))


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def deciding(criteria: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in criteria if c.get("required", True)]


def grade_only(criteria: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in criteria if not c.get("required", True)]


def _grade_clause(extra: list[dict[str, Any]]) -> str:
    if not extra:
        return ""
    failed = sum(c.get("verdict") != "pass" for c in extra)
    return (f"; {_count(len(extra), 'grade-only criterion does', 'grade-only criteria do')} not affect it "
            f"({len(extra) - failed} pass, {failed} fail)")


def task_basis(task: dict[str, Any]) -> str:
    """One sentence: the task's verdict and what it rests on."""
    criteria = task.get("criteria") or []
    verdict, status = task.get("verdict"), task.get("status", "")
    if status != "completed" or not verdict:
        reason = f" ({task['reason']})" if task.get("reason") else ""
        return f"{status.upper() or 'NO VERDICT'}: the task did not complete{reason}, so no criterion was evaluated."
    decide, extra = deciding(criteria), grade_only(criteria)
    failed = [c for c in decide if c.get("verdict") != "pass"]
    if not decide:
        head = f"{verdict.upper()}: no criterion decides this task's verdict"
    elif not failed:
        head = (f"{verdict.upper()}: the one criterion that decides the verdict passes" if len(decide) == 1 else
                f"{verdict.upper()}: all {len(decide)} criteria that decide the verdict pass")
    else:
        head = (f"{verdict.upper()}: {len(failed)} of {_count(len(decide), 'criterion', 'criteria')} that decide "
                f"the verdict {'fails' if len(failed) == 1 else 'fail'} ({', '.join(_name(c) for c in failed)})")
    return head + _grade_clause(extra) + "."


def run_basis(report: dict[str, Any]) -> str:
    """One sentence: the run's verdict and what it rests on (every task passes on the criteria that decide its
    verdict)."""
    run, tasks = report["run"], report.get("tasks") or []
    if run.get("status") != "completed" or not run.get("verdict"):
        reason = f" ({run['reason']})" if run.get("reason") else ""
        return f"{str(run.get('status', '')).upper()}: the run did not complete{reason}, so it has no verdict."
    criteria = [(t["name"], c) for t in tasks for c in t.get("criteria") or []]
    decide = [(n, c) for n, c in criteria if c.get("required", True)]
    extra = [c for _, c in criteria if not c.get("required", True)]
    failed = [f"{_name(c)} in {n}" if len(tasks) > 1 else _name(c) for n, c in decide if c.get("verdict") != "pass"]
    in_tasks = f" ({_count(len(tasks), 'task', 'tasks')})"
    if run["verdict"] == "pass":
        head = ("PASS: the one criterion that decides the verdict passes" if len(decide) == 1 else
                f"PASS: all {len(decide)} criteria that decide the verdict pass") + in_tasks
    elif failed:
        head = (f"FAIL: {len(failed)} of {_count(len(decide), 'criterion', 'criteria')} that decide the verdict "
                f"{'fails' if len(failed) == 1 else 'fail'} ({', '.join(failed)})")
    else:
        losers = [t["name"] for t in tasks if t.get("verdict") != "pass"]
        head = f"FAIL: {_count(len(losers), 'task fails', 'tasks fail')} ({', '.join(losers)})"
    return head + _grade_clause(extra) + "."
