"""The meter contract: what a meter is (MeterInfo), how it is read (Meter), how it fails (MeterError).

A meter is one sensor that the sampler reads on the harness clock. It measures either

* ``energy``: a cumulative counter in joules that only ever grows (wrap-around and count-down
  sources are turned into a monotonic value inside the meter), or
* ``power``: the instantaneous draw in watts.

The helpers here read sysfs attribute files and turn every way they fail into a MeterError
whose message says what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

ENERGY = "energy"
POWER = "power"
KINDS = ("rapl", "nvml", "hwmon", "power_supply", "scpi")


class MeterError(Exception):
    """A meter could not be read (unreadable file, vanished sensor, silent bench meter, garbage)."""


@dataclass(frozen=True)
class MeterInfo:
    """What the sampler and the lab need to know about one meter.

    name: unique and stable, e.g. "rapl:package-0", "nvml:gpu0", "hwmon:ina3221/in_power0",
        "power_supply:BAT0", "scpi:127.0.0.1:5025".
    kind: one of KINDS.
    quantity: ENERGY (cumulative joules) or POWER (watts).
    sample_rate_hz: how often the sampler should read it.
    update_period_s: how often the sensor itself refreshes its value; windows shorter than ten
        update periods are not valid measurements (see energy.window_valid).
    """

    name: str
    kind: str
    quantity: str
    sample_rate_hz: float
    update_period_s: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown meter kind {self.kind!r} (expected one of {', '.join(KINDS)})")
        if self.quantity not in (ENERGY, POWER):
            raise ValueError(f"unknown quantity {self.quantity!r} (expected {ENERGY!r} or {POWER!r})")
        if not (self.sample_rate_hz > 0 and self.update_period_s > 0):
            raise ValueError("sample_rate_hz and update_period_s must be positive")


@runtime_checkable
class Meter(Protocol):
    """One readable sensor. read() returns joules (ENERGY meters) or watts (POWER meters)."""

    info: MeterInfo

    def read(self) -> float:
        """The current value; raises MeterError when the sensor cannot be read."""
        ...

    def close(self) -> None:
        """Releases what the meter holds (sockets, library handles). Safe to call twice."""
        ...


def read_int(path: Path, hint: str = "") -> int:
    """The integer in a sysfs attribute file; MeterError (with `hint` appended) when it cannot be read."""
    suffix = f"; {hint}" if hint else ""
    try:
        text = path.read_text()
    except PermissionError as exc:
        raise MeterError(f"{path} is readable by root only{suffix}") from exc
    except IsADirectoryError as exc:
        raise MeterError(f"{path} cannot be read (it is a directory, not a sensor file){suffix}") from exc
    except FileNotFoundError as exc:
        raise MeterError(f"{path} has disappeared (the sensor or its driver went away)") from exc
    except OSError as exc:
        raise MeterError(f"{path} could not be read: {exc.strerror or exc}") from exc
    try:
        return int(text.strip())
    except ValueError as exc:
        raise MeterError(f"{path} does not hold a number: {text.strip()[:40]!r}") from exc


class WrappingCounter:
    """Turns a raw counter that wraps at `max_range` into a monotonic total counted from the first reading.

    Each update adds the delta since the previous raw value; a raw value smaller than the previous
    one means the counter wrapped once (max_range - previous + raw). The caller must update more
    often than the counter can wrap twice (RAPL: minutes at full load; the sampler reads far faster).
    """

    def __init__(self, max_range: int | None) -> None:
        self.max_range = max_range
        self.last: int | None = None
        self.total = 0

    def update(self, raw: int) -> int:
        if self.last is not None:
            delta = raw - self.last
            if delta < 0:
                if not self.max_range:
                    raise MeterError(f"the counter went backwards ({self.last} -> {raw}) and has no known wrap range")
                delta += self.max_range
            self.total += delta
        self.last = raw
        return self.total


class SysfsPowerMeter:
    """A POWER meter computed from sysfs attribute files: the product of each file's integer × its scale.

    One factor for a direct power reading (power1_input µW: scale 1e-6), two for voltage × current
    (in1_input mV × curr1_input mA: 1e-3 × 1e-3). The magnitude is returned: drivers disagree on
    the sign of a discharging or reverse current.
    """

    def __init__(self, info: MeterInfo, factors: list[tuple[Path, float]], hint: str = "", label: str = "") -> None:
        if info.quantity != POWER:
            raise ValueError("SysfsPowerMeter measures power")
        self.info = info
        self.factors = factors
        self.hint = hint
        self.label = label

    def read(self) -> float:
        watts = 1.0
        for path, scale in self.factors:
            watts *= read_int(path, self.hint) * scale
        return abs(watts)

    def close(self) -> None:
        """Nothing to release: every read opens the attribute files afresh."""
