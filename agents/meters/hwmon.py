"""Power rails exposed by hwmon drivers, including the INA3221 monitors of NVIDIA Jetson boards.

Per ``<sysfs>/class/hwmon/hwmonN`` (chip name in ``name``), every rail becomes a POWER meter:

* ``powerK_input`` in microwatts ("hwmon:CHIP/powerK");
* otherwise ``inK_input`` (mV) × ``currK_input`` (mA) for the same K ("hwmon:CHIP/inK*currK"),
  skipped when both have labels that name different rails;
* Jetson (L4T ina3221x): ``in_powerK_input`` in milliwatts ("hwmon:CHIP/in_powerK"), otherwise
  ``in_voltageK_input`` (mV) × ``in_currentK_input`` (mA) ("hwmon:CHIP/in_voltageK*in_currentK").

The INA3221 refreshes every few tens of milliseconds (declared 0.05 s); other chips are declared
at 0.1 s. A chip name used by two hwmon directories (two INA3221 on Jetson AGX) is qualified with
the directory ("hwmon:ina3221@hwmon1/in_power0").
"""

from __future__ import annotations

import re
from pathlib import Path

from agents.meters.base import POWER, MeterError, MeterInfo, SysfsPowerMeter

INA_UPDATE_PERIOD_S = 0.05
OTHER_UPDATE_PERIOD_S = 0.1
ACCESS_HINT = "run the agent with read access to the hwmon rail or use another meter"


def _text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _indices(hw: Path, pattern: str) -> dict[int, Path]:
    rx = re.compile(pattern)
    found: dict[int, Path] = {}
    try:
        entries = list(hw.iterdir())
    except OSError:  # a dangling hwmon link: no rails
        return found
    for p in entries:
        m = rx.fullmatch(p.name)
        if m:
            found[int(m.group(1))] = p
    return found


def _label(hw: Path, *names: str) -> str:
    for n in names:
        if (text := _text(hw / n)):
            return text
    return ""


def rails(hw: Path) -> list[tuple[str, list[tuple[Path, float]], str]]:
    """(rail, factors, label) for every power rail of one hwmon directory, in a stable order."""
    found: list[tuple[str, list[tuple[Path, float]], str]] = []
    power = _indices(hw, r"power(\d+)_input")
    volts, amps = _indices(hw, r"in(\d+)_input"), _indices(hw, r"curr(\d+)_input")
    for k in sorted(set(power) | (set(volts) & set(amps))):
        if k in power:
            found.append((f"power{k}", [(power[k], 1e-6)], _label(hw, f"power{k}_label")))
            continue
        lv, lc = _label(hw, f"in{k}_label"), _label(hw, f"curr{k}_label")
        if lv and lc and lv != lc:
            continue
        found.append((f"in{k}*curr{k}", [(volts[k], 1e-3), (amps[k], 1e-3)], lv or lc))
    jpower = _indices(hw, r"in_power(\d+)_input")
    jvolts, jamps = _indices(hw, r"in_voltage(\d+)_input"), _indices(hw, r"in_current(\d+)_input")
    for k in sorted(set(jpower) | (set(jvolts) & set(jamps))):
        label = _label(hw, f"rail_name_{k}")
        if k in jpower:
            found.append((f"in_power{k}", [(jpower[k], 1e-3)], label))
        else:
            found.append((f"in_voltage{k}*in_current{k}", [(jvolts[k], 1e-3), (jamps[k], 1e-3)], label))
    return found


def meters_in(sysfs_root: Path) -> list[SysfsPowerMeter]:
    """A meter per hwmon power rail (not yet read)."""
    dirs = sorted((sysfs_root / "class/hwmon").glob("hwmon*"))
    chips = [(hw, _text(hw / "name") or hw.name) for hw in dirs]
    names = [c for _, c in chips]
    meters: list[SysfsPowerMeter] = []
    for hw, chip in chips:
        qualified = chip if names.count(chip) == 1 else f"{chip}@{hw.name}"
        ina = chip.lower().startswith("ina")
        period = INA_UPDATE_PERIOD_S if ina else OTHER_UPDATE_PERIOD_S
        for rail, factors, label in rails(hw):
            info = MeterInfo(name=f"hwmon:{qualified}/{rail}", kind="hwmon", quantity=POWER,
                             sample_rate_hz=2.0 / period, update_period_s=period)
            meters.append(SysfsPowerMeter(info, factors, ACCESS_HINT, label))
    return meters


def open_hwmon(sysfs_root: Path) -> tuple[list[SysfsPowerMeter], list[str]]:
    """Readable hwmon rails (each read once to prove it) and notes about the rails that are not."""
    good: list[SysfsPowerMeter] = []
    notes: list[str] = []
    for meter in meters_in(sysfs_root):
        try:
            meter.read()
        except MeterError as exc:
            notes.append(f"{meter.info.name}: {exc}")
            continue
        good.append(meter)
    return good, notes
