#!/usr/bin/env python3
"""Lab-reported single-stream latency next to a plain onnxruntime loop on the same device, in interleaved rounds.

For each model (the smoke suite's digits logreg, terminal-vision's digits MLP fp32, PP-OCRv4 det), per round:

  (A) lab    a real `labd serve` and one real `lab-agent` (subprocesses, started once for the whole bench); the
             round submits a run of a one-task bench suite (`labctl run submit --suite ... --device ... --wait
             --json`), pulls its report (`labctl report pull`) and reads the task's lab-reported p50/p99 (the
             median repeat by p50 of 3 repeats, each in a fresh executor process), the per-repeat p50/p99 and the
             per-repeat machine state (`observations.system[].steal_share`)
  (B) plain  3 fresh Python processes (one per repeat, like the agent's executors), each: an InferenceSession on
             the same model file with the executor's session options (intra-op threads = len(sched_getaffinity),
             inter-op 0, sequential, spinning on, graph optimisation all), the same dataset samples preloaded as
             batch-1 feeds, one first inference and `warmup_queries` warm-up queries, then a timed loop of
             `perf_counter_ns(); sess.run(outputs, feed); perf_counter_ns()` in the same sample order (numpy
             default_rng(seed + repeat)) until min_query_count and min_duration_ms are both met. p50/p99 by the
             nearest rank, and the median repeat by p50, exactly as the lab grades. /proc/stat around each timed
             loop gives its steal share.

The order alternates (round 1: A then B, round 2: B then A, ...: ABBA) and rounds are the outer loop, models the
inner one, so slow drift of the machine falls on both sides. Before each side the bench waits (--quiet-gate) for a
second with the CPUs < 10% busy; a round in which other processes took > 10% of the CPUs in a timed window on either
side is contended, and its pair is measured again (--retry-contended; every try kept). Per model: the median over
rounds of lab/plain for p50 and p99, their min-max and IQR, whether the median p50 ratio is within 1.00 +- 0.03,
and diagnostics (uncontended rounds only, fastest repeats, repeats run in a slow spell).

    .venv/bin/python bench/lab_vs_raw.py                    # 5 rounds, 3 models: bench/results/lab_vs_raw.{json,md}
    .venv/bin/python bench/lab_vs_raw.py --rounds 7 --models smoke,digits-mlp
    .venv/bin/python bench/lab_vs_raw.py --quick --out /tmp/lvr   # 1 round, smoke only, tiny counts: smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEVICE = "bench-dev"
TARGET, TOLERANCE = 1.00, 0.03
SEED = 0  # single-stream tasks run with the default seed: repeat r draws its sample order from default_rng(0 + r)
REPEATS = 3  # the lab's default (pilotlab.tasks: repeats); the bench suites leave it unset
QUICK_SETTINGS = {"warmup_queries": 10, "min_query_count": 50, "min_duration_ms": 50}
SUBPROCESS_TIMEOUT_S = 1800
PULL_TRIES, PULL_RETRY_S = 4, 60  # a report that fails to render (say, mid-edit code in labd) is asked for again
QUIET_BUSY = 0.10  # wait_quiet: the machine counts as quiet below this busy share of all CPUs
SLOW = 1.25  # diagnostics: a repeat whose p50 is this many times the model's fastest repeat ran in a slow spell
CONTENDED = 0.10  # a round is contended when other processes took more than this share of the CPUs in a timed window
# (the threshold agents/sysstat.py likely_cause uses to blame other processes for unstable repeats)


@dataclass(frozen=True)
class Model:
    key: str
    label: str
    suite: str  # evalsuites/<suite>
    task: str  # the task in that suite whose model, dataset and settings the bench suite copies


MODELS = (
    Model("smoke", "smoke: digits logreg", "smoke", "digits-single-stream"),
    Model("digits-mlp", "digits MLP fp32", "terminal-vision", "digits-fp32-single-stream"),
    Model("ocr-det", "PP-OCRv4 det 640x640", "terminal-vision", "ocr-det-single-stream"),
)


# ------------------------------------------------------------------------------------------- /proc/stat


def cpu_jiffies() -> tuple[int, int, int]:
    """(steal, busy, total) jiffies of the aggregate cpu line of /proc/stat (user..steal, as agents/sysstat.py)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                v = [int(x) for x in line.split()[1:9]]
                return v[7], v[0] + v[1] + v[2] + v[5] + v[6], sum(v)
    return 0, 0, 0


def wait_quiet(max_s: float, threshold: float = QUIET_BUSY, window_s: float = 1.0) -> dict[str, Any]:
    """Before a side: wait (at most max_s) for a window_s in which all CPUs together were busy less than threshold
    of the time. This process only sleeps meanwhile, and labd and the agent are idle, so what is busy is someone
    else's work (on a shared machine: other people's test runs). Says how long it waited and what it saw."""
    t0 = time.monotonic()
    busy = None
    while max_s > 0:
        j0 = cpu_jiffies()
        time.sleep(window_s)
        j1 = cpu_jiffies()
        busy = (j1[1] - j0[1]) / max(1, j1[2] - j0[2])
        if busy < threshold or time.monotonic() - t0 >= max_s:
            break
    return {"waited_s": round(time.monotonic() - t0, 1), "busy_share": None if busy is None else round(busy, 4),
            "quiet": None if busy is None else busy < threshold}


def share(before: tuple[int, int, int], after: tuple[int, int, int]) -> float | None:
    """Steal share of all CPU time between two cpu_jiffies() readings; None when no tick passed."""
    total = after[2] - before[2]
    return None if total <= 0 else round((after[0] - before[0]) / total, 6)


# -------------------------------------------------------------------------------------- (B) plain child


def nearest_rank(sorted_ns: list[int], p: float) -> int:
    return sorted_ns[max(1, math.ceil(p / 100.0 * len(sorted_ns) - 1e-9)) - 1]


def plain_repeat(spec: dict[str, Any]) -> dict[str, Any]:
    """One repeat of the plain loop, in this (fresh) process; returns its figures as JSON-able dict."""
    import resource

    import numpy as np

    if spec.get("cpus"):
        os.sched_setaffinity(0, set(spec["cpus"]))
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = len(os.sched_getaffinity(0))  # the executor's rule for intra_op_threads = 0
    so.inter_op_num_threads = 0
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(spec["model"], sess_options=so, providers=["CPUExecutionProvider"])
    create_ms = (time.perf_counter() - t0) * 1000
    inputs = [i.name for i in sess.get_inputs()]
    outputs = [o.name for o in sess.get_outputs()]
    with np.load(spec["dataset"]) as z:
        arrays = {k: z[k] for k in z.files}
    n = len(arrays[inputs[0]])
    feeds = [{name: np.ascontiguousarray(arrays[name][i:i + 1]) for name in inputs} for i in range(n)]
    run = sess.run
    t0 = time.perf_counter()
    run(outputs, feeds[0])
    first_ms = (time.perf_counter() - t0) * 1000
    for q in range(int(spec["warmup_queries"])):
        run(outputs, feeds[q % n])

    min_count, min_ns = int(spec["min_query_count"]), int(spec["min_duration_ms"]) * 1_000_000
    rng = np.random.default_rng(int(spec["seed"]) + int(spec["repeat"]))
    order = rng.integers(0, n, size=max(min_count, 1024), dtype=np.int64).tolist()
    lat: list[int] = []
    clock = time.perf_counter_ns
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    j0 = cpu_jiffies()
    start = t1 = clock()
    q = 0
    while q < min_count or t1 - start < min_ns:
        if q == len(order):
            order += rng.integers(0, n, size=len(order), dtype=np.int64).tolist()
        feed = feeds[order[q]]
        t0n = clock()
        run(outputs, feed)
        t1 = clock()
        if q == 0:
            start = t0n
        lat.append(t1 - t0n)
        q += 1
    j1 = cpu_jiffies()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    s = sorted(lat)
    own_cpu_s = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    elapsed_s = (t1 - start) / 1e9
    ticks = os.sysconf("SC_CLK_TCK")
    ncpu = os.cpu_count() or 1
    other = max(0.0, (j1[1] - j0[1]) / ticks - own_cpu_s) / (elapsed_s * ncpu) if elapsed_s > 0 else None
    return {"repeat": int(spec["repeat"]), "queries": len(lat), "duration_s": round(elapsed_s, 6),
            "p50_ms": nearest_rank(s, 50) / 1e6, "p99_ms": nearest_rank(s, 99) / 1e6, "steal_share": share(j0, j1),
            "other_processes_cpu_share": None if other is None else round(min(1, other), 6),
            "session_create_ms": round(create_ms, 3), "first_inference_ms": round(first_ms, 3),
            "warmup_queries": int(spec["warmup_queries"]), "intra_op_threads": so.intra_op_num_threads,
            "affinity": sorted(os.sched_getaffinity(0))}


# ------------------------------------------------------------------------------------ bench suites


@dataclass
class BenchSuite:
    model: Model
    suite_id: str
    settings: dict[str, int]
    model_file: Path
    dataset_file: Path
    pins: dict[str, dict[str, Any]] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_suite(m: Model, root: Path, quick: bool) -> BenchSuite:
    """root/bench-<key>/suite.toml: the one task of model m (its model, dataset and timing settings, no accuracy,
    no golden), the artifacts copied beside it and pinned by sha256 and size."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from evalsuites.loader import load_suite
    from evalsuites.sources import resolve_source

    src = REPO / "evalsuites" / m.suite
    doc = tomllib.loads((src / "suite.toml").read_text())
    [task] = [t for t in doc["tasks"] if t["name"] == m.task]
    settings = {k: int(task["settings"][k]) for k in ("warmup_queries", "min_query_count", "min_duration_ms")}
    if quick:
        settings = dict(QUICK_SETTINGS)
    suite_id = f"bench-{m.key}"
    dest = root / suite_id
    files: dict[str, Path] = {}
    pins: dict[str, dict[str, Any]] = {}
    for role, sub in (("model", "models"), ("dataset", "data")):
        art = doc["artifacts"][task[role]]
        path = resolve_source(art["source"], src, strict=True)
        assert path is not None
        (dest / sub).mkdir(parents=True, exist_ok=True)
        files[role] = Path(shutil.copy2(path, dest / sub / path.name))
        pins[role] = {"artifact": task[role], "source": art["source"], "file": path.name,
                      "sha256": _sha256(files[role]), "size": files[role].stat().st_size}
        if pins[role]["sha256"] != art["sha256"]:
            raise SystemExit(f"{m.suite}/{art['source']} does not match its pin in evalsuites/{m.suite}/suite.toml")
    lines = ["# Written by bench/lab_vs_raw.py: one task, so each lab run measures exactly the plain loop's work.",
             "[suite]", f'id = "{suite_id}"', 'version = "1.0.0"', f'title = "lab_vs_raw: {m.label}"',
             f'description = "{m.suite}/{m.task}, single-stream latency only"', 'device_classes = ["smart-terminal"]',
             ""]
    for role, kind in (("model", "model"), ("dataset", "dataset")):
        p = pins[role]
        sub = "models" if role == "model" else "data"
        lines += [f"[artifacts.{p['artifact']}]", f'kind = "{kind}"', f'source = "path:{sub}/{p["file"]}"',
                  f'sha256 = "{p["sha256"]}"', f"size = {p['size']}"]
        if kind == "dataset":
            lines += ['classification = "public"']
        lines.append("")
    lines += ["[[tasks]]", f'name = "{m.task}"', f'model = "{pins["model"]["artifact"]}"',
              f'dataset = "{pins["dataset"]["artifact"]}"', 'scenario = "single-stream"', "[tasks.settings]"]
    lines += [f"{k} = {v}" for k, v in settings.items()]
    lines += ["", "[[criteria]]", f'task = "{m.task}"', 'metric = "latency_ms.p99"', 'op = "<="',
              "threshold = 600000.0", 'description = "a formality: the bench reads the figures, not the verdict"', ""]
    (dest / "suite.toml").write_text("\n".join(lines))
    load_suite(dest)  # fails here, with every problem, rather than in labd
    return BenchSuite(m, suite_id, settings, files["model"], files["dataset"], pins)


# -------------------------------------------------------------------------------------------- the lab


class Lab:
    """labd + one lab-agent as subprocesses on 127.0.0.1, driven with labctl."""

    def __init__(self, root: Path, suites_dir: Path) -> None:
        self.root, self.suites_dir = root, suites_dir
        self.data_dir = root / "lab"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.addr = ""
        self.agent_log = root / "agent.log"
        self.labd_log = root / "labd.log"
        self.affinity: list[int] | None = None  # the executor's CPUs in the last report

    def start(self) -> Lab:
        self.data_dir.mkdir(parents=True)
        labd = subprocess.Popen([str(BIN / "labd"), "serve", "--data-dir", str(self.data_dir), "--listen",
                                 "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--suites", str(self.suites_dir)],
                                stdout=subprocess.DEVNULL, stderr=self.labd_log.open("wb"))
        self.procs.append(labd)
        addr_file = self.data_dir / "labd.addr"
        deadline = time.monotonic() + 120
        while not addr_file.exists() or not addr_file.read_text().strip():
            if labd.poll() is not None:
                raise RuntimeError(f"labd exited {labd.returncode}: {self.labd_log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("labd did not listen within 120 s")
            time.sleep(0.05)
        self.addr = addr_file.read_text().strip()
        token = self.json("token", "create", "--role", "agent")["token"]
        agent = subprocess.Popen([str(BIN / "lab-agent"), "--lab", self.addr, "--token", token, "--name", DEVICE,
                                  "--class", "smart-terminal", "--work-dir", str(self.root / "agent")],
                                 stdout=subprocess.DEVNULL, stderr=self.agent_log.open("wb"))
        self.procs.append(agent)
        deadline = time.monotonic() + 120
        while not any(d["name"] == DEVICE and d["status"] in ("online", "busy") for d in self.json("devices", "list")):
            if agent.poll() is not None:
                raise RuntimeError(f"lab-agent exited {agent.returncode}: {self.agent_log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("lab-agent did not come online within 120 s")
            time.sleep(0.2)
        return self

    def labctl(self, *args: str, timeout: float = SUBPROCESS_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LAB_ADDR": self.addr,
               "LAB_TOKEN": (self.data_dir / "admin.token").read_text().strip()}
        return subprocess.run([str(BIN / "labctl"), *args], env=env, text=True, capture_output=True, timeout=timeout)

    def json(self, *args: str) -> Any:
        p = self.labctl(*args, "--json")
        if p.returncode != 0:
            raise RuntimeError(f"labctl {' '.join(args)} exited {p.returncode}: {p.stderr[-2000:]}")
        return json.loads(p.stdout)

    def stop(self) -> None:
        for p in reversed(self.procs):  # the agent first, then labd
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def measure(self, bs: BenchSuite, tag: str) -> dict[str, Any]:
        """(A): one run of the bench suite; the task's figures as the lab reports them."""
        j0, t0 = cpu_jiffies(), time.perf_counter()
        sub = self.labctl("run", "submit", "--suite", bs.suite_id, "--device", DEVICE, "--wait", "--json")
        j1, wall = cpu_jiffies(), time.perf_counter() - t0
        try:
            run = json.loads(sub.stdout)
        except ValueError:
            run = {}
        if sub.returncode not in (0, 1) or run.get("status") != "completed":
            raise RuntimeError(f"lab run of {bs.suite_id} ended {run.get('status')!r} (labctl exit {sub.returncode})"
                               f": {run.get('reason') or sub.stderr[-2000:]}\nagent log: "
                               f"{self.agent_log.read_text(errors='replace')[-2000:]}")
        out = self.root / "reports" / tag
        for attempt in range(PULL_TRIES):
            p = self.labctl("report", "pull", run["id"], "--out", str(out))
            if p.returncode == 0:
                break
            print(f"[lab_vs_raw] labctl report pull {run['id']} exited {p.returncode}: {p.stderr.strip()[-500:]}"
                  + (f"; retrying in {PULL_RETRY_S} s" if attempt + 1 < PULL_TRIES else ""), file=sys.stderr)
            if attempt + 1 < PULL_TRIES:
                time.sleep(PULL_RETRY_S)
        else:
            raise RuntimeError(f"labctl report pull {run['id']} exited {p.returncode}: {p.stderr[-2000:]}")
        report = json.loads((out / "report.json").read_text())
        [task] = report["tasks"]
        m, obs = task["metrics"], task["observations"]
        lat, reps = m["latency_ms"], m.get("repeats") or {}
        system = obs.get("system") or []
        return {
            "run_id": run["id"], "verdict": run.get("verdict"), "valid": m["validity"]["valid"],
            "validity_reasons": m["validity"]["reasons"], "p50_ms": lat["p50"], "p99_ms": lat["p99"],
            "queries": lat["n"], "repeats_p50_ms": reps.get("p50_ms", [lat["p50"]]),
            "repeats_p99_ms": reps.get("p99_ms", [lat["p99"]]),
            "steal_share": [s.get("steal_share") for s in system],
            "other_processes_cpu_share": [s.get("other_processes_cpu_share") for s in system],
            "side_steal_share": share(j0, j1), "wall_s": round(wall, 3),
            "warmup_queries": (task.get("phases") or {}).get("warmup", {}).get("queries"),
            "session_create_ms": [r.get("session_create_ms") for r in (task.get("phases") or {}).get("repeats", [])],
            "session_options": obs.get("session_options"), "affinity": (obs.get("executor") or {}).get("affinity"),
            "stability": m.get("stability"),
        }


# ------------------------------------------------------------------------------------------ (B) driver


def measure_plain(bs: BenchSuite, cpus: list[int] | None) -> dict[str, Any]:
    """(B): REPEATS fresh processes, one per repeat; the median repeat by p50, as the lab takes it."""
    j0, t0 = cpu_jiffies(), time.perf_counter()
    reps = []
    for r in range(REPEATS):
        spec = {"model": str(bs.model_file), "dataset": str(bs.dataset_file), "seed": SEED, "repeat": r,
                "cpus": cpus, **bs.settings}
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--plain-repeat", json.dumps(spec)],
                           cwd=REPO, text=True, capture_output=True, timeout=SUBPROCESS_TIMEOUT_S)
        if p.returncode != 0:
            raise RuntimeError(f"plain repeat {r} of {bs.model.key} exited {p.returncode}: {p.stderr[-2000:]}")
        reps.append(json.loads(p.stdout.strip().splitlines()[-1]))
    j1, wall = cpu_jiffies(), time.perf_counter() - t0
    med = sorted(reps, key=lambda x: x["p50_ms"])[len(reps) // 2]
    return {"p50_ms": med["p50_ms"], "p99_ms": med["p99_ms"], "queries": med["queries"],
            "repeats_p50_ms": [x["p50_ms"] for x in reps], "repeats_p99_ms": [x["p99_ms"] for x in reps],
            "steal_share": [x["steal_share"] for x in reps],
            "other_processes_cpu_share": [x["other_processes_cpu_share"] for x in reps],
            "side_steal_share": share(j0, j1), "wall_s": round(wall, 3),
            "warmup_queries": bs.settings["warmup_queries"],
            "session_create_ms": [x["session_create_ms"] for x in reps],
            "intra_op_threads": med["intra_op_threads"], "affinity": med["affinity"], "repeats": reps}


def measure_pair(lab: Lab, bs: BenchSuite, rnd: int, attempt: int, order: str, quiet_gate: float) -> dict[str, Any]:
    """Both sides of one round, in the round's order, each after the quiet gate."""
    res: dict[str, Any] = {}
    for side in order:
        gate = wait_quiet(quiet_gate)
        if side == "A":
            res["lab"] = lab.measure(bs, f"{bs.model.key}-r{rnd}-t{attempt}")
        else:  # the plain loop runs on the CPUs the lab's executor ran on (all of them unless the agent isolates)
            res["plain"] = measure_plain(bs, res["lab"]["affinity"] if "lab" in res else lab.affinity)
        res["lab" if side == "A" else "plain"]["quiet_gate"] = gate
    lab.affinity = res["lab"]["affinity"]
    other = _max(res["lab"]["other_processes_cpu_share"] + res["plain"]["other_processes_cpu_share"])
    return {"round": rnd, "try": attempt, "order": order, **res,
            "ratio_p50": round(res["lab"]["p50_ms"] / res["plain"]["p50_ms"], 4),
            "ratio_p99": round(res["lab"]["p99_ms"] / res["plain"]["p99_ms"], 4),
            "ratio_best_repeat_p50": round(min(res["lab"]["repeats_p50_ms"]) / min(res["plain"]["repeats_p50_ms"]), 4),
            "other_processes_cpu_share_max": other, "contended": other is not None and other > CONTENDED}


# ------------------------------------------------------------------------------------------- summaries


def spread(xs: list[float]) -> dict[str, float]:
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else (xs[0], 0.0, xs[0])
    return {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4), "max": round(max(xs), 4),
            "q1": round(q1, 4), "q3": round(q3, 4), "iqr": round(q3 - q1, 4)}


def _max(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return max(v) if v else None


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    p50 = spread([r["ratio_p50"] for r in rounds])
    p99 = spread([r["ratio_p99"] for r in rounds])
    clean = [r for r in rounds if not r["contended"]]
    clean_p50 = spread([r["ratio_p50"] for r in clean]) if clean else None
    fastest = min(x for r in rounds for side in ("lab", "plain") for x in r[side]["repeats_p50_ms"])
    slow = {side: sum(x >= SLOW * fastest for r in rounds for x in r[side]["repeats_p50_ms"])
            for side in ("lab", "plain")}
    return {
        "rounds": len(rounds), "ratio_p50": p50, "ratio_p99": p99,
        "within_target_p50": abs(p50["median"] - TARGET) <= TOLERANCE,
        "within_target_p99": abs(p99["median"] - TARGET) <= TOLERANCE,
        "uncontended_rounds": [r["round"] for r in clean],
        "ratio_p50_uncontended": clean_p50,
        "within_target_p50_uncontended": None if clean_p50 is None else abs(clean_p50["median"] - TARGET) <= TOLERANCE,
        "ratio_best_repeat_p50": spread([r["ratio_best_repeat_p50"] for r in rounds]),
        "slow_repeats": {**slow, "of": sum(len(r["lab"]["repeats_p50_ms"]) for r in rounds),
                         "threshold": f"p50 >= {SLOW} x the fastest repeat of this model ({fastest} ms)"},
        "warmup_queries": {"lab_first_repeat": sorted({r["lab"]["warmup_queries"] for r in rounds} - {None}),
                           "plain": rounds[0]["plain"]["warmup_queries"]},
        "lab_p50_ms_median": statistics.median(r["lab"]["p50_ms"] for r in rounds),
        "plain_p50_ms_median": statistics.median(r["plain"]["p50_ms"] for r in rounds),
        "steal_max": {"lab_windows": _max([s for r in rounds for s in r["lab"]["steal_share"]]),
                      "plain_windows": _max([s for r in rounds for s in r["plain"]["steal_share"]]),
                      "lab_side": _max([r["lab"]["side_steal_share"] for r in rounds]),
                      "plain_side": _max([r["plain"]["side_steal_share"] for r in rounds])},
        "other_processes_cpu_share_max": {
            "lab_windows": _max([s for r in rounds for s in r["lab"]["other_processes_cpu_share"]]),
            "plain_windows": _max([s for r in rounds for s in r["plain"]["other_processes_cpu_share"]])},
    }


# ---------------------------------------------------------------------------------------------- report


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict[str, Any]:
    dirty = [ln[3:] for ln in _run(["git", "-C", str(REPO), "status", "--short"]).splitlines() if ln.strip()]
    return {
        "lscpu_head": _run(["lscpu"]).splitlines()[:10], "logical_cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)), "os": platform.platform(), "python": platform.python_version(),
        "onnxruntime": _version("onnxruntime"), "numpy": _version("numpy"),
        "rapidocr_onnxruntime": _version("rapidocr-onnxruntime"),
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "git_commit": _run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]).strip() or None,
        "git_dirty_files": dirty,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def command_line() -> str:
    exe = os.path.relpath(sys.executable, REPO)  # no resolve(): .venv/bin/python is a symlink
    me = os.path.relpath(Path(__file__).resolve(), REPO)
    return shlex.join([exe if exe.startswith(".venv") else sys.executable, me] + sys.argv[1:])


def fmt_ms(ms: float) -> str:
    return f"{ms * 1000:.2f} µs" if ms < 1 else f"{ms:.2f} ms"


def fmt_pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


ROUND_HEADERS = ["model", "round", "order", "lab p50", "plain p50", "ratio p50", "lab p99", "plain p99", "ratio p99",
                 "steal % lab", "steal % plain", "other CPU % lab", "other CPU % plain", "contended"]
SUMMARY_HEADERS = ["model", "rounds", "lab p50", "plain p50", "median ratio p50", "p50 min–max", "p50 IQR",
                   "within 1.00 ± 0.03", "median ratio p99", "p99 min–max", "p99 IQR", "max steal % lab / plain"]
DIAG_HEADERS = ["model", "uncontended rounds", "median ratio p50, uncontended", "fastest repeats: median ratio",
                "fastest repeats: min–max", f"repeats ≥ {SLOW}× fastest, lab", f"repeats ≥ {SLOW}× fastest, plain"]


def round_row(label: str, r: dict[str, Any]) -> list[str]:
    return [label, str(r["round"]), r["order"], fmt_ms(r["lab"]["p50_ms"]), fmt_ms(r["plain"]["p50_ms"]),
            f"{r['ratio_p50']:.3f}", fmt_ms(r["lab"]["p99_ms"]), fmt_ms(r["plain"]["p99_ms"]), f"{r['ratio_p99']:.3f}",
            fmt_pct(_max(r["lab"]["steal_share"])), fmt_pct(_max(r["plain"]["steal_share"])),
            fmt_pct(_max(r["lab"]["other_processes_cpu_share"])),
            fmt_pct(_max(r["plain"]["other_processes_cpu_share"])), "yes" if r["contended"] else "no"]


def summary_row(row: dict[str, Any]) -> list[str]:
    if row["status"] != "ok":
        return [row["label"], "—", row["status"]] + ["—"] * (len(SUMMARY_HEADERS) - 3)
    s = row["summary"]
    p50, p99 = s["ratio_p50"], s["ratio_p99"]
    return [row["label"], str(s["rounds"]), fmt_ms(s["lab_p50_ms_median"]), fmt_ms(s["plain_p50_ms_median"]),
            f"{p50['median']:.3f}", f"{p50['min']:.3f}–{p50['max']:.3f}", f"{p50['iqr']:.3f}",
            "yes" if s["within_target_p50"] else "**no**", f"{p99['median']:.3f}",
            f"{p99['min']:.3f}–{p99['max']:.3f}", f"{p99['iqr']:.3f}",
            f"{fmt_pct(s['steal_max']['lab_windows'])} / {fmt_pct(s['steal_max']['plain_windows'])}"]


def diag_row(row: dict[str, Any]) -> list[str]:
    s = row["summary"]
    best, slow = s["ratio_best_repeat_p50"], s["slow_repeats"]
    return [row["label"], f"{len(s['uncontended_rounds'])} of {s['rounds']}",
            "—" if s["ratio_p50_uncontended"] is None else f"{s['ratio_p50_uncontended']['median']:.3f}",
            f"{best['median']:.3f}", f"{best['min']:.3f}–{best['max']:.3f}",
            f"{slow['lab']} of {slow['of']}", f"{slow['plain']} of {slow['of']}"]


def print_table(title: str, headers: list[str], body: list[list[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        for b in body:
            print("  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)))
        return
    t = Table(title=title)
    for i, h in enumerate(headers):
        t.add_column(h, justify="left" if i == 0 else "right")
    for b in body:
        t.add_row(*(c.replace("**", "") for c in b))
    Console(width=250).print(t)


def _md_table(headers: list[str], body: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
            + ["| " + " | ".join(b) + " |" for b in body])


def markdown(doc: dict[str, Any]) -> str:
    rows = doc["models"]
    ok = [r for r in rows if r["status"] == "ok"]
    lines = ["# Lab-reported latency vs a plain loop on the same device", "",
             f"Generated by `bench/lab_vs_raw.py` on {doc['machine']['date']}"
             + (" (**quick profile: tiny counts, not for citing**)." if doc["quick"] else "."), "",
             f"Target: the median over rounds of lab p50 / plain p50 within {TARGET:.2f} ± {TOLERANCE:.2f} on every "
             "model.", "", "## Per model", ""]
    lines += _md_table(SUMMARY_HEADERS, [summary_row(r) for r in rows])
    verdict = all(r["summary"]["within_target_p50"] for r in ok) if ok else None
    lines += ["", f"Median p50 ratio within {TARGET:.2f} ± {TOLERANCE:.2f} on every model: **{verdict}**", "",
              "## Diagnostics", "",
              "Not the target statistic; they say why a ratio is off. *Uncontended*: rounds in which no other process "
              f"took more than {100 * CONTENDED:.0f}% of the CPUs in a timed window. *Fastest repeats*: per round, "
              "the fastest repeat's p50 on each side (lab: from `metrics.repeats.p50_ms`), divided. "
              f"*Repeats ≥ {SLOW}× fastest*: repeats whose p50 is at least {SLOW} times the fastest repeat of that "
              "model on either side, in any round: a repeat that ran in a slow spell of the machine.", ""]
    lines += _md_table(DIAG_HEADERS, [diag_row(r) for r in ok])
    lines += ["", "## Every round", ""]
    lines += _md_table(ROUND_HEADERS, [round_row(r["label"], x) for r in ok for x in r["rounds"]])
    retried = [(r["label"], x["round"], len(x["contended_tries"])) for r in ok for x in r["rounds"]
               if x.get("contended_tries")]
    lines += ["", "Pairs measured again because a side was contended (both sides again, same order; the earlier "
              "tries are in the JSON under `contended_tries`; a round still contended after `--retry-contended` "
              "tries is kept and marked): " + ("; ".join(f"{lab} round {n}: {k}" for lab, n, k in retried) or "none")
              + "."]
    lines += ["", "## What the columns are", "",
              "- **lab**: the task's `metrics.latency_ms.p50`/`p99` in the report of a real `labd` + `lab-agent` run "
              "(3 repeats, each in a fresh executor process; the median repeat by p50).",
              "- **plain**: 3 fresh processes, each a bare `perf_counter_ns` loop around `InferenceSession.run` with "
              "the executor's session options, the same feeds, the suite's `warmup_queries`, sample order and stop "
              "rule; the median repeat by p50 (nearest rank).",
              "- **ratio** = lab / plain, per round; **order** AB = lab first. Rounds alternate AB, BA, AB, ...",
              "- **steal %**: the largest share of CPU time stolen by the hypervisor during a timed window "
              "(/proc/stat, all CPUs): lab from `observations.system[].steal_share`, plain measured the same way "
              "around its loop.",
              "- **other CPU %**: the largest share of all CPUs that processes other than the measured one used "
              "during a timed window (busy jiffies minus the process's own CPU time; lab: "
              "`observations.system[].other_processes_cpu_share`, which also counts the agent; plain: the same "
              f"formula). A round is **contended** when either side's exceeds {100 * CONTENDED:.0f}%: someone "
              "else's work shared the CPUs the model ran on. Before each side the bench waits (up to "
              "`--quiet-gate` s) for a second in which the CPUs were less than "
              f"{100 * QUIET_BUSY:.0f}% busy; nothing stops work that starts afterwards.",
              "- **IQR**: Q3 − Q1 of the per-round ratios (inclusive quartiles).", "",
              "## Settings", ""]
    for r in rows:
        if r["status"] == "ok":
            wu = r["summary"]["warmup_queries"]
            lines.append(f"- {r['label']}: `{r['suite']}` task `{r['task']}`, {json.dumps(r['settings'])}, "
                         f"model `{r['model']['file']}` ({r['model']['sha256'][:12]}), "
                         f"dataset `{r['dataset']['file']}`; warm-up queries the lab's executor ran (first repeat, "
                         f"`phases.warmup.queries`): {', '.join(map(str, wu['lab_first_repeat'])) or '—'}; "
                         f"plain: {wu['plain']} after one first inference")
    notes = doc.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    m = doc["machine"]
    lines += ["", "## Command", "", "```", doc["command"], "```", "", "## Machine", "", "`lscpu | head`:", "", "```"]
    lines += m["lscpu_head"] + ["```", ""]
    lines += [f"- {k}: {v}" for k, v in m.items() if k != "lscpu_head"]
    steals = [(r["label"], r["summary"]["steal_max"]) for r in ok]
    lines += ["", "Steal seen (largest share in any timed window; and over each whole side, process starts "
              "included):", ""]
    lines += [f"- {label}: lab {fmt_pct(s['lab_windows'])}% / plain {fmt_pct(s['plain_windows'])}% "
              f"(whole sides: lab {fmt_pct(s['lab_side'])}% / plain {fmt_pct(s['plain_side'])}%)"
              for label, s in steals]
    lines += ["", f"Total wall time: {doc['wall_s']} s. Every round and repeat is in `lab_vs_raw.json`.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; --quick 1)")
    ap.add_argument("--models", default=None,
                    help=f"comma-separated subset of {','.join(m.key for m in MODELS)} (default all; --quick smoke)")
    ap.add_argument("--quick", action="store_true", help="1 round, smoke only, tiny counts: a smoke test")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder for the JSON and markdown")
    ap.add_argument("--json", type=Path, default=None, help="where to write the JSON (default OUT/lab_vs_raw.json)")
    ap.add_argument("--quiet-gate", type=float, default=None, metavar="S",
                    help="before each side, wait up to S s for a 1 s window with the CPUs < 10%% busy "
                         "(default 60; --quick 0 = no wait)")
    ap.add_argument("--retry-contended", type=int, default=None, metavar="N",
                    help="measure a contended round's pair (both sides) again, up to N times; every try is kept "
                         "in the JSON (default 2; --quick 0)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the lab's data dir, logs and reports here")
    ap.add_argument("--plain-repeat", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.plain_repeat is not None:
        print(json.dumps(plain_repeat(json.loads(args.plain_repeat))))
        return 0

    rounds = args.rounds or (1 if args.quick else 5)
    retries = args.retry_contended if args.retry_contended is not None else (0 if args.quick else 2)
    quiet_gate = args.quiet_gate if args.quiet_gate is not None else (0.0 if args.quick else 60.0)
    keys = (args.models or ("smoke" if args.quick else ",".join(m.key for m in MODELS))).split(",")
    unknown = set(keys) - {m.key for m in MODELS}
    if unknown:
        ap.error(f"unknown model(s) {', '.join(sorted(unknown))}")
    models = [m for m in MODELS if m.key in keys]
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="lab-vs-raw-")) if args.keep is None else args.keep
    tmp.mkdir(parents=True, exist_ok=True)
    suites_dir = tmp / "suites"
    built: list[BenchSuite] = []
    for m in models:
        row: dict[str, Any] = {"key": m.key, "label": m.label, "suite": m.suite, "task": m.task, "status": "ok"}
        try:
            bs = build_suite(m, suites_dir, args.quick)
        except Exception as e:  # a model package that is not installed: the row says so
            row["status"] = f"skipped: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            rows.append(row)
            continue
        built.append(bs)
        row |= {"settings": {**bs.settings, "repeats": REPEATS, "seed": SEED}, "model": bs.pins["model"],
                "dataset": bs.pins["dataset"], "rounds": []}
        rows.append(row)
    by_key = {r["key"]: r for r in rows}
    lab = Lab(tmp, suites_dir)

    def _terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally below, which stops labd and the agent

    signal.signal(signal.SIGTERM, _terminate)
    try:
        lab.start()
        print(f"[lab_vs_raw] labd {lab.addr}, agent {DEVICE}; {rounds} rounds x {len(built)} models "
              f"({', '.join(b.model.key for b in built)}); work dir {tmp}", file=sys.stderr)
        for rnd in range(1, rounds + 1):
            order = "AB" if rnd % 2 else "BA"
            for bs in built:
                row = by_key[bs.model.key]
                tries: list[dict[str, Any]] = []
                while True:
                    r = measure_pair(lab, bs, rnd, len(tries) + 1, order, quiet_gate)
                    print("  ".join(f"{h}={v}" for h, v in zip(ROUND_HEADERS, round_row(bs.model.key, r),
                                                                strict=True)) + f"  try={r['try']}", flush=True)
                    if not r["contended"] or len(tries) >= retries:
                        break
                    tries.append(r)
                r["contended_tries"] = tries  # the pairs measured again because other work shared the CPUs
                row["rounds"].append(r)
    finally:
        lab.stop()
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    for row in rows:
        if row["status"] == "ok":
            row["summary"] = summarise(row["rounds"])

    doc = {
        "bench": "lab_vs_raw", "quick": args.quick, "command": command_line(),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "target": {"ratio": TARGET, "tolerance": TOLERANCE,
                   "statistic": "median over rounds of lab p50 / plain p50 (each side: median repeat by p50 of "
                                f"{REPEATS} fresh-process repeats, nearest-rank percentiles)"},
        "order": "rounds alternate: odd rounds lab (A) then plain (B), even rounds B then A; models inside rounds",
        "plain_session_options": {"intra_op_threads": "len(os.sched_getaffinity(0))", "inter_op_threads": 0,
                                  "execution_mode": "ORT_SEQUENTIAL", "session.intra_op.allow_spinning": "1",
                                  "graph_optimization_level": "ORT_ENABLE_ALL", "providers": ["CPUExecutionProvider"]},
        "machine": machine_info(), "models": rows,
    }
    ok = [r for r in rows if r["status"] == "ok"]
    doc["within_target_all"] = all(r["summary"]["within_target_p50"] for r in ok) if ok else None
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.json or args.out / "lab_vs_raw.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "lab_vs_raw.md").write_text(markdown(doc))
    print_table("Every round (ratio = lab / plain)", ROUND_HEADERS,
                [round_row(r["label"], x) for r in ok for x in r["rounds"]])
    print_table(f"Per model: median ratio over rounds (target {TARGET:.2f} ± {TOLERANCE:.2f})", SUMMARY_HEADERS,
                [summary_row(r) for r in rows])
    print_table("Diagnostics (not the target statistic)", DIAG_HEADERS, [diag_row(r) for r in ok])
    print(f"[lab_vs_raw] wrote {json_path} and {args.out / 'lab_vs_raw.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
