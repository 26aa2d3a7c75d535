"""A thermal gate between timed repeats: waits until the hottest sensor is back near its idle temperature."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.meters.discover import sysfs_root

NO_SENSOR = "no thermal sensor in sysfs (thermal_zone*/temp, hwmon temp*_input)"
_PLAUSIBLE_C = (-40.0, 150.0)  # absent sensors report 0, -273 or 255 °C and the like; they are left out


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _celsius(path: Path) -> float | None:
    text = _read(path)
    if text is None or not text.lstrip("-").isdigit():
        return None
    c = int(text) / 1000
    return c if _PLAUSIBLE_C[0] < c < _PLAUSIBLE_C[1] else None


def sensors(root: Path | None = None) -> dict[str, float]:
    """Every readable temperature sensor in °C by name: "thermal_zone0 (x86_pkg_temp)", "coretemp/Core 0"."""
    root = sysfs_root() if root is None else root
    found: dict[str, float] = {}
    for zone in sorted((root / "class/thermal").glob("thermal_zone*")):
        if (c := _celsius(zone / "temp")) is not None:
            kind = _read(zone / "type")
            found[f"{zone.name} ({kind})" if kind else zone.name] = c
    for hw in sorted((root / "class/hwmon").glob("hwmon*")):
        chip = _read(hw / "name") or hw.name
        for inp in sorted(hw.glob("temp*_input")):
            if (c := _celsius(inp)) is not None:
                label = _read(hw / inp.name.replace("_input", "_label")) or inp.name
                found[f"{chip}/{label}"] = c
    return found


def read_c(root: Path | None = None) -> tuple[float, str] | None:
    """The hottest sensor's temperature in °C and its name; None where sysfs has no readable sensor."""
    found = sensors(root)
    if not found:
        return None
    name = max(found, key=lambda k: found[k])
    return found[name], name


class ThermalGate:
    """baseline() once at idle, then wait() before each timed repeat; the clock and sleep are injectable for tests."""

    def __init__(self, root: Path | None = None, margin_c: float = 3.0, max_wait_s: float = 60.0,
                 poll_s: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.root = sysfs_root() if root is None else root
        self.margin_c, self.max_wait_s, self.poll_s = margin_c, max_wait_s, poll_s
        self._clock, self._sleep = clock, sleep
        self.baseline_c: float | None = None
        self._taken = False

    def baseline(self) -> dict[str, Any]:
        """Records the idle temperature of the hottest sensor."""
        self._taken = True
        now = read_c(self.root)
        if now is None:
            self.baseline_c = None
            return {"available": False, "reason": NO_SENSOR}
        self.baseline_c = now[0]
        return {"available": True, "sensor": now[1], "baseline_c": now[0]}

    def wait(self, cancel: threading.Event | None = None) -> dict[str, Any]:
        """Polls until within margin_c of the baseline, max_wait_s has passed or `cancel` is set.

        Without an earlier baseline() it takes the baseline now, and so returns at once.
        """
        if not self._taken:
            self.baseline()
        now = read_c(self.root)
        if self.baseline_c is None or now is None:
            return {"available": False, "reason": NO_SENSOR}
        limit = self.baseline_c + self.margin_c
        start_c, start_t = now[0], self._clock()
        cancelled = False
        while now is not None and now[0] > limit:
            left = self.max_wait_s - (self._clock() - start_t)
            if cancelled := cancel is not None and cancel.is_set():
                break
            if left <= 0:
                break
            if cancel is not None and self._sleep is time.sleep:
                cancel.wait(min(self.poll_s, left))  # a real wait wakes as soon as cancel is set
            else:
                self._sleep(min(self.poll_s, left))
            now = read_c(self.root)  # None only if the sensor vanished while we waited
        end_c = now[0] if now is not None else None
        return {"available": True, "sensor": now[1] if now is not None else None, "baseline_c": self.baseline_c,
                "start_c": start_c, "end_c": end_c, "waited_s": round(self._clock() - start_t, 3),
                "within_margin": end_c is not None and end_c <= limit, "margin_c": self.margin_c,
                "cancelled": cancelled}
