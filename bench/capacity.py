#!/usr/bin/env python3
"""What a lab of N devices needs, worked out from measured costs (no new measurement: arithmetic on bench/fleet.py's
JSON results).

Inputs, each a bench/fleet.py result file:
  --fleet       one labd, 1,000 agents, SQLite and PostgreSQL rows: labd CPU per task, PostgreSQL's CPU per task,
                samples per task, RSS with the fleet connected
  --big         the same on SQLite with bigger result batches (--samples 4096): with --fleet's SQLite row, the
                marginal labd CPU per sample
  --heartbeats  two idle-only runs, 1,000 agents, two heartbeat intervals (--labd-args '--heartbeat-seconds S'):
                labd CPU per heartbeat, and what is left at idle, counted per connected session
  --many        one labd with many agents (5,000): RSS per connected session

The model (one labd replica per core, on PostgreSQL; every figure per second at the peak):
  labd cores   = tasks/s × (CPU per task + extra samples × CPU per sample) + heartbeats/s × CPU per heartbeat
                 + sessions × idle CPU per session
  replicas     = the larger of labd cores / target utilisation and devices / sessions per replica
  PostgreSQL   = tasks/s × PostgreSQL CPU per task (its per-sample cost is nil: samples go to blobs)
  blobs        = tasks/day × samples per task × 48 bytes (6 int64 columns, the device-signed bytes as received)

    .venv/bin/python bench/capacity.py    # bench/results/capacity.md and .json from the committed results
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BLOB_BYTES_PER_SAMPLE = 48


def _rows(path: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads(path.read_text())
    return {r["db"]: r for r in doc["results"] if not r.get("error")}


def _doc(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def samples_per_task(row: dict[str, Any]) -> float:
    b = row["burst"]
    return float(b["samples_per_s"]) / float(b["tasks_per_s"])


def measured(fleet: Path, big: Path, heartbeats: list[Path], many: Path) -> dict[str, Any]:
    f = _rows(fleet)
    sq, pg = f["sqlite"], f["postgresql"]
    b = _rows(big)["sqlite"]
    per_sample_ms = ((b["burst"]["labd_cpu_ms_per_task"] - sq["burst"]["labd_cpu_ms_per_task"])
                     / (samples_per_task(b) - samples_per_task(sq)))
    idle = sorted((_rows(p)["sqlite"]["idle"] for p in heartbeats), key=lambda i: i["heartbeats_per_s"])
    lo, hi = idle[0], idle[-1]
    # CPU % of one core = base + sessions × per session + heartbeats/s × per heartbeat: the two heartbeat runs (same
    # sessions) give the heartbeat's share, the many-agent run (more sessions) the session's, what is left the base.
    hb_ms = 10 * (hi["labd_cpu_pct"] - lo["labd_cpu_pct"]) / (hi["heartbeats_per_s"] - lo["heartbeats_per_s"])
    sessions = _rows(heartbeats[0])["sqlite"]["agents"]
    m = _rows(many)
    m_row = m.get("sqlite") or m.get("postgresql") or next(iter(m.values()))
    mi = m_row["idle"]
    session_ms_s = (10 * (mi["labd_cpu_pct"] - hi["labd_cpu_pct"]) - (mi["heartbeats_per_s"] - hi["heartbeats_per_s"])
                    * hb_ms) / (m_row["agents"] - sessions)
    base_pct = lo["labd_cpu_pct"] - lo["heartbeats_per_s"] * hb_ms / 10 - sessions * session_ms_s / 10
    mib_per_session = ((m_row["burst"]["labd_rss_peak_mib"] - sq["burst"]["labd_rss_peak_mib"])
                       / (m_row["agents"] - sq["agents"]))
    pg_b = pg["burst"]
    return {
        "labd_ms_per_task": {"sqlite": sq["burst"]["labd_cpu_ms_per_task"], "postgresql": pg_b["labd_cpu_ms_per_task"]},
        "samples_per_task": round(samples_per_task(sq)),
        "postgres_ms_per_task": round(1000 * pg_b["postgres_cpu_cores"] / pg_b["tasks_per_s"], 2),
        "labd_ms_per_extra_sample": round(per_sample_ms, 6),
        "big_samples_per_task": round(samples_per_task(b)),
        "labd_ms_per_heartbeat": round(hb_ms, 4),
        "idle_ms_per_session_s": round(session_ms_s, 5),
        "idle_base_cores": round(base_pct / 100, 4),
        "idle_measured": {"low": lo, "high": hi, "sessions": sessions, "many": mi, "many_sessions": m_row["agents"]},
        "rss_mib_per_session": round(mib_per_session, 4),
        "rss_mib_base": round(sq["burst"]["labd_rss_peak_mib"] - sq["agents"] * mib_per_session, 1),
        "sessions_tested_per_labd": m_row["agents"],
        "session_errors_at_most": m_row["setup"].get("session_errors", 0),
    }


def plan(m: dict[str, Any], devices: int, tasks_per_day: float, window_h: float, samples: int, heartbeat_s: float,
         utilisation: float, sessions_per_replica: int) -> dict[str, Any]:
    tasks_day = devices * tasks_per_day
    peak_tps = tasks_day / (window_h * 3600)
    extra = max(0, samples - m["samples_per_task"])
    task_ms = m["labd_ms_per_task"]["postgresql"] + extra * m["labd_ms_per_extra_sample"]
    hb_s = devices / heartbeat_s
    cores = {"tasks": peak_tps * task_ms / 1000, "heartbeats": hb_s * m["labd_ms_per_heartbeat"] / 1000,
             "sessions": devices * m["idle_ms_per_session_s"] / 1000}
    # Each replica also idles at the base cost: replicas r carry sum(cores) + r × base at most utilisation each.
    base = m["idle_base_cores"]
    replicas = max(math.ceil(sum(cores.values()) / (utilisation - base)), math.ceil(devices / sessions_per_replica))
    cores["replica base"] = replicas * base
    labd_cores = sum(cores.values())
    pg_cores = peak_tps * m["postgres_ms_per_task"] / 1000
    blob_day = tasks_day * samples * BLOB_BYTES_PER_SAMPLE
    return {
        "devices": devices, "tasks_per_device_per_day": tasks_per_day, "window_h": window_h,
        "samples_per_task": samples, "heartbeat_s": heartbeat_s, "utilisation": utilisation,
        "sessions_per_replica": sessions_per_replica,
        "tasks_per_day": tasks_day, "peak_tasks_per_s": round(peak_tps, 1),
        "labd_ms_per_task": round(task_ms, 2), "heartbeats_per_s": round(hb_s),
        "labd_cores_by_part": {k: round(v, 2) for k, v in cores.items()},
        "labd_cores": round(labd_cores, 2), "replicas": replicas,
        "labd_memory_gib": round((replicas * m["rss_mib_base"] + devices * m["rss_mib_per_session"]) / 1024, 1),
        "postgres_cores": round(pg_cores, 2),
        "blob_tb_per_day": round(blob_day / 1e12, 2),
        "ingest_mb_per_s_peak": round(peak_tps * samples * BLOB_BYTES_PER_SAMPLE / 1e6, 1),
    }


def markdown(doc: dict[str, Any]) -> str:
    m = doc["measured"]
    lines = [
        "# What a lab of 100,000 devices needs, from the measured costs",
        "",
        f"Command: `{doc['command']}`  ",
        "Arithmetic only (bench/capacity.py) on these measured results, all from one 2-core VM (AMD EPYC); a bigger "
        "machine's cores are faster, so this errs high:",
        "",
        *[f"- `{k}`: {v}" for k, v in doc["inputs"].items()],
        "",
        "## Measured costs",
        "",
        "| cost | value | from |",
        "|---|---:|---|",
        f"| labd CPU per task, SQLite / PostgreSQL ({m['samples_per_task']:,} samples, 11 batches, a finish) | "
        f"{m['labd_ms_per_task']['sqlite']} / {m['labd_ms_per_task']['postgresql']} ms | burst of 1,000 runs |",
        f"| PostgreSQL's own CPU per task | {m['postgres_ms_per_task']} ms | the same burst, all postgres processes |",
        f"| labd CPU per sample beyond those | {m['labd_ms_per_extra_sample'] * 1000:.3f} µs | SQLite, "
        f"{m['samples_per_task']:,} against {m['big_samples_per_task']:,} samples per task |",
        f"| labd CPU per heartbeat | {m['labd_ms_per_heartbeat']} ms | idle, "
        f"{m['idle_measured']['low']['heartbeats_per_s']:g} against {m['idle_measured']['high']['heartbeats_per_s']:g}"
        f" heartbeats/s, {m['idle_measured']['sessions']:,} sessions |",
        "| labd CPU per connected session, idle, beyond its heartbeats | "
        f"{m['idle_ms_per_session_s'] * 1000:.1f} µs/s | "
        f"idle, {m['idle_measured']['sessions']:,} against {m['idle_measured']['many_sessions']:,} sessions at "
        f"{m['idle_measured']['high']['heartbeats_per_s']:g} and {m['idle_measured']['many']['heartbeats_per_s']:g} "
        "heartbeats/s |",
        f"| labd CPU of a replica idle, with neither | {m['idle_base_cores'] * 100:.1f}% of a core | "
        "what the idle runs leave unexplained (polls, the lease reaper, paced collections, gRPC's own threads) |",
        f"| labd RSS per connected session | {m['rss_mib_per_session'] * 1024:.0f} KiB (base "
        f"{m['rss_mib_base']:.0f} MiB) | 1,000 against {m['sessions_tested_per_labd']:,} agents |",
        "",
        "## Plans",
        "",
        "| devices | tasks/device/day, in a window of | samples per task | heartbeat | peak tasks/s "
        "| labd CPU per task | labd cores: tasks + heartbeats + sessions + replicas' base | labd replicas "
        "| labd memory | PostgreSQL cores | blobs per day | ingest at peak |",
        "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for p in doc["plans"]:
        c = p["labd_cores_by_part"]
        lines.append(
            f"| {p['devices']:,} | {p['tasks_per_device_per_day']:g} in {p['window_h']:g} h | "
            f"{p['samples_per_task']:,} | {p['heartbeat_s']:g} s | {p['peak_tasks_per_s']:,} | "
            f"{p['labd_ms_per_task']} ms | {p['labd_cores']} = {c['tasks']} + {c['heartbeats']} + {c['sessions']} + "
            f"{c['replica base']} | "
            f"{p['replicas']} | {p['labd_memory_gib']} GiB | {p['postgres_cores']} | {p['blob_tb_per_day']} TB | "
            f"{p['ingest_mb_per_s_peak']} MB/s |")
    lines += ["", *doc["notes"], ""]
    return "\n".join(lines)


NOTES = [
    "Replicas: one labd per core at the utilisation given (default 60%), and no more sessions per replica than one "
    "labd was measured to hold with zero session errors; all on one PostgreSQL, behind a TCP load balancer. A "
    "replica's CPU per task was measured with three replicas and two cores under one PostgreSQL "
    "(bench/results/replicas-*.md): it is of the same order as one labd's, the shared database adds no cost per "
    "replica beyond its connections.",
    "Not in the model: the web console and report downloads (certifiers pull bundles from the blobs, streamed); "
    "PostgreSQL's disk (rows per task are a few hundred bytes: the samples are in the blobs); the network between "
    "devices and the lab (the ingest column is the blob rate; protobuf's varints make the wire smaller).",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fleet", type=Path, default=RESULTS / "fleet.json")
    ap.add_argument("--big", type=Path, default=RESULTS / "fleet-samples4096.json")
    ap.add_argument("--heartbeats", type=Path, nargs=2,
                    default=[RESULTS / "fleet-heartbeat-5s.json", RESULTS / "fleet-heartbeat-1s.json"])
    ap.add_argument("--many", type=Path, default=RESULTS / "fleet-5000.json")
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--utilisation", type=float, default=0.6, help="share of each core labd may use (default 0.6)")
    ap.add_argument("--sessions-per-replica", type=int, default=0,
                    help="default: as many as --many connected with zero session errors")
    ap.add_argument("--out", type=Path, default=RESULTS / "capacity")
    args = ap.parse_args()
    try:
        m = measured(args.fleet, args.big, list(args.heartbeats), args.many)
    except (OSError, ValueError, KeyError, ZeroDivisionError) as e:
        sys.exit(f"bench/capacity.py: cannot read the measured costs ({type(e).__name__}: {e}); give bench/fleet.py "
                 "result files: --fleet with sqlite and postgresql rows, --big with a sqlite row of other samples per "
                 "task, --heartbeats two idle-only runs at two heartbeat rates, --many a run with more agents")
    if not m["idle_base_cores"] < args.utilisation <= 1:
        sys.exit(f"bench/capacity.py: --utilisation {args.utilisation:g} must be above a replica's idle base "
                 f"({m['idle_base_cores']:.3f} of a core) and at most 1")
    per_replica = args.sessions_per_replica or m["sessions_tested_per_labd"]
    n = args.devices
    scenarios = [  # (tasks per device per day, window h, samples per task, heartbeat s)
        (20, 24, 100_000, 30),   # a daily regression suite, spread over the day
        (20, 4, 100_000, 30),    # the same suite, every device within a 4-hour window
        (20, 4, 100_000, 5),     # ... with labd's default heartbeat
        (20, 4, 20_000, 30),     # smaller tasks (the 20k-200k samples: the low end)
        (20, 4, 200_000, 30),    # ... the high end
    ]
    plans = [plan(m, n, t, w, s, hb, args.utilisation, per_replica) for t, w, s, hb in scenarios]
    doc = {"command": shlex.join([".venv/bin/python", "bench/capacity.py", *sys.argv[1:]]),
           "inputs": {"fleet": args.fleet.name, "big": args.big.name, "heartbeats": [p.name for p in args.heartbeats],
                      "many": args.many.name},
           "measured": m, "plans": plans, "notes": NOTES}
    text = markdown(doc)
    print(text)
    print(json.dumps({"measured": m, "plans": plans}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
