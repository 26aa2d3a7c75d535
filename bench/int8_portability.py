#!/usr/bin/env python3
"""Which int8 scheme is portable: the suites' two int8 models built four ways, run by this machine's onnxruntime.

For the terminal-vision digits MLP and the accelerator-throughput convnet, each scheme of evalsuites.gen.qdq
(u8u8 = what the suites ship; s8 = int8 weights per channel; s8-per-tensor; s7 = reduce_range) is built from the
same float weights and calibration, then compared with its own exact integer reference (evalsuites.gen.qdq):

  ort_max_abs_err     max |onnxruntime - exact reference| over every output value (a correct kernel: tiny)
  ort_top1            share of samples where onnxruntime's arg-max equals the exact reference's
  inside              whether every onnxruntime output lies in the correct-kernel intervals
  exact_top1_vs_fp32  quality of the scheme itself: the exact int8 arg-max against the float64 fp32 model's
  p50_us / ratio      single-sample latency (median over interleaved rounds), and its ratio to u8u8

The CPU's instruction-set features that decide the int8 kernels are printed with the results.

    .venv/bin/python bench/int8_portability.py                    # writes bench/results/int8_portability.{md,json}
    .venv/bin/python bench/int8_portability.py --out /tmp/x --rounds 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from evalsuites.gen import accelerator, convnet, qdq, terminal_vision  # noqa: E402
from evalsuites.gen.common import finalize, run_ort  # noqa: E402

SCHEMES = ("u8u8", "s8", "s8-per-tensor", "s7")
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return sorted(set(value.split()))
    return []


def models() -> dict[str, dict]:
    """Per model: float reference top-1, inputs, and a builder of each scheme's ONNX bytes."""
    x_train, x_test, y_train, _ = terminal_vision.digits_split()
    weights = terminal_vision.fit_mlp(x_train, y_train)
    mlp_ref = terminal_vision.reference_probabilities(x_test, *weights)
    scenes = accelerator.scenes()
    params = convnet.make_params(np.random.RandomState(accelerator.SEED + 1))
    feats, peaks = convnet.features(scenes, params)
    params = convnet.center_head(params, feats)
    conv_ref = convnet.head(feats, params)[convnet.LOGITS]
    return {
        "digits-mlp": {"feeds": {"input": x_test}, "fp32_top1": mlp_ref.argmax(-1), "outputs": ["probabilities"],
                       "build": lambda s: finalize(terminal_vision.mlp_int8(*weights[:4], x_train, scheme=s),
                                                   "b", "b")},
        "convnet": {"feeds": {"input": scenes}, "fp32_top1": conv_ref.argmax(-1),
                    "outputs": ["logits", "probabilities"],
                    "build": lambda s: finalize(convnet.convnet(params, quantize=True, peaks=peaks, scheme=s),
                                                "b", "b")},
    }


def latency_p50_us(model: bytes, feeds: dict[str, np.ndarray], queries: int) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    n = len(next(iter(feeds.values())))
    one = [{k: v[i:i + 1] for k, v in feeds.items()} for i in range(n)]
    for f in one[:10]:
        sess.run(None, f)
    times = []
    for q in range(queries):
        t0 = time.perf_counter_ns()
        sess.run(None, one[q % n])
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e3


def measure(rounds: int, queries: int) -> list[dict]:
    import onnx

    rows = []
    for model_name, m in models().items():
        built = {s: m["build"](s) for s in SCHEMES}
        for scheme, blob in built.items():
            bounds = qdq.evaluate(onnx.load_from_string(blob), m["feeds"])
            got = run_ort(blob, m["feeds"], per_sample=True)
            err = max(float(np.max(np.abs(got[o] - bounds[o].mid))) for o in m["outputs"])
            top = m["outputs"][0]
            inside = all(bool(np.all((got[o] >= bounds[o].lo - np.abs(bounds[o].lo) * 2**-23)
                                     & (got[o] <= bounds[o].hi + np.abs(bounds[o].hi) * 2**-23))) for o in m["outputs"])
            tol = qdq.tolerance(bounds, {o: bounds[o].mid.astype(np.float32) for o in m["outputs"]})
            rows.append({"model": model_name, "scheme": scheme, "ort_max_abs_err": err,
                         "ort_top1": float(np.mean(got[top].argmax(-1) == bounds[top].mid.argmax(-1))),
                         "inside": inside, "tolerance_max_abs_err": tol.max_abs_err,
                         "exact_top1_vs_fp32": float(np.mean(bounds[top].mid.argmax(-1) == m["fp32_top1"])),
                         "p50_us_rounds": []})
        for _ in range(rounds):  # interleaved: every scheme once per round
            for scheme, blob in built.items():
                row = next(r for r in rows if r["model"] == model_name and r["scheme"] == scheme)
                row["p50_us_rounds"].append(latency_p50_us(blob, m["feeds"], queries))
    for r in rows:
        r["p50_us"] = statistics.median(r["p50_us_rounds"])
        base = next(x for x in rows if x["model"] == r["model"] and x["scheme"] == "u8u8")
        r["ratio_to_u8u8"] = r["p50_us"] / statistics.median(base["p50_us_rounds"]) if base["p50_us_rounds"] else None
    return rows


def table(rows: list[dict]) -> str:
    head = ("| model | scheme | ORT vs exact max abs err | ORT top-1 = exact | inside intervals | tolerance "
            "| exact int8 top-1 = fp32 | p50 µs | vs u8u8 |")
    lines = [head, "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['scheme']} | {r['ort_max_abs_err']:.3g} | {r['ort_top1']:.3f} | "
                     f"{'yes' if r['inside'] else 'NO'} | {r['tolerance_max_abs_err']:.3g} | "
                     f"{r['exact_top1_vs_fp32']:.3f} | {r['p50_us']:.1f} | {r['ratio_to_u8u8']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--name", default="int8_portability", help="file stem of the results")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    flags = cpu_flags()
    rows = measure(args.rounds, args.queries)
    doc = {"command": "python bench/int8_portability.py " + shlex.join(sys.argv[1:] if argv is None else argv),
           "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
           "processor": platform.processor(), "onnxruntime": ort.__version__,
           "int8_flags": [f for f in INT8_FLAGS if f in flags], "rows": rows}
    md = (f"# int8 schemes on this CPU\n\n`{doc['command']}` on {doc['date']}, {doc['machine']}, onnxruntime "
          f"{doc['onnxruntime']}, int8-relevant CPU flags: {', '.join(doc['int8_flags']) or 'none'}\n\n"
          + table(rows) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(md)
    print(md)
    print(json.dumps({"rows": [{k: v for k, v in r.items() if k != "p50_us_rounds"} for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
