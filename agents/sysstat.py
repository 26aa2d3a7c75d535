"""The machine's state around one timed window: CPU time shares (steal, iowait, others), load, frequency, throttling."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

from agents.cpuinfo import proc_root
from agents.meters.discover import sysfs_root

# /proc/stat cpu fields, in order; guest and guest_nice are already counted in user and nice, so they are left out.
FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_BUSY = (0, 1, 2, 5, 6)  # user nice system irq softirq: time some process (or the kernel for one) ran
_IDLE, _IOWAIT, _STEAL = 3, 4, 7


@dataclass
class Snapshot:
    t_ns: int
    jiffies: tuple[int, ...] | None = None  # the aggregate "cpu" line, FIELDS order
    per_cpu: dict[int, tuple[int, ...]] = field(default_factory=dict)
    procs_running: int | None = None
    load_1m: float | None = None
    freq_khz: dict[int, int] = field(default_factory=dict)
    governor: dict[int, str] = field(default_factory=dict)
    throttle: dict[str, int] = field(default_factory=dict)  # "core:N" per cpu, "package:P" once per package


def _read(path: os.PathLike[str] | str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _int(path: os.PathLike[str] | str) -> int | None:
    text = _read(path)
    return int(text) if text is not None and text.isdigit() else None


def snapshot(cpus: set[int] | None = None) -> Snapshot:
    """/proc and sysfs now; what the machine does not expose stays None or empty. `cpus` limits the sysfs reads."""
    snap = Snapshot(time.perf_counter_ns())
    for line in (_read(proc_root() / "stat") or "").splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and len(values) >= len(FIELDS) and all(v.isdigit() for v in values):
            counts = tuple(int(v) for v in values[: len(FIELDS)])
            if name == "cpu":
                snap.jiffies = counts
            elif name[3:].isdigit():
                snap.per_cpu[int(name[3:])] = counts
        elif name == "procs_running" and values and values[0].isdigit():
            snap.procs_running = int(values[0])
    load = (_read(proc_root() / "loadavg") or "").split()
    if load:
        with contextlib.suppress(ValueError):
            snap.load_1m = float(load[0])
    base = sysfs_root() / "devices/system/cpu"
    for n in sorted(cpus if cpus is not None else snap.per_cpu or _sysfs_cpus(base)):
        d = base / f"cpu{n}"
        khz = _int(d / "cpufreq/scaling_cur_freq") or _int(d / "cpufreq/cpuinfo_cur_freq")
        if khz:
            snap.freq_khz[n] = khz
        if gov := _read(d / "cpufreq/scaling_governor"):
            snap.governor[n] = gov
        if (core := _int(d / "thermal_throttle/core_throttle_count")) is not None:
            snap.throttle[f"core:{n}"] = core
        if (package := _int(d / "thermal_throttle/package_throttle_count")) is not None:
            pkg = _int(d / "topology/physical_package_id")
            snap.throttle[f"package:{n if pkg is None else pkg}"] = package
    return snap


def _sysfs_cpus(base: os.PathLike[str]) -> list[int]:
    try:
        names = os.listdir(base)
    except OSError:
        return []
    return [int(n[3:]) for n in names if n.startswith("cpu") and n[3:].isdigit()]


def user_hz() -> int:
    """Jiffies per second in /proc/stat (USER_HZ, nearly always 100)."""
    sysconf = getattr(os, "sysconf", None)  # not on Windows
    return int(sysconf("SC_CLK_TCK")) if sysconf is not None else 100


def _freq(snap: Snapshot, cpus: set[int] | None) -> dict[str, float] | None:
    mhz = [khz / 1000 for n, khz in snap.freq_khz.items() if cpus is None or n in cpus]
    if not mhz:
        return None
    return {"min": round(min(mhz), 1), "max": round(max(mhz), 1), "mean": round(sum(mhz) / len(mhz), 1)}


def _governors(snap: Snapshot, cpus: set[int] | None) -> list[str] | None:
    return sorted({g for n, g in snap.governor.items() if cpus is None or n in cpus}) or None


def window(before: Snapshot, after: Snapshot, own_cpu_s: float, cpus: set[int] | None = None) -> dict[str, Any]:
    """What happened on the machine between two snapshots, as a JSON-able dict; `notes` says what was not available."""
    elapsed = max(0.0, (after.t_ns - before.t_ns) / 1e9)
    notes: list[str] = []
    deltas: list[tuple[int, ...]] = []
    if cpus is not None:
        both = sorted(n for n in cpus if n in before.per_cpu and n in after.per_cpu)
        if missing := sorted(cpus - set(both)):
            notes.append(f"cpus {missing} not in /proc/stat: left out of the CPU shares")
        deltas = [tuple(a - b for a, b in zip(after.per_cpu[n], before.per_cpu[n], strict=True)) for n in both]
        n_cpus = len(both)
    elif before.jiffies is not None and after.jiffies is not None:
        deltas = [tuple(a - b for a, b in zip(after.jiffies, before.jiffies, strict=True))]
        n_cpus = len(after.per_cpu) or os.cpu_count() or 1
    else:
        n_cpus = 0
    out: dict[str, Any] = {"elapsed_s": round(elapsed, 6), "n_cpus": n_cpus,
                           "online_cpus": len(after.per_cpu) or os.cpu_count()}
    total = sum(sum(d) for d in deltas)
    if deltas and total > 0:
        busy = sum(d[i] for d in deltas for i in _BUSY)
        out["steal_share"] = round(sum(d[_STEAL] for d in deltas) / total, 6)
        out["iowait_share"] = round(sum(d[_IOWAIT] for d in deltas) / total, 6)
        out["busy_share"] = round(busy / total, 6)
        other_s = max(0.0, busy / user_hz() - own_cpu_s)
        out["other_processes_cpu_share"] = round(min(1.0, other_s / (elapsed * n_cpus)), 6) if elapsed else None
    else:
        out |= {"steal_share": None, "iowait_share": None, "busy_share": None, "other_processes_cpu_share": None}
        notes.append("no CPU time in /proc/stat: CPU shares not recorded")
    out["load_1m_before"], out["load_1m_after"] = before.load_1m, after.load_1m
    if after.load_1m is None:
        notes.append("no /proc/loadavg: load not recorded")
    out["freq_mhz_before"], out["freq_mhz_after"] = _freq(before, cpus), _freq(after, cpus)
    if out["freq_mhz_after"] is None:
        notes.append("no cpufreq in sysfs: frequency not recorded")
    out["governor_before"], out["governor_after"] = _governors(before, cpus), _governors(after, cpus)
    if out["governor_after"] is None:
        notes.append("no cpufreq governor in sysfs: governor not recorded")
    common = before.throttle.keys() & after.throttle.keys()
    if cpus is not None:
        common = {k for k in common if not k.startswith("core:") or int(k[5:]) in cpus}
    out["throttle_events"] = sum(after.throttle[k] - before.throttle[k] for k in common) if common else None
    if not common:
        notes.append("no thermal_throttle counters in sysfs: throttle events not recorded")
    out["procs_running_after"] = after.procs_running
    out["notes"] = notes
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def likely_cause(windows: list[dict[str, Any]]) -> str | None:
    """The most likely cause of unstable repeats in one sentence, when the windows show one; else None."""

    def values(*keys: str) -> list[Any]:
        return [w[k] for w in windows for k in keys if w.get(k) is not None]

    if (events := sum(values("throttle_events"))) > 0:
        return f"The CPU was thermally throttled ({events} throttle events during the repeats)."
    if (steal := max(values("steal_share"), default=0.0)) > 0.02:
        return f"The hypervisor took up to {_pct(steal)} of the CPU time (steal): a noisy neighbour on the host."
    if (other := max(values("other_processes_cpu_share"), default=0.0)) > 0.10:
        return f"Other processes used up to {_pct(other)} of the measured CPUs during the repeats."
    means = [f["mean"] for f in values("freq_mhz_before", "freq_mhz_after")]
    if means and min(means) > 0 and (max(means) - min(means)) / min(means) > 0.10:
        return f"The CPU frequency changed by {_pct((max(means) - min(means)) / min(means))} across the repeats."
    for w in windows:
        load = max((w[k] for k in ("load_1m_before", "load_1m_after") if w.get(k) is not None), default=0.0)
        if (n := w.get("online_cpus") or 0) and load > n:
            return f"The 1-minute load reached {load:.2f} on {n} CPUs: the machine was oversubscribed."
    governors = sorted({g for gs in values("governor_before", "governor_after") for g in gs} - {"performance"})
    if governors:
        return f"The CPU governor is {', '.join(governors)}, not performance, so the frequency may vary."
    return None
