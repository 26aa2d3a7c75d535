"""Battery fuel gauges under ``<sysfs>/class/power_supply`` (laptops, handhelds, battery-powered boards).

Per battery (``type`` is "Battery", or no ``type`` file):

* a POWER meter "power_supply:BAT0" from ``power_now`` (µW), or else ``current_now`` (µA) ×
  ``voltage_now`` (µV);
* an ENERGY meter "power_supply:BAT0/energy_now" from ``energy_now`` (µWh). That value counts
  DOWN while the battery discharges: the energy used is its decrease, accumulated as a monotonic
  total. A rise means the battery is being charged, and the meter then fails with MeterError.

A battery measures the system only while it powers it, so a battery whose ``status`` is anything
but "Discharging" (Charging, Full, Not charging: the device is on mains power) is not offered, with
a note. Fuel gauges refresh slowly (about once a second for power, several seconds for energy).
"""

from __future__ import annotations

from pathlib import Path

from agents.meters.base import ENERGY, POWER, MeterError, MeterInfo, SysfsPowerMeter, read_int

POWER_UPDATE_PERIOD_S = 1.0
ENERGY_UPDATE_PERIOD_S = 5.0
ACCESS_HINT = "run the agent with read access to the battery attributes or use another meter"
UWH_TO_J = 3.6e-3


def _text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


class BatteryEnergyMeter:
    """``energy_now`` as an ENERGY meter: joules drawn from the battery since the first read."""

    def __init__(self, supply: Path) -> None:
        self.path = supply / "energy_now"
        self.info = MeterInfo(name=f"power_supply:{supply.name}/energy_now", kind="power_supply", quantity=ENERGY,
                              sample_rate_hz=1.0, update_period_s=ENERGY_UPDATE_PERIOD_S)
        self._last: int | None = None
        self._used_uwh = 0

    def read(self) -> float:
        now = read_int(self.path, ACCESS_HINT)
        if self._last is not None:
            if now > self._last:
                raise MeterError(f"{self.path} went up ({self._last} -> {now} µWh): the battery is charging, "
                                 "its energy counter only measures the system while discharging")
            self._used_uwh += self._last - now
        self._last = now
        return self._used_uwh * UWH_TO_J

    def close(self) -> None:
        """Nothing to release."""


def battery_meters(supply: Path) -> list[SysfsPowerMeter | BatteryEnergyMeter]:
    """The meters one battery offers (not yet read), power before energy."""
    found: list[SysfsPowerMeter | BatteryEnergyMeter] = []
    info = MeterInfo(name=f"power_supply:{supply.name}", kind="power_supply", quantity=POWER,
                     sample_rate_hz=2.0 / POWER_UPDATE_PERIOD_S, update_period_s=POWER_UPDATE_PERIOD_S)
    if (supply / "power_now").exists():
        found.append(SysfsPowerMeter(info, [(supply / "power_now", 1e-6)], ACCESS_HINT))
    elif (supply / "current_now").exists() and (supply / "voltage_now").exists():
        found.append(SysfsPowerMeter(info, [(supply / "current_now", 1e-6), (supply / "voltage_now", 1e-6)],
                                     ACCESS_HINT))
    if (supply / "energy_now").exists():
        found.append(BatteryEnergyMeter(supply))
    return found


def open_power_supplies(sysfs_root: Path) -> tuple[list[SysfsPowerMeter | BatteryEnergyMeter], list[str]]:
    """Readable battery meters (each read once to prove it) and notes about those that are not usable."""
    meters: list[SysfsPowerMeter | BatteryEnergyMeter] = []
    notes: list[str] = []
    for supply in sorted((sysfs_root / "class/power_supply").glob("*")):
        kind = _text(supply / "type")
        if kind is not None and kind != "Battery":
            continue
        offered = battery_meters(supply)
        if not offered:
            continue
        status = _text(supply / "status")
        if status is not None and status != "Discharging":
            notes.append(f"power_supply:{supply.name}: the battery is {status!r}, not discharging; it measures "
                         "the system only while running on battery")
            continue
        for meter in offered:
            try:
                meter.read()
            except MeterError as exc:
                notes.append(f"{meter.info.name}: {exc}")
                continue
            meters.append(meter)
    return meters, notes
