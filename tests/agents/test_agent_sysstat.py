"""The machine's state around a timed window from fake /proc and sysfs trees: CPU shares computed from known jiffies,
a per-cpu subset, nulls and notes where sysfs has nothing, the likely cause of unstable repeats; the real machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents import sysstat
from agents.sysstat import Snapshot, likely_cause, snapshot, window

HZ = 100


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def stat_text(agg: list[int], cpus: list[list[int]], running: int = 2) -> str:
    lines = ["cpu  " + " ".join(map(str, agg + [0, 0]))]  # + guest guest_nice, which are not counted
    lines += [f"cpu{i} " + " ".join(map(str, c + [0, 0])) for i, c in enumerate(cpus)]
    lines += ["intr 12345 0 0", "ctxt 999", f"procs_running {running}", "procs_blocked 0"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    proc, sys_ = tmp_path / "proc", tmp_path / "sys"
    proc.mkdir()
    sys_.mkdir()
    monkeypatch.setenv("PILOTLAB_PROC_ROOT", str(proc))
    monkeypatch.setenv("PILOTLAB_SYSFS_ROOT", str(sys_))
    monkeypatch.setattr(sysstat, "user_hz", lambda: HZ)
    return proc, sys_


def cpufreq(sys_: Path, cpu: int, khz: int, gov: str = "performance", throttle: tuple[int, int] | None = None) -> None:
    d = f"devices/system/cpu/cpu{cpu}"
    write(sys_, f"{d}/cpufreq/scaling_cur_freq", f"{khz}\n")
    write(sys_, f"{d}/cpufreq/scaling_governor", f"{gov}\n")
    if throttle is not None:
        write(sys_, f"{d}/thermal_throttle/core_throttle_count", f"{throttle[0]}\n")
        write(sys_, f"{d}/thermal_throttle/package_throttle_count", f"{throttle[1]}\n")
        write(sys_, f"{d}/topology/physical_package_id", "0\n")


def take(proc: Path, t_s: float, agg: list[int], cpus: list[list[int]], load: str = "0.50") -> Snapshot:
    write(proc, "stat", stat_text(agg, cpus))
    write(proc, "loadavg", f"{load} 0.40 0.30 1/234 5678\n")
    snap = snapshot()
    snap.t_ns = int(t_s * 1e9)  # a known elapsed time
    return snap


# Two cpus over 10 s = 2000 jiffies: cpu0 user 600 system 100 idle 250 iowait 20 steal 30 (1000);
# cpu1 user 100 idle 880 iowait 10 softirq 10 (1000). Fields: user nice system idle iowait irq softirq steal.
BEFORE_0, AFTER_0 = [1000, 0, 500, 5000, 100, 0, 0, 50], [1600, 0, 600, 5250, 120, 0, 0, 80]
BEFORE_1, AFTER_1 = [2000, 0, 300, 6000, 40, 0, 20, 0], [2100, 0, 300, 6880, 50, 0, 30, 0]


def add(a: list[int], b: list[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]


def test_shares_from_known_jiffies(roots: tuple[Path, Path]) -> None:
    proc, sys_ = roots
    cpufreq(sys_, 0, 2_000_000, throttle=(5, 7))
    cpufreq(sys_, 1, 3_000_000, throttle=(1, 7))
    before = take(proc, 100.0, add(BEFORE_0, BEFORE_1), [BEFORE_0, BEFORE_1])
    cpufreq(sys_, 0, 2_400_000, throttle=(6, 9))  # one core event, two package events: counted once, not per cpu
    cpufreq(sys_, 1, 3_000_000, throttle=(1, 9))
    after = take(proc, 110.0, add(AFTER_0, AFTER_1), [AFTER_0, AFTER_1], load="1.75")
    w = window(before, after, own_cpu_s=6.0)
    assert w["elapsed_s"] == 10.0 and w["n_cpus"] == 2
    assert w["steal_share"] == pytest.approx(30 / 2000)
    assert w["iowait_share"] == pytest.approx(30 / 2000)
    assert w["busy_share"] == pytest.approx(810 / 2000)
    # busy 700 + 110 jiffies = 8.1 CPU-s, own 6.0 s: others 2.1 CPU-s of 2 cpus × 10 s
    assert w["other_processes_cpu_share"] == pytest.approx(2.1 / 20)
    assert (w["load_1m_before"], w["load_1m_after"]) == (0.5, 1.75)
    assert w["freq_mhz_before"] == {"min": 2000.0, "max": 3000.0, "mean": 2500.0}
    assert w["freq_mhz_after"] == {"min": 2400.0, "max": 3000.0, "mean": 2700.0}
    assert w["governor_before"] == w["governor_after"] == ["performance"]
    assert w["throttle_events"] == 3
    assert w["procs_running_after"] == 2 and w["notes"] == []
    json.dumps(w)


def test_own_cpu_above_busy_gives_zero_others(roots: tuple[Path, Path]) -> None:
    proc, _ = roots
    before = take(proc, 0.0, add(BEFORE_0, BEFORE_1), [BEFORE_0, BEFORE_1])
    after = take(proc, 10.0, add(AFTER_0, AFTER_1), [AFTER_0, AFTER_1])
    assert window(before, after, own_cpu_s=9.0)["other_processes_cpu_share"] == 0.0


def test_per_cpu_subset(roots: tuple[Path, Path]) -> None:
    proc, sys_ = roots
    cpufreq(sys_, 0, 2_000_000)
    cpufreq(sys_, 1, 1_000_000, gov="powersave")
    before = take(proc, 0.0, add(BEFORE_0, BEFORE_1), [BEFORE_0, BEFORE_1])
    after = take(proc, 10.0, add(AFTER_0, AFTER_1), [AFTER_0, AFTER_1])
    w = window(before, after, own_cpu_s=6.5, cpus={0})
    assert w["n_cpus"] == 1
    assert w["steal_share"] == pytest.approx(30 / 1000)
    assert w["iowait_share"] == pytest.approx(20 / 1000)
    assert w["busy_share"] == pytest.approx(700 / 1000)
    assert w["other_processes_cpu_share"] == pytest.approx(0.5 / 10)
    assert w["freq_mhz_after"] == {"min": 2000.0, "max": 2000.0, "mean": 2000.0}
    assert w["governor_after"] == ["performance"]  # cpu1's powersave is not considered
    w1 = window(before, after, own_cpu_s=0.0, cpus={1, 7})
    assert w1["n_cpus"] == 1 and w1["busy_share"] == pytest.approx(110 / 1000)
    assert any("[7]" in n for n in w1["notes"])


def test_missing_cpufreq_and_throttle_give_nulls_and_notes(roots: tuple[Path, Path]) -> None:
    proc, _ = roots
    before = take(proc, 0.0, add(BEFORE_0, BEFORE_1), [BEFORE_0, BEFORE_1])
    after = take(proc, 1.0, add(AFTER_0, AFTER_1), [AFTER_0, AFTER_1])
    w = window(before, after, own_cpu_s=0.0)
    assert w["freq_mhz_before"] is None and w["freq_mhz_after"] is None
    assert w["governor_before"] is None and w["governor_after"] is None
    assert w["throttle_events"] is None
    assert "no cpufreq in sysfs: frequency not recorded" in w["notes"]
    assert any("throttle" in n for n in w["notes"]) and any("governor" in n for n in w["notes"])


def test_nothing_at_all_is_no_exception(roots: tuple[Path, Path]) -> None:
    before, after = snapshot(), snapshot()
    assert before.jiffies is None and before.load_1m is None and before.procs_running is None
    w = window(before, after, own_cpu_s=0.1)
    assert w["steal_share"] is None and w["other_processes_cpu_share"] is None and w["load_1m_after"] is None
    assert len(w["notes"]) == 5
    json.dumps(w)


def test_cpuinfo_cur_freq_fallback(roots: tuple[Path, Path]) -> None:
    _, sys_ = roots
    write(sys_, "devices/system/cpu/cpu3/cpufreq/cpuinfo_cur_freq", "1500000\n")
    snap = snapshot(cpus={3})
    assert snap.freq_khz == {3: 1_500_000} and snap.governor == {}


def calm(**over: object) -> dict[str, object]:
    w: dict[str, object] = {"steal_share": 0.001, "other_processes_cpu_share": 0.02, "throttle_events": 0,
                            "freq_mhz_before": {"min": 2900.0, "max": 3100.0, "mean": 3000.0},
                            "freq_mhz_after": {"min": 2900.0, "max": 3100.0, "mean": 3050.0},
                            "governor_before": ["performance"], "governor_after": ["performance"],
                            "load_1m_before": 1.0, "load_1m_after": 1.2, "online_cpus": 4}
    return w | over


@pytest.mark.parametrize(("over", "words"), [
    ({"throttle_events": 2}, "throttled"),
    ({"steal_share": 0.05}, "steal"),
    ({"other_processes_cpu_share": 0.25}, "Other processes"),
    ({"freq_mhz_after": {"min": 2000.0, "max": 2400.0, "mean": 2200.0}}, "frequency changed"),
    ({"governor_after": ["powersave"]}, "powersave"),
    ({"load_1m_after": 6.5}, "oversubscribed"),
])
def test_likely_cause(over: dict[str, object], words: str) -> None:
    cause = likely_cause([calm(), calm(**over), calm()])
    assert cause is not None and words in cause


def test_likely_cause_none_for_calm_run_and_missing_values() -> None:
    assert likely_cause([calm(), calm(), calm()]) is None
    nulls = dict.fromkeys(calm(), None)
    assert likely_cause([nulls, nulls]) is None
    assert likely_cause([]) is None


def test_real_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PILOTLAB_PROC_ROOT", raising=False)
    monkeypatch.delenv("PILOTLAB_SYSFS_ROOT", raising=False)
    before = snapshot()
    sum(i * i for i in range(200_000))
    after = snapshot()
    w = window(before, after, own_cpu_s=0.01)
    assert w["elapsed_s"] >= 0
    for key in ("steal_share", "iowait_share", "busy_share", "other_processes_cpu_share"):
        assert w[key] is None or 0.0 <= w[key] <= 1.0
    json.dumps(w)
