"""Opens every usable meter of a device and picks the one whose energy figure a result should carry.

open_meters probes each candidate with one read; what cannot be read is not returned but
explained in a note (a human sentence naming the meter and the fix). best_meter prefers, in
order: an external SCPI bench meter (independent, can be accredited), NVML, a RAPL package zone,
hwmon rails, batteries; other RAPL zones (dram, core, psys) only when nothing else exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from agents.meters import hwmon, nvml, power_supply, rapl
from agents.meters.base import Meter, MeterError
from agents.meters.scpi import ScpiMeter

_RANK = {"scpi": 0, "nvml": 1, "hwmon": 3, "power_supply": 4}


def open_meters(sysfs_root: Path, power_meter_url: str | None) -> tuple[list[Meter], list[str]]:
    """Every usable meter (rapl, nvml, hwmon, power_supply, scpi order) and notes about the unusable ones."""
    meters: list[Meter] = []
    notes: list[str] = []
    openers: list[Callable[[Path], tuple[Sequence[Meter], list[str]]]] = [
        rapl.open_rapl, nvml.open_nvml, hwmon.open_hwmon, power_supply.open_power_supplies]
    for opener in openers:
        found, why = opener(sysfs_root)
        meters.extend(found)
        notes.extend(why)
    if power_meter_url:
        scpi_meter, note = _open_scpi(power_meter_url)
        if scpi_meter is not None:
            meters.append(scpi_meter)
        if note:
            notes.append(note)
    return meters, notes


def _open_scpi(url: str) -> tuple[ScpiMeter | None, str]:
    try:
        meter = ScpiMeter.from_url(url)
    except ValueError as exc:
        return None, f"scpi: the power meter URL is not usable: {exc}"
    try:
        meter.read()
    except MeterError as exc:
        meter.close()
        return None, f"{meter.info.name}: {exc}"
    return meter, ""


def rank(meter: Meter) -> int:
    """Lower is better: scpi 0, nvml 1, rapl package 2, hwmon 3, power_supply 4, other rapl zones 5."""
    info = meter.info
    if info.kind == "rapl":
        zone = info.name.removeprefix("rapl:")
        return 2 if zone.startswith("package") and "/" not in zone else 5
    return _RANK.get(info.kind, 6)


def best_meter(meters: Sequence[Meter]) -> Meter | None:
    """The preferred meter (first of the best rank, so the openers' order breaks ties), or None."""
    if not meters:
        return None
    return min(enumerate(meters), key=lambda im: (rank(im[1]), im[0]))[1]


def close_all(meters: Iterable[Meter]) -> None:
    """Closes every meter, ignoring meters that fail to close."""
    for meter in meters:
        with contextlib.suppress(Exception):
            meter.close()
