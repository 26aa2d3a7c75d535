"""An environment fingerprint taken around each task: CPU governor and frequency, instruction-set features,
temperatures, load, memory."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from agents.cpuinfo import cpu_flags, proc_root
from agents.meters.discover import sysfs_root


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def fingerprint() -> dict[str, Any]:
    root = sysfs_root()
    env: dict[str, Any] = {}
    cpu0 = root / "devices/system/cpu/cpu0/cpufreq"
    if (gov := _read(cpu0 / "scaling_governor")) is not None:
        env["cpu_governor"] = gov
    if (freq := _read(cpu0 / "scaling_cur_freq")) is not None and freq.isdigit():
        env["cpu0_freq_mhz"] = int(freq) / 1000
    if flags := cpu_flags():
        env["cpu_flags"] = flags  # a migrated VM or a changed BIOS setting shows here as before != after
    temps = {}
    for zone in sorted((root / "class/thermal").glob("thermal_zone*")):
        t = _read(zone / "temp")
        if t is not None and t.lstrip("-").isdigit():
            temps[_read(zone / "type") or zone.name] = int(t) / 1000
    if temps:
        env["thermal_c"] = temps
    with contextlib.suppress(OSError):  # no load average on this OS
        env["load_avg_1m"] = round(os.getloadavg()[0], 2)
    meminfo = _read(proc_root() / "meminfo")
    if meminfo:
        for line in meminfo.splitlines():
            if line.startswith("MemAvailable:"):
                env["mem_available_mb"] = int(line.split()[1]) // 1024
    supplies = [p.name for p in (root / "class/power_supply").glob("*") if _read(p / "online") == "1"]
    if supplies:
        env["power_source"] = ",".join(sorted(supplies))
    return env
