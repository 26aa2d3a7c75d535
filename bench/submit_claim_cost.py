#!/usr/bin/env python3
"""CPU that labd spends per submitted run and per claimed task, on a real lab store.

Submit: labd.handlers.runs.submit_run exactly as LabService.SubmitRun calls it (SubmitOptions from the request:
the smoke suite on one device named, as bench/fleet.py's agents submit), i.e. the suite loaded, the targets, the
run planned, the run, its tasks and the run.submit audit entry written (store.create_run).
Claim: what Dispatcher.dispatch_once does to assign a queued task to an idle connected device: Leases.claim
(RunsSql.claim_next_task), stored_artifacts.task_fault (the task's artifacts registered and intact), the
Assignment built (dispatcher.assignment) and the LabMessage the agent servicer sends (pilotlab.convert).

The store is what the handler tests use (tests/labd/conftest.py's `parts`): a SQLite file in a temporary folder
(or, with --db postgresql, a fresh schema on the PostgreSQL test server, as the store-contract tests make), the smoke
suite registered, a fake clock; DEVICES devices enrolled. Each submit is timed (time.thread_time, and wall time),
then each device's task is claimed and timed; median and p90 of each; then a cProfile of PROFILE further submits and
claims, top 25 by cumulative time.

--src DIR runs labd and pilotlab from a source snapshot instead of this tree; --compare REF runs them alternately on
this tree with the submit and claim paths' files (PATH_FILES) as they are at git commit REF, and on this tree,
ROUNDS times each, and reports both.

    .venv/bin/python bench/submit_claim_cost.py                       # this tree; prints a table and a JSON line
    .venv/bin/python bench/submit_claim_cost.py --compare HEAD --out bench/results/submit_claim_cost
    .venv/bin/python bench/submit_claim_cost.py --db postgresql --compare HEAD \
        --out bench/results/submit_claim_cost.postgresql
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import hashlib
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import abcompare  # noqa: E402

PG_URL = os.environ.get("PILOTLAB_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def _store_url(db: str, tmp: str) -> Iterator[str]:
    """A SQLite file in tmp, or a fresh PostgreSQL schema (dropped afterwards), as tests/labd/conftest.py makes."""
    if db == "sqlite":
        yield f"sqlite:///{tmp}/lab.db"
        return
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield PG_URL.replace("postgresql://", "postgresql+psycopg://", 1) + f"?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _sha(x: Any) -> str:
    return hashlib.sha256(json.dumps(x, sort_keys=True, default=str).encode()).hexdigest()[:16]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement in this process: DEVICES timed submits then claims, then PROFILE profiled ones of each."""
    abcompare.setup_path(args.src)
    import labd
    from evalsuites import builtin_suites_dir, load_suite
    from labd.catalog import register_suite
    from labd.clock import FakeClock
    from labd.handlers import runs as h
    from labd.scheduler.dispatcher import assignment
    from labd.scheduler.health import DeviceHealth
    from labd.scheduler.leases import Leases
    from labd.sessions import AgentSession, SessionRegistry
    from labd.state.factory import open_store
    from labd.stored_artifacts import task_fault
    from labd.telemetry import LabMetrics
    from pilotlab import convert
    from pilotlab import domain as d
    from pilotlab import messages as msg

    code = str(Path(labd.__file__).resolve().parent.parent)
    engineer = d.Principal(d.Role.ENGINEER, "tok-bench")
    n = args.devices
    with tempfile.TemporaryDirectory(prefix="pilotlab-bench-submit-") as tmp, _store_url(args.db, tmp) as url:
        clock = FakeClock()
        store = open_store(url, clock)
        suite = load_suite(builtin_suites_dir() / "smoke")
        register_suite(suite, store, Path(tmp) / "artifacts")
        registered = time.monotonic()
        sessions = SessionRegistry()
        metrics = LabMetrics(lambda: len(sessions), store.count_tasks)
        health = DeviceHealth(store, metrics, clock)
        leases = Leases(store, sessions, health, metrics, clock, lease_ms=30_000, max_attempts=3)
        caps = d.Capabilities(os="Linux", arch="aarch64", cpu_cores=4, memory_bytes=8 << 30,
                              providers=["CPUExecutionProvider"], slots=1)
        total = n + args.warmup + args.profile
        devs = [store.enrol_device(f"bench-{i:05d}", suite.device_classes[0], "eu", {}, caps, b"", clock.now_ms())
                for i in range(total)]
        for dev in devs:
            sessions.open(AgentSession(dev.id, dev.name, 1, dev.public_key, running=set()))
        # A lab's artifact files are older than labd.stored_artifacts.RACY_NS (its digest memo does not trust a file
        # changed just now and hashes it again): wait until these are too, as they are in a running lab.
        time.sleep(max(0.0, registered + 2.2 - time.monotonic()))

        def submit(dev: d.Device) -> d.Run:
            # as LabServicer.SubmitRun builds them from a SubmitRunRequest(suite_id=..., device=NAME)
            opts = h.SubmitOptions(suite_id=suite.id, version="", device=dev.name, select="", priority=0,
                                   any_device=False, queue_timeout_s=0.0)
            return h.submit_run(store, sessions, clock, engineer, opts)

        def claim(dev: d.Device) -> Any:
            # as Dispatcher.dispatch_once does for one idle device, down to the message its session sends
            sess = sessions.get(dev.id)
            assert sess is not None
            claimed = leases.claim(dev.id)
            assert claimed is not None, "no task claimed"
            task, att = claimed
            assert not task_fault(store, task.spec), "the smoke suite's artifacts are intact"
            sess.running.add(att.id)
            return convert.lab_event_to_pb(msg.Assign(assignment(task, att)))

        def timed(fn: Callable[[d.Device], Any], ds: list[d.Device]) -> tuple[list[float], list[float], list[Any]]:
            cpu, wall, out = [], [], []
            for dev in ds:
                clock.advance(1)
                w0, c0 = time.perf_counter(), time.thread_time()
                got = fn(dev)
                c1, w1 = time.thread_time(), time.perf_counter()
                cpu.append((c1 - c0) * 1e3)
                wall.append((w1 - w0) * 1e3)
                out.append(got)
            return cpu, wall, out

        warm, main, prof_devs = devs[:args.warmup], devs[args.warmup:args.warmup + n], devs[args.warmup + n:]
        timed(submit, warm)
        timed(claim, warm)
        s_cpu, s_wall, submitted = timed(submit, main)
        c_cpu, c_wall, sent = timed(claim, main)
        # What was written and sent, without the random ids: the same on either code.
        run0 = submitted[0]
        stored = store.get_run(run0.id)
        audit = [e for e in store.list_audit(limit=10_000) if e.action == "run.submit"]  # type: ignore[attr-defined]
        first = sent[0].assignment
        shape = {
            "run": _sha([run0.status.value, run0.suite_id, run0.suite_version, run0.suite_digest, run0.kind,
                         [(t.name, t.status.value, t.device_name, t.spec.to_json() if t.spec else None)
                          for t in run0.tasks]]),
            "stored_equals_returned": _sha([(t.name, t.status.value, t.device_name,
                                              t.spec.to_json() if t.spec else None) for t in stored.tasks])
            == _sha([(t.name, t.status.value, t.device_name, t.spec.to_json() if t.spec else None)
                     for t in run0.tasks]),
            "audit": _sha(sorted((e.action, e.detail, e.actor, e.role) for e in audit)), "audit_entries": len(audit),
            "assignment": _sha([first.task_name, first.model.sha256, first.dataset.sha256, first.scenario,
                                first.settings_json, first.execution_provider, first.accuracy_json,
                                first.golden.sha256, first.conformance_json]),
            "tasks_per_run": len(run0.tasks),
        }
        profiles = {}
        for name, fn in (("submit", submit), ("claim", claim)):
            prof = cProfile.Profile()
            for dev in prof_devs:
                clock.advance(1)
                prof.enable()
                fn(dev)
                prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(args.sort).print_stats(args.top)
            profiles[name] = abcompare.trim_profile(buf.getvalue())
        store.close()  # type: ignore[attr-defined]
    return {"code": code, "db": args.db, "devices": n, "warmup": args.warmup, "profiled": args.profile,
            "submit": {"cpu_ms": abcompare.stats(s_cpu), "wall_ms": abcompare.stats(s_wall)},
            "claim": {"cpu_ms": abcompare.stats(c_cpu), "wall_ms": abcompare.stats(c_wall)}, "shape": shape,
            "profile": profiles}


# The submit and claim paths: what --compare takes from REF, everything else from this tree.
PATH_FILES = ("labd/handlers/runs.py", "labd/state/sql/runs.py", "labd/scheduler/leases.py",
              "labd/scheduler/dispatcher.py", "labd/scheduler/plan.py", "labd/catalog.py",
              "labd/stored_artifacts.py")


def _row(label: str, r: dict[str, Any], path: str) -> str:
    c, w = r[path]["cpu_ms"], r[path]["wall_ms"]
    return (f"| {path} | {label} | {r['devices']} | {c['median']:.3f} | {c['p90']:.3f} | {c['mean']:.3f} | "
            f"{c['min']:.3f} | {w['median']:.3f} | {w['p90']:.3f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--devices", type=int, default=300, help="devices enrolled; timed submits and claims (300)")
    p.add_argument("--warmup", type=int, default=10, help="untimed submits and claims first (default 10)")
    p.add_argument("--profile", type=int, default=100, help="submits and claims profiled afterwards (default 100)")
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite",
                   help=f"the store's backend (postgresql: a fresh schema at $PILOTLAB_PG_URL, {PG_URL})")
    p.add_argument("--top", type=int, default=25, help="profile lines shown (default 25)")
    p.add_argument("--sort", default="cumulative", help="profile order (default cumulative; tottime, ...)")
    p.add_argument("--src", default="", help="run labd and pilotlab from this source snapshot")
    p.add_argument("--compare", default="", metavar="REF",
                   help="a git commit: run the paths' files as they are there (before) and this tree (after) "
                        "alternately")
    p.add_argument("--rounds", type=int, default=2, help="with --compare: measurements of each (default 2)")
    p.add_argument("--out", default="", help="writes OUT.md and OUT.json (default: print only)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args)))
        return 0
    command = abcompare.command_line("bench/submit_claim_cost.py", argv)
    child = ["--devices", str(args.devices), "--warmup", str(args.warmup), "--profile", str(args.profile), "--db",
             args.db, "--top", str(args.top), "--sort", args.sort]
    alt = abcompare.alternate("bench/submit_claim_cost.py", child, args.compare, args.src, args.rounds, PATH_FILES)
    labels, runs = alt.labels, alt.runs
    summary = {lb: {f"{path}_{m}": statistics.median(r[path][unit][stat] for r in rs)
                    for path in ("submit", "claim")
                    for m, unit, stat in (("cpu_ms_median", "cpu_ms", "median"), ("cpu_ms_p90", "cpu_ms", "p90"),
                                          ("wall_ms_median", "wall_ms", "median"))}
               for lb, rs in runs.items()}
    for lb, rs in runs.items():  # the quietest call: steadier than the medians on a shared, busy machine
        for path in ("submit", "claim"):
            summary[lb][f"{path}_cpu_ms_min"] = min(r[path]["cpu_ms"]["min"] for r in rs)
    shapes = {lb: sorted({json.dumps(r["shape"], sort_keys=True) for r in rs}) for lb, rs in runs.items()}
    same_shape = len({s for ss in shapes.values() for s in ss}) == 1
    first = runs[labels[0]][0]
    machine = abcompare.machine()
    doc: dict[str, Any] = {
        "bench": "submit_claim_cost", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command, "commit": alt.commit, "machine": machine,
        "loadavg": {"before": alt.load_before, "after": alt.load_after}, "db": args.db,
        "before": {"ref": args.compare, "files": alt.changed} if args.compare else None, "summary": summary,
        "same_rows_and_messages": same_shape, "shape": first["shape"],
        "runs": alt.runs_without_profiles()}
    if args.compare:
        doc["after_over_before"] = {path: summary["after"][f"{path}_cpu_ms_median"]
                                    / summary["before"][f"{path}_cpu_ms_median"] for path in ("submit", "claim")}
        doc["after_over_before_min"] = {path: summary["after"][f"{path}_cpu_ms_min"]
                                        / summary["before"][f"{path}_cpu_ms_min"] for path in ("submit", "claim")}
    lines = [
        "# Submitting a run and claiming a task: labd CPU per submit_run and per assignment", "",
        f"Date: {doc['date']}  ",
        f"Command: `{command}`  ",
        alt.code_line(),
        alt.machine_line(machine), "",
        f"Store: {args.db}, the smoke suite registered ({first['shape']['tasks_per_run']} task per run), "
        f"{args.devices} devices enrolled and connected. Submit = labd.handlers.runs.submit_run as "
        "LabService.SubmitRun calls it (device=NAME); claim = Leases.claim + task_fault + the Assignment built "
        "and converted to the LabMessage sent, as Dispatcher.dispatch_once does. "
        "CPU ms = time.thread_time around each call; "
        f"{args.devices} timed calls of each after {args.warmup} warm-up ones per measurement"
        + (f", {args.rounds} measurements of each code, alternating" if args.compare else "") + ". "
        f"Rows, audit entries and messages (ids aside) identical across all measurements: {same_shape}.", "",
        "| path | code | calls | CPU ms median | CPU ms p90 | CPU ms mean | CPU ms min | wall ms median | "
        "wall ms p90 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for path in ("submit", "claim"):
        for lb, rs in runs.items():
            lines += [_row(f"{lb} #{i + 1}" if len(rs) > 1 else lb, r, path) for i, r in enumerate(rs)]
    if args.compare:
        for path in ("submit", "claim"):
            lines.append(("" if path == "claim" else "\n") + f"Median CPU per {path}: before "
                         f"{summary['before'][f'{path}_cpu_ms_median']:.3f} ms, after "
                         f"{summary['after'][f'{path}_cpu_ms_median']:.3f} ms "
                         f"({doc['after_over_before'][path]:.2f}x); minimum before "
                         f"{summary['before'][f'{path}_cpu_ms_min']:.3f} ms, after "
                         f"{summary['after'][f'{path}_cpu_ms_min']:.3f} ms "
                         f"({doc['after_over_before_min'][path]:.2f}x).  ")
    for path in ("submit", "claim"):
        for lb in labels:
            lines += ["", f"## cProfile, {path}, {lb}: {first['profiled']} calls, top {args.top} by {args.sort}", "",
                      "```", runs[lb][-1]["profile"][path], "```"]
    text = "\n".join(lines) + "\n"
    print(text)
    line: dict[str, Any] = {"bench": "submit_claim_cost", "db": args.db, "summary": summary,
                            "same_rows_and_messages": same_shape}
    if args.compare:
        line["after_over_before"] = doc["after_over_before"]
        line["after_over_before_min"] = doc["after_over_before_min"]
    print(json.dumps(line))
    abcompare.write(args.out, text, doc)
    return 0 if same_shape else 1


if __name__ == "__main__":
    sys.exit(main())
