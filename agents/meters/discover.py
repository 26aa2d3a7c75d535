"""Finds energy sensors: powercap/RAPL zones, NVIDIA GPUs (NVML), hwmon power rails, batteries, a SCPI bench meter.

NVML is reported only when the optional nvidia-ml-py (pynvml) is installed and NVML starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from agents.meters import nvml
from pilotlab.domain import EnergySensor


def sysfs_root() -> Path:
    return Path(os.environ.get("PILOTLAB_SYSFS_ROOT", "/sys"))


def _readable(path: Path) -> bool:
    try:
        path.read_text()
        return True
    except OSError:
        return False


def _name(d: Path, default: str) -> str:
    try:
        return (d / "name").read_text().strip() or default
    except OSError:
        return default


def nvml_sensors() -> list[EnergySensor]:
    """One sensor per GPU NVML sees (name "gpu0 (MODEL, energy counter)", path "nvml:gpu0"); [] without NVML."""
    lib = nvml.load_pynvml()
    if lib is None:
        return []
    try:
        gpus = nvml.probe(lib)
    except lib.NVMLError:
        return []
    what = {"energy": "energy counter", "power": "power"}
    return [EnergySensor("nvml", f"gpu{g.index} ({g.model}, {what.get(g.mode or '', 'unreadable')})",
                         f"nvml:gpu{g.index}", g.mode is not None) for g in gpus]


def discover(power_meter: str | None = None) -> list[EnergySensor]:
    root = sysfs_root()
    found: list[EnergySensor] = []
    for zone in sorted((root / "class/powercap").glob("*rapl*")):
        counter = zone / "energy_uj"
        if counter.exists():
            found.append(EnergySensor("rapl", f"{zone.name} ({_name(zone, 'zone')})", str(counter),
                                      _readable(counter)))
    found.extend(nvml_sensors())
    for hw in sorted((root / "class/hwmon").glob("hwmon*")):
        rails = sorted(hw.glob("power*_input")) + sorted(hw.glob("in_power*_input"))
        for rail in rails:
            found.append(EnergySensor("hwmon", f"{_name(hw, hw.name)}/{rail.name}", str(rail), _readable(rail)))
    for ps in sorted((root / "class/power_supply").glob("*")):
        for attr in ("power_now", "energy_now", "current_now"):
            f = ps / attr
            if f.exists():
                found.append(EnergySensor("power_supply", f"{ps.name}/{attr}", str(f), _readable(f)))
                break
    if power_meter:
        found.append(EnergySensor("scpi", power_meter, power_meter, True))
    return found
