#!/usr/bin/env python3
"""CPU that labd spends finishing an attempt: labd.handlers.agents.finish_attempt (reading the attempt and its task,
every stored sample, the metrics and the verdict, closing the attempt and its run) on a real lab store.

The store is what the handler tests use (tests/labd/conftest.py's `parts`): a SQLite file in a temporary folder,
its blobs in packs beside it, the smoke suite registered, a fake clock, device health and leases; one device
enrolled with an Ed25519 key. Each attempt is a one-task run of the smoke suite, claimed, and sent exactly what
bench/fleet.py's simulated agent sends (its Payload: per assigned repeat BATCHES signed latency batches × SAMPLES,
then the TEST04 and TEST01 audits and the accuracy run, one batch each; the finish with the exact effective
settings, the provider and the windows), the batches ingested as labd's agent servicer ingests them (SignedBatch.of
from the wire message, ingest_many). Only finish_attempt is timed: this thread's CPU time (time.thread_time) and
wall time per finish, median and p90 over ATTEMPTS finishes after a few warm-up ones; then a cProfile of further
finishes, top 25 by cumulative time.

--src DIR runs labd and pilotlab from a source snapshot instead of this tree (e.g. the code before a change:
`git archive HEAD labd pilotlab | tar -x -C DIR`); --compare REF runs it alternately on this tree with the finish path's
files (FINISH_FILES) as they are at git commit REF, and on this tree, ROUNDS times each, and reports both.

    .venv/bin/python bench/finish_cost.py                        # this tree; prints a table and a JSON line
    .venv/bin/python bench/finish_cost.py --compare HEAD --rounds 3 --out bench/results/finish_cost
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import abcompare  # noqa: E402


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement in this process: ATTEMPTS timed finishes, then PROFILE profiled ones."""
    abcompare.setup_path(args.src)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    import labd
    from bench.fleet import Payload, suite_task
    from evalsuites import builtin_suites_dir, load_suite
    from labd.catalog import register_suite
    from labd.clock import FakeClock
    from labd.handlers import agents as h
    from labd.scheduler.health import DeviceHealth
    from labd.scheduler.leases import Leases
    from labd.scheduler.plan import SubmitOptions, new_run
    from labd.sessions import SessionRegistry
    from labd.state.batches import SignedBatch
    from labd.state.factory import open_store
    from labd.telemetry import LabMetrics
    from pilotlab import domain as d
    from pilotlab.convert import finish_from_pb

    code = str(Path(labd.__file__).resolve().parent.parent)
    payload = Payload(args.batches, args.samples, *suite_task())
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    engineer = d.Principal(d.Role.ENGINEER, "tok-bench")
    with tempfile.TemporaryDirectory(prefix="pilotlab-bench-finish-") as tmp:
        clock = FakeClock()
        store = open_store(f"sqlite:///{tmp}/lab.db", clock)
        suite = load_suite(builtin_suites_dir() / "smoke")
        register_suite(suite, store, Path(tmp) / "artifacts")
        sessions = SessionRegistry()
        metrics = LabMetrics(lambda: len(sessions), store.count_tasks)
        health = DeviceHealth(store, metrics, clock)
        leases = Leases(store, sessions, health, metrics, clock, lease_ms=30_000, max_attempts=3)
        caps = d.Capabilities(os="Linux", arch="aarch64", cpu_cores=4, memory_bytes=8 << 30,
                              providers=["CPUExecutionProvider"], slots=1)
        dev = store.enrol_device("bench-0", "smart-terminal", "eu", {}, caps, public, clock.now_ms())
        opts = SubmitOptions(suite_id=suite.id)

        def ready() -> d.AttemptFinish:
            """A claimed attempt with every batch stored; the finish its agent sends."""
            store.create_run(new_run(suite, [dev], engineer, opts, clock.now_ms()))
            got = leases.claim(dev.id)
            assert got is not None, "the run's task was not claimed"
            att = got[1]
            uploads = []
            for seq in range(len(payload.kinds)):
                r = payload.batch(key, att.id, seq).results
                h.check_shape(r.attempt_id, r.seq, {c: len(getattr(r, c)) for c in h.BATCH_COLUMNS})
                uploads.append((dev.id, public, SignedBatch.of(r.attempt_id, r.seq, r.kind,
                                                               {c: getattr(r, c) for c in h.BATCH_COLUMNS},
                                                               r.signature)))
            assert all(o is True for o in h.ingest_many(store, metrics, clock, uploads))
            return finish_from_pb(payload.finished(att.id).finished)

        def finish(fin: d.AttemptFinish) -> tuple[str | None, bool]:
            return h.finish_attempt(store, leases, health, clock, dev.id, fin)

        cpu_ms: list[float] = []
        wall_ms: list[float] = []
        verdicts: set[str] = set()
        for i in range(args.warmup + args.attempts):
            fin = ready()
            clock.advance(1000)
            w0, c0 = time.perf_counter(), time.thread_time()
            run_id, ack = finish(fin)
            c1, w1 = time.thread_time(), time.perf_counter()
            assert run_id is not None and ack, "the attempt was not finished"
            if i >= args.warmup:
                cpu_ms.append((c1 - c0) * 1e3)
                wall_ms.append((w1 - w0) * 1e3)
            if i == args.warmup:  # what was graded: the same on either code
                run = store.get_run(run_id)
                verdicts.add(f"{run.status.value}/{run.verdict.value if run.verdict else None}")
                task = run.tasks[0]
                graded = {"verdict": task.verdict.value if task.verdict else None,
                          "metrics_sha": _digest(task.metrics), "valid": task.metrics["validity"]["valid"]}
        prof = cProfile.Profile()
        for _ in range(args.profile):
            fin = ready()
            prof.enable()
            finish(fin)
            prof.disable()
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)
        store.close()  # type: ignore[attr-defined]
    return {"code": code, "attempts": args.attempts, "warmup": args.warmup, "batches_per_task": len(payload.kinds),
            "samples_per_task": payload.rows, "cpu_ms": abcompare.stats(cpu_ms),
            "wall_ms": abcompare.stats(wall_ms),
            "run": sorted(verdicts), "graded": graded, "profile_finishes": args.profile,
            "profile": abcompare.trim_profile(buf.getvalue())}


def _digest(metrics: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(metrics, sort_keys=True).encode()).hexdigest()[:16]


# The finish path: what --compare takes from REF, everything else from this tree.
FINISH_FILES = ("labd/handlers/agents.py", "labd/results/attempts.py", "pilotlab/attempt_metrics.py",
                "pilotlab/compliance.py", "pilotlab/stats.py", "labd/state/sql/runs.py", "labd/state/sql/results.py",
                "labd/blobs.py", "labd/state/base.py", "labd/state/rows.py", "labd/scheduler/health.py",
                "labd/state/sql/fleet.py")


def _row(label: str, r: dict[str, Any]) -> str:
    c, w = r["cpu_ms"], r["wall_ms"]
    return (f"| {label} | {r['attempts']} | {c['median']:.3f} | {c['p90']:.3f} | {c['mean']:.3f} | {c['min']:.3f} | "
            f"{w['median']:.3f} | {w['p90']:.3f} | {r['graded']['verdict']} | `{r['graded']['metrics_sha']}` |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--attempts", type=int, default=150, help="timed finishes per measurement (default 150)")
    p.add_argument("--warmup", type=int, default=5, help="untimed finishes first (default 5)")
    p.add_argument("--profile", type=int, default=50, help="finishes profiled after the timed ones (default 50)")
    p.add_argument("--batches", type=int, default=2, help="latency batches per repeat (fleet.py's --batches, 2)")
    p.add_argument("--samples", type=int, default=500, help="samples per latency batch (fleet.py's --samples, 500)")
    p.add_argument("--top", type=int, default=25, help="profile lines shown (default 25)")
    p.add_argument("--sort", default="cumulative", help="profile order (default cumulative; tottime, ...)")
    p.add_argument("--src", default="", help="run labd and pilotlab from this source snapshot")
    p.add_argument("--compare", default="", metavar="REF",
                   help="a git commit: run the finish path's files as they are there (before) and this tree (after) "
                        "alternately")
    p.add_argument("--rounds", type=int, default=2, help="with --compare: measurements of each (default 2)")
    p.add_argument("--note", default="", help="a sentence added to OUT.md under the table (what 'before' holds, ...)")
    p.add_argument("--out", default="", help="writes OUT.md and OUT.json (default: print only)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args)))
        return 0
    command = abcompare.command_line("bench/finish_cost.py", argv)
    child = ["--attempts", str(args.attempts), "--warmup", str(args.warmup), "--profile", str(args.profile),
             "--batches", str(args.batches), "--samples", str(args.samples), "--top", str(args.top), "--sort",
             args.sort]
    alt = abcompare.alternate("bench/finish_cost.py", child, args.compare, args.src, args.rounds, FINISH_FILES)
    labels, runs = alt.labels, alt.runs
    summary = {lb: {"cpu_ms_median": statistics.median(r["cpu_ms"]["median"] for r in rs),
                    "cpu_ms_p90": statistics.median(r["cpu_ms"]["p90"] for r in rs),
                    "wall_ms_median": statistics.median(r["wall_ms"]["median"] for r in rs)}
               for lb, rs in runs.items()}
    first = runs[labels[0]][0]
    machine = abcompare.machine()
    doc: dict[str, Any] = {
        "bench": "finish_cost", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "command": command,
        "commit": alt.commit, "machine": machine, "loadavg": {"before": alt.load_before, "after": alt.load_after},
        "batches_per_task": first["batches_per_task"], "samples_per_task": first["samples_per_task"],
        "before": {"ref": args.compare, "files": alt.changed} if args.compare else None, "summary": summary,
        "runs": alt.runs_without_profiles()}
    if args.compare:
        doc["cpu_median_after_over_before"] = summary["after"]["cpu_ms_median"] / summary["before"]["cpu_ms_median"]
    lines = [
        "# Finishing an attempt: labd CPU per finish_attempt", "",
        f"Date: {doc['date']}  ",
        f"Command: `{command}`  ",
        alt.code_line(),
        alt.machine_line(machine), "",
        f"Each finish: one smoke-suite task of {first['batches_per_task']} signed result batches, "
        f"{first['samples_per_task']:,} samples (bench/fleet.py's Payload, --batches {args.batches} --samples "
        f"{args.samples}), on a SQLite store with blob packs, graded PASS. CPU ms = time.thread_time around "
        f"finish_attempt; {args.attempts} timed finishes after {args.warmup} warm-up ones per measurement"
        + (f", {args.rounds} measurements of each code, alternating" if args.compare else "") + ".", "",
        "| code | finishes | CPU ms median | CPU ms p90 | CPU ms mean | CPU ms min | wall ms median | wall ms p90 | "
        "verdict | metrics sha256 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for lb, rs in runs.items():
        lines += [_row(f"{lb} #{i + 1}" if len(rs) > 1 else lb, r) for i, r in enumerate(rs)]
    if args.compare:
        lines += ["", f"Median CPU per finish: before {summary['before']['cpu_ms_median']:.3f} ms, after "
                      f"{summary['after']['cpu_ms_median']:.3f} ms ({doc['cpu_median_after_over_before']:.2f}x)."]
    if args.note:
        lines += ["", f"Note: {args.note}"]
    for lb in labels:
        lines += ["", f"## cProfile, {lb}: {first['profile_finishes']} finishes, top 25 by cumulative time", "",
                  "```", runs[lb][-1]["profile"], "```"]
    text = "\n".join(lines) + "\n"
    print(text)
    line = {"bench": "finish_cost", "summary": summary, "samples_per_task": first["samples_per_task"]}
    if args.compare:
        line["cpu_median_after_over_before"] = doc["cpu_median_after_over_before"]
    print(json.dumps(line))
    abcompare.write(args.out, text, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
