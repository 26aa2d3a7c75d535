#!/usr/bin/env python3
"""Per-query overhead of our single-stream harness, next to a plain loop and to MLCommons LoadGen.

For each model, in the same process and interleaved over several rounds:

  (a) plain   a bare ``perf_counter_ns`` loop around ``InferenceSession.run`` (same preloaded feeds, same order)
  (b) ours    ``agents.harness.single_stream.run_single_stream`` (no warm-up; min_query_count = N, min_duration 0)
  (c) LoadGen ``TestScenario.SingleStream``, PerformanceOnly, with a Python SUT and QSL; its latency figure is
              LoadGen's own ``result_50.00_percentile_latency_ns`` from ``mlperf_log_detail.txt`` (the number that
              ``mlperf_log_summary.txt`` prints as "50.00 percentile latency (ns)")

Per round we take each method's p50; the reported p50 is the median of the per-round p50s. Overhead is
p50(b) - p50(a) and p50(c) - p50(a). A second view, "loop cost", is the wall time per query (whole timed loop
divided by the query count; for LoadGen 1e9 / "QPS w/ loadgen overhead") minus the plain loop's: it counts the
bookkeeping a harness does outside the timed window as well.

    .venv/bin/python bench/harness_overhead.py            # full run, writes bench/results/
    .venv/bin/python bench/harness_overhead.py --quick --out /tmp/x
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agents.backends.onnxruntime import open_session, preload_feeds  # noqa: E402
from agents.harness.single_stream import SingleStreamSettings, run_single_stream  # noqa: E402

try:
    import mlperf_loadgen as lg
except ImportError:  # the bench still runs; column (c) says "not installed"
    lg = None

DIGITS_MODEL = REPO / "evalsuites" / "smoke" / "models" / "digits_logreg.onnx"
DIGITS_DATA = REPO / "evalsuites" / "smoke" / "data" / "digits_test.npz"
PPOCR_DET = "ch_PP-OCRv4_det_infer.onnx"
ORT_SETTINGS = {"intra_op_threads": 1}
METHODS = ("plain", "ours", "loadgen")

# Queries per method per round. The full profile keeps the whole run well under 3 minutes on 2 cores.
FULL: dict[str, Any] = {"rounds": 5,
                        "n": {"null": 50_000, "onnx_add": 20_000, "digits_logreg": 20_000, "ppocr_det": 300}}
QUICK: dict[str, Any] = {"rounds": 2, "n": {"null": 300, "onnx_add": 300, "digits_logreg": 300, "ppocr_det": 3}}
WARMUP = {"null": 1_000, "onnx_add": 500, "digits_logreg": 500, "ppocr_det": 5}


# ---------------------------------------------------------------------------------------------- models


@dataclass
class Case:
    key: str
    label: str
    feeds: list[Any]
    issue: Callable[[Any], object]  # what (b) and (c) call per query
    run: Callable[..., object] | None = None  # InferenceSession.run for (a); None: (a) calls issue(feed)
    output_names: list[str] | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _noop(feed: Any) -> None:
    return None


def _ort_case(key: str, label: str, model: Path, arrays: dict[str, np.ndarray], detail: dict[str, Any]) -> Case:
    sess = open_session(model, "CPUExecutionProvider", ORT_SETTINGS)
    feeds = preload_feeds(sess, arrays)
    detail = {**detail, "model": _rel(model), "session_options": sess.options,
              "inputs": {n: list(arrays[n].shape[1:]) for n in sess.input_names}}
    return Case(key, label, feeds, sess.runner(), sess.session.run, sess.output_names, detail)


def _one_op_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    b = helper.make_tensor("b", TensorProto.FLOAT, [1, 16], np.linspace(0, 1, 16, dtype=np.float32).tolist())
    graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["y"])], "one_add", [x], [y], [b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pilotlab-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _ppocr_det_path() -> Path | None:
    # find_spec only locates the package: importing it would need cv2, which the bench does not install
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        p = Path(root) / "models" / PPOCR_DET
        if p.is_file():
            return p
    return None


def build_cases(tmp: Path, seed: int) -> tuple[list[Case], dict[str, str]]:
    rng = np.random.default_rng(seed)
    cases = [Case("null", "null (no-op issue)", list(range(64)), _noop,
                  detail={"model": "none: issue is a no-op Python callable (harness-only overhead)"})]
    skipped: dict[str, str] = {}
    try:
        add = _one_op_model(tmp / "one_add.onnx")
        cases.append(_ort_case("onnx_add", "one-op Add [1,16]", add,
                               {"x": rng.standard_normal((64, 16), dtype=np.float32)},
                               {"built_with": "onnx.helper: y = x + b, opset 17"}))
    except ImportError:
        skipped["onnx_add"] = "onnx not installed"
    with np.load(DIGITS_DATA) as z:
        digits = np.ascontiguousarray(z["input"], dtype=np.float32)
    cases.append(_ort_case("digits_logreg", "digits_logreg [1,64]", DIGITS_MODEL, {"input": digits},
                           {"data": _rel(DIGITS_DATA), "samples": len(digits)}))
    det = _ppocr_det_path()
    if det is None:
        skipped["ppocr_det"] = "rapidocr-onnxruntime not installed"
    else:
        shape = (4, 3, 320, 320)
        x = rng.random(shape, dtype=np.float32)
        cases.append(_ort_case("ppocr_det", "PP-OCRv4 det 1x3x320x320", det, {"x": x},
                               {"package": f"rapidocr-onnxruntime {_version('rapidocr-onnxruntime')}",
                                "samples": shape[0], "input_fill": f"uniform[0,1) float32, seed {seed}"}))
    return cases, skipped


# --------------------------------------------------------------------------------------------- methods


def plain_run_loop(run: Callable[..., object], names: list[str], feeds: Sequence[Any], order: list[int]):
    """(a) for a session: nothing but the clock pair around session.run."""
    clock = time.perf_counter_ns
    lat = [0] * len(order)
    start = t1 = clock()
    for i, k in enumerate(order):
        feed = feeds[k]
        t0 = clock()
        run(names, feed)
        t1 = clock()
        lat[i] = t1 - t0
    return np.asarray(lat, dtype=np.int64), t1 - start


def plain_call_loop(fn: Callable[[Any], object], feeds: Sequence[Any], order: list[int]):
    """(a) for the null row: the clock pair around the no-op."""
    clock = time.perf_counter_ns
    lat = [0] * len(order)
    start = t1 = clock()
    for i, k in enumerate(order):
        feed = feeds[k]
        t0 = clock()
        fn(feed)
        t1 = clock()
        lat[i] = t1 - t0
    return np.asarray(lat, dtype=np.int64), t1 - start


def measure_plain(case: Case, n: int, seed: int) -> dict[str, float]:
    # the same sample order run_single_stream draws for this seed
    order = np.random.default_rng(seed).integers(0, len(case.feeds), size=n, dtype=np.int64).tolist()
    if case.run is not None:
        lat, dur = plain_run_loop(case.run, case.output_names or [], case.feeds, order)
    else:
        lat, dur = plain_call_loop(case.issue, case.feeds, order)
    return {"p50_ns": float(np.median(lat)), "cycle_ns": dur / len(lat), "queries": len(lat)}


def ours_settings(n: int, seed: int) -> SingleStreamSettings:
    return SingleStreamSettings(min_query_count=n, min_duration_ms=0, max_query_count=n, seed=seed)


def measure_ours(case: Case, n: int, seed: int) -> dict[str, float]:
    res = run_single_stream(case.issue, case.feeds, ours_settings(n, seed))
    q = len(res.latency_ns)
    return {"p50_ns": float(np.median(res.latency_ns)), "cycle_ns": res.duration_ns / q, "queries": q}


def _mllog(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(":::MLLOG "):
            try:
                rec = json.loads(line[len(":::MLLOG "):])
            except ValueError:
                continue
            out[rec.get("key")] = rec.get("value")
    return out


def _summary_value(text: str, label: str) -> float | None:
    m = re.search(re.escape(label) + r"\s*:\s*([0-9.eE+-]+)", text)
    return float(m.group(1)) if m else None


def measure_loadgen(case: Case, n: int, seed: int) -> dict[str, float]:
    assert lg is not None
    feeds, issue = case.feeds, case.issue
    complete, response = lg.QuerySamplesComplete, lg.QuerySampleResponse

    def issue_queries(query_samples):
        for qs in query_samples:
            issue(feeds[qs.index])
            complete([response(qs.id, 0, 0)])

    def flush_queries():
        pass

    def load(_samples):
        pass

    ts = lg.TestSettings()
    ts.scenario = lg.TestScenario.SingleStream
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_query_count = n
    ts.max_query_count = n
    ts.min_duration_ms = 1
    ts.performance_sample_count_override = len(feeds)
    ts.qsl_rng_seed = ts.sample_index_rng_seed = ts.schedule_rng_seed = seed
    with tempfile.TemporaryDirectory(prefix="lg-") as d:
        log = lg.LogSettings()
        log.log_output.outdir = d
        log.log_output.copy_summary_to_stdout = False
        log.log_output.copy_detail_to_stdout = False
        log.enable_trace = False
        sut = lg.ConstructSUT(issue_queries, flush_queries)
        qsl = lg.ConstructQSL(len(feeds), len(feeds), load, load)
        try:
            lg.StartTestWithLogSettings(sut, qsl, ts, log)
        finally:
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)
        detail = _mllog(Path(d) / "mlperf_log_detail.txt")
        summary = (Path(d) / "mlperf_log_summary.txt").read_text(errors="replace")
    p50 = detail.get("result_50.00_percentile_latency_ns")
    if p50 is None:
        p50 = _summary_value(summary, "50.00 percentile latency (ns)")
    qps = _summary_value(summary, "QPS w/ loadgen overhead") or detail.get("result_qps_with_loadgen_overhead")
    if p50 is None or not qps:
        raise RuntimeError("LoadGen wrote no 50th-percentile latency / QPS")
    queries = _summary_value(summary, "min_query_count")
    return {"p50_ns": float(p50), "cycle_ns": 1e9 / float(qps), "queries": int(queries or n)}


MEASURE = {"plain": measure_plain, "ours": measure_ours, "loadgen": measure_loadgen}


# ----------------------------------------------------------------------------------------------- runner


def warm(case: Case, count: int) -> None:
    for i in range(count):
        case.issue(case.feeds[i % len(case.feeds)])


def bench_case(case: Case, n: int, rounds: int, seed: int, methods: tuple[str, ...]) -> dict[str, Any]:
    warm(case, WARMUP.get(case.key, 100))
    per_round: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    for r in range(rounds):
        rot = methods[r % len(methods):] + methods[:r % len(methods)]  # rotate the order every round
        for m in rot:
            gc.collect()
            per_round[m].append(MEASURE[m](case, n, seed + r))
    return per_round


def _med(xs: list[float]) -> float:
    return float(statistics.median(xs))


def summarise(case: Case, n: int, rounds: int, per_round: dict[str, list[dict[str, float]]],
              loadgen_state: str) -> dict[str, Any]:
    p50 = {m: (_med([x["p50_ns"] for x in v]) if v else None) for m, v in per_round.items()}
    cyc = {m: (_med([x["cycle_ns"] for x in v]) if v else None) for m, v in per_round.items()}
    for m in METHODS:
        p50.setdefault(m, None)
        cyc.setdefault(m, None)
    a, a_cyc = p50["plain"], cyc["plain"]
    plain_rounds = [x["p50_ns"] for x in per_round["plain"]]

    def over(d: dict[str, float | None], m: str, base: float | None) -> float | None:
        v = d[m]
        return None if v is None or base is None else round((v - base) / 1000, 4)

    def ratio(m: str) -> float | None:
        v = p50[m]
        return None if v is None or not a else round(v / a, 4)

    def paired(m: str) -> float | None:
        if not per_round.get(m):
            return None
        deltas = [b["p50_ns"] - p["p50_ns"] for b, p in zip(per_round[m], per_round["plain"], strict=True)]
        return round(_med(deltas) / 1000, 4)

    return {
        "key": case.key, "label": case.label, "status": "ok", "queries_per_round": n, "rounds": rounds,
        "loadgen": loadgen_state, "detail": case.detail,
        "p50_ns": {m: (None if v is None else round(v, 1)) for m, v in p50.items()},
        "overhead_us": {"ours": over(p50, "ours", a), "loadgen": over(p50, "loadgen", a)},
        "overhead_paired_us": {"ours": paired("ours"), "loadgen": paired("loadgen")},
        "ratio": {m: ratio(m) for m in ("ours", "loadgen")},
        "cycle_ns": {m: (None if v is None else round(v, 1)) for m, v in cyc.items()},
        "loop_cost_us": {"ours": over(cyc, "ours", a_cyc), "loadgen": over(cyc, "loadgen", a_cyc)},
        "plain_round_spread_us": round((max(plain_rounds) - min(plain_rounds)) / 1000, 4),
        "per_round": {m: [{k: round(float(v), 1) for k, v in x.items()} for x in rs] for m, rs in per_round.items()},
    }


# ------------------------------------------------------------------------------------------------ report


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _rel(p: Path | str) -> str:
    try:
        return str(Path(p).resolve().relative_to(REPO))
    except ValueError:
        return str(p)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "cpu_model": _cpu_model(), "logical_cpus": os.cpu_count(), "cpus_usable": affinity,
        "machine": platform.machine(), "os": platform.platform(), "python": platform.python_version(),
        "numpy": np.__version__, "onnxruntime": _version("onnxruntime"), "onnx": _version("onnx"),
        "loadgen": (_version("mlcommons-loadgen") or "installed, version unknown") if lg else "not installed",
        "rapidocr_onnxruntime": _version("rapidocr-onnxruntime"),
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "git_commit": commit,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def command_line() -> str:
    exe = os.path.relpath(sys.executable, REPO)  # no resolve(): .venv/bin/python is a symlink
    return shlex.join([exe if exe.startswith(".venv") else sys.executable, _rel(Path(__file__))] + sys.argv[1:])


def _f(v: float | None, digits: int = 3, unit: str = "") -> str:
    return "—" if v is None else f"{v:.{digits}f}{unit}"


def _us(ns: float | None) -> str:
    return "—" if ns is None else (f"{ns / 1000:.3f}" if ns < 1e7 else f"{ns / 1000:.1f}")


HEADERS = ["model", "N×rounds", "p50 (a) plain µs", "p50 (b) ours µs", "p50 (c) LoadGen µs",
           "(b)−(a) µs", "(c)−(a) µs", "(b)/(a)", "(c)/(a)", "loop (b)−(a) µs", "loop (c)−(a) µs",
           "(a) spread µs"]


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        if r["status"] != "ok":
            out.append([r["label"], "—", r["status"]] + ["—"] * (len(HEADERS) - 3))
            continue
        lg_missing = r["p50_ns"]["loadgen"] is None
        out.append([
            r["label"], f"{r['queries_per_round']}×{r['rounds']}",
            _us(r["p50_ns"]["plain"]), _us(r["p50_ns"]["ours"]),
            r["loadgen"] if lg_missing else _us(r["p50_ns"]["loadgen"]),
            _f(r["overhead_us"]["ours"]), _f(r["overhead_us"]["loadgen"]),
            _f(r["ratio"]["ours"], 2), _f(r["ratio"]["loadgen"], 2),
            _f(r["loop_cost_us"]["ours"]), _f(r["loop_cost_us"]["loadgen"]),
            _f(r["plain_round_spread_us"]),
        ])
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    body = table_rows(rows)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(HEADERS)]
        print("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)))
        for b in body:
            print("  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)))
        return
    t = Table(title="Single-stream harness overhead (median over rounds of per-round p50)")
    for i, h in enumerate(HEADERS):
        t.add_column(h, justify="left" if i == 0 else "right")
    for b in body:
        t.add_row(*b)
    Console(width=200).print(t)


def markdown(doc: dict[str, Any]) -> str:
    body = table_rows(doc["rows"])
    lines = ["# Harness overhead: plain loop vs our single-stream harness vs MLCommons LoadGen", "",
             f"Generated by `bench/harness_overhead.py` on {doc['machine']['date']}"
             + (" (**quick profile: tiny counts, not for citing**)." if doc["quick"] else "."), "",
             "| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(HEADERS) - 1)) + "|"]
    lines += ["| " + " | ".join(b) + " |" for b in body]
    c = doc["checks"]
    lines += ["", "## Verdict", "",
              f"- our harness adds < 1 µs p50 per query on every resolvable row: **{c['ours_under_1us']}**"
              f" (largest (b)−(a): {_f(c['ours_max_overhead_us'])} µs)",
              f"- our harness adds less than LoadGen on every resolvable row: **{c['ours_below_loadgen']}**",
              f"- resolvable rows (round-to-round spread of (a) < 1 µs): {', '.join(c['resolvable_rows']) or 'none'}",
              "", "## What the columns are", "",
              "- **(a) plain**: `t0 = perf_counter_ns(); session.run(output_names, feed); t1 = perf_counter_ns()` in a "
              "bare `for` loop over the same preloaded feeds, in the same sample order as (b).",
              "- **(b) ours**: `agents.harness.single_stream.run_single_stream(session.runner(), feeds, "
              "SingleStreamSettings(min_query_count=N, min_duration_ms=0, max_query_count=N))`; "
              "p50 of its `latency_ns`.",
              "- **(c) LoadGen**: `TestScenario.SingleStream`, `TestMode.PerformanceOnly`, Python SUT "
              "(`ConstructSUT`; `issue_queries` runs the session then calls `QuerySamplesComplete`) and QSL "
              "(`ConstructQSL`), `min_query_count = max_query_count = N`, `min_duration_ms = 1`. Its p50 is "
              "LoadGen's own `result_50.00_percentile_latency_ns` from `mlperf_log_detail.txt` (the same number "
              "`mlperf_log_summary.txt` prints as \"50.00 percentile latency (ns)\"), logged to a temporary dir.",
              "- **null** row: the issue callable is a no-op Python function (the harness-only overhead; for "
              "LoadGen this is its null SUT).",
              "- p50 = median over rounds of the per-round p50; methods are interleaved and their order rotates "
              "every round. **(b)−(a)**, **(c)−(a)**: added latency per query as each harness reports it.",
              "- **loop (x)−(a)**: wall time per query (timed loop duration / queries; LoadGen: 1e9 / \"QPS w/ "
              "loadgen overhead\") minus the plain loop's: the per-query cost including bookkeeping outside the "
              "timed window.",
              "- **(a) spread**: max − min of the per-round p50 of (a): differences smaller than this are noise.",
              f"- onnxruntime session settings: `{json.dumps(ORT_SETTINGS)}` on CPUExecutionProvider.",
              "", "## Command", "", "```", doc["command"], "```", "", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in doc["machine"].items()]
    lines += ["", f"Total wall time: {doc['wall_s']} s. Per-round figures are in `harness_overhead.json`.", ""]
    return "\n".join(lines)


def checks(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r["status"] == "ok"]
    resolvable = [r for r in ok if r["plain_round_spread_us"] < 1.0]
    ours = [r["overhead_us"]["ours"] for r in resolvable]
    with_lg = [r for r in resolvable if r["overhead_us"]["loadgen"] is not None]
    return {
        "resolvable_rows": [r["key"] for r in resolvable],
        "ours_max_overhead_us": max(ours) if ours else None,
        "ours_under_1us": bool(ours) and all(o < 1.0 for o in ours),
        "ours_below_loadgen": (all(r["overhead_us"]["ours"] < r["overhead_us"]["loadgen"] for r in with_lg)
                               if with_lg else None),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny counts (smoke test); figures are not meaningful")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder for the JSON and markdown")
    ap.add_argument("--rounds", type=int, default=None, help="override the number of interleaved rounds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-loadgen", action="store_true", help="skip column (c) even when LoadGen is installed")
    args = ap.parse_args(argv)

    profile = QUICK if args.quick else FULL
    rounds = args.rounds or profile["rounds"]
    use_lg = lg is not None and not args.no_loadgen
    loadgen_state = "ok" if use_lg else ("not installed" if lg is None else "skipped (--no-loadgen)")
    methods = METHODS if use_lg else METHODS[:2]
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pilotlab-bench-") as tmp:
        cases, skipped = build_cases(Path(tmp), args.seed)
        for case in cases:
            n = profile["n"][case.key]
            print(f"[bench] {case.label}: {n} queries x {len(methods)} methods x {rounds} rounds", file=sys.stderr)
            per_round = bench_case(case, n, rounds, args.seed, methods)
            rows.append(summarise(case, n, rounds, per_round, loadgen_state))
    for key, why in skipped.items():
        rows.append({"key": key, "label": key, "status": f"skipped: {why}", "p50_ns": None})
    order = ["null", "onnx_add", "digits_logreg", "ppocr_det"]
    rows.sort(key=lambda r: order.index(r["key"]) if r["key"] in order else len(order))

    doc = {
        "bench": "harness_overhead", "quick": args.quick, "command": command_line(),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "loadgen_p50_source": "result_50.00_percentile_latency_ns in mlperf_log_detail.txt "
                              "(= '50.00 percentile latency (ns)' in mlperf_log_summary.txt)",
        "statistic": "median over rounds of per-round p50; overhead_us = p50(x) - p50(plain); "
                     "loop_cost_us = wall-per-query(x) - wall-per-query(plain)",
        "ours_settings": {k: v for k, v in ours_settings(1, args.seed).__dict__.items()} | {"min_query_count": "N",
                                                                                           "max_query_count": "N"},
        "ort_settings": ORT_SETTINGS, "machine": machine_info(), "rows": rows, "checks": checks(rows),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "harness_overhead.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "harness_overhead.md").write_text(markdown(doc))
    print_table(rows)
    print(json.dumps({"rows": [{k: r.get(k) for k in ("key", "status", "p50_ns", "overhead_us", "ratio",
                                                      "loop_cost_us")} for r in rows],
                      "checks": doc["checks"], "machine": doc["machine"]}, indent=2))
    print(f"[bench] wrote {args.out / 'harness_overhead.json'} and {args.out / 'harness_overhead.md'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
