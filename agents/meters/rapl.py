"""Intel/AMD RAPL energy counters through the Linux powercap interface.

Zones live under ``<sysfs>/class/powercap/intel-rapl:N`` (packages, psys) and their subzones
``intel-rapl:N:M`` (core, uncore, dram), either as siblings or nested inside the parent zone.
Each zone has ``energy_uj``, a microjoule counter that wraps at ``max_energy_range_uj``; the
meter accumulates deltas so that read() is a monotonic total in joules since it was opened.
The hardware refreshes the counter about every millisecond. Since the 2020 "Platypus" fixes,
``energy_uj`` is usually readable by root only.
"""

from __future__ import annotations

from pathlib import Path

from agents.meters.base import ENERGY, MeterError, MeterInfo, WrappingCounter, read_int

UPDATE_PERIOD_S = 0.001
SAMPLE_RATE_HZ = 100.0
ACCESS_HINT = "run the agent with read access to energy_uj or use another meter"


def _zone_name(zone: Path) -> str:
    try:
        return (zone / "name").read_text().strip() or zone.name
    except OSError:
        return zone.name


class RaplMeter:
    """One powercap RAPL zone as an ENERGY meter (joules since the first read)."""

    def __init__(self, zone: Path, name: str) -> None:
        self.zone = zone
        self.counter_path = zone / "energy_uj"
        self.info = MeterInfo(name=name, kind="rapl", quantity=ENERGY,
                              sample_rate_hz=SAMPLE_RATE_HZ, update_period_s=UPDATE_PERIOD_S)
        max_range: int | None
        try:
            max_range = read_int(zone / "max_energy_range_uj")
        except MeterError:
            max_range = None
        self._counter = WrappingCounter(max_range)

    def read(self) -> float:
        raw = read_int(self.counter_path, ACCESS_HINT)
        return self._counter.update(raw) / 1e6

    def close(self) -> None:
        """Nothing to release: every read opens the counter file afresh."""


def zones(sysfs_root: Path) -> list[tuple[Path, str]]:
    """Every RAPL zone with an energy_uj file, with its meter name ("rapl:package-0", "rapl:package-0/dram")."""
    base = sysfs_root / "class/powercap"
    dirs = sorted(base.glob("intel-rapl:*")) + sorted(base.glob("intel-rapl:*/intel-rapl:*"))
    seen: set[str] = set()
    found: list[tuple[Path, str]] = []
    for zone in dirs:
        if zone.name in seen or not (zone / "energy_uj").exists():
            continue
        seen.add(zone.name)
        label = _zone_name(zone)
        parts = zone.name.split(":")
        if len(parts) > 2:  # a subzone: qualify it by its package, dram exists once per socket
            parent = base / ":".join(parts[:2])
            label = f"{_zone_name(parent)}/{label}"
        found.append((zone, f"rapl:{label}"))
    names = [n for _, n in found]
    return [(z, n if names.count(n) == 1 else f"{n}@{z.name}") for z, n in found]


def open_rapl(sysfs_root: Path) -> tuple[list[RaplMeter], list[str]]:
    """Readable RAPL meters (each read once to prove it) and notes about the zones that are not."""
    meters: list[RaplMeter] = []
    notes: list[str] = []
    for zone, name in zones(sysfs_root):
        meter = RaplMeter(zone, name)
        try:
            meter.read()
        except MeterError as exc:
            notes.append(f"{name}: {exc}")
            continue
        if meter._counter.max_range is None:
            notes.append(f"{name}: no readable max_energy_range_uj, a counter wrap would stop the meter")
        meters.append(meter)
    return meters, notes
