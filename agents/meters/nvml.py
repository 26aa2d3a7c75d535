"""NVIDIA GPUs through NVML (the optional ``nvidia-ml-py`` package, module ``pynvml``).

Where the GPU supports it (Volta and newer) the meter reads nvmlDeviceGetTotalEnergyConsumption,
a millijoule counter since the driver loaded, as an ENERGY meter. Otherwise it polls
nvmlDeviceGetPowerUsage (milliwatts) as a POWER meter.

NVML is coarse: the driver refreshes the energy counter roughly every 100 ms, and on recent GPUs
the power reading is itself an average over about one second, so it is declared with a 1 s update
period. Short windows are therefore flagged invalid by energy.window_valid (ten update periods).

The agent does not depend on nvidia-ml-py: when it is missing (ImportError) or NVML cannot start,
no NVML meter is offered and the reason is given as a note. nvmlInit/nvmlShutdown are reference
counted by NVML, so each meter holds one initialisation and close() releases it.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from agents.meters.base import ENERGY, POWER, MeterError, MeterInfo

ENERGY_UPDATE_PERIOD_S = 0.1
POWER_UPDATE_PERIOD_S = 1.0
SAMPLE_RATE_HZ = 20.0


def load_pynvml() -> ModuleType | None:
    """The pynvml module, or None when nvidia-ml-py is not installed."""
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


@dataclass(frozen=True)
class GpuProbe:
    """What probing one GPU found: its index, model name and how it can be metered (None: not at all)."""

    index: int
    model: str
    mode: str | None  # ENERGY, POWER or None
    problem: str = ""


class NvmlMeter:
    """One GPU, as an ENERGY meter (joules since the first read) or a POWER meter (watts)."""

    def __init__(self, nvml: ModuleType, index: int, quantity: str) -> None:
        self._nvml = nvml
        nvml.nvmlInit()
        try:
            self._handle: Any = nvml.nvmlDeviceGetHandleByIndex(index)
        except nvml.NVMLError:
            nvml.nvmlShutdown()
            raise
        self._open = True
        self.index = index
        period = ENERGY_UPDATE_PERIOD_S if quantity == ENERGY else POWER_UPDATE_PERIOD_S
        self.info = MeterInfo(name=f"nvml:gpu{index}", kind="nvml", quantity=quantity,
                              sample_rate_hz=SAMPLE_RATE_HZ, update_period_s=period)
        self._first_mj: int | None = None

    def read(self) -> float:
        if not self._open:
            raise MeterError(f"{self.info.name} is closed")
        try:
            if self.info.quantity == POWER:
                return float(self._nvml.nvmlDeviceGetPowerUsage(self._handle)) / 1000.0
            mj = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except self._nvml.NVMLError as exc:
            raise MeterError(f"NVML could not read GPU {self.index}: {exc}") from exc
        if self._first_mj is None:
            self._first_mj = mj
        return (mj - self._first_mj) / 1000.0

    def close(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()


def _model(nvml: ModuleType, handle: Any) -> str:
    try:
        name = nvml.nvmlDeviceGetName(handle)
    except nvml.NVMLError:
        return "unknown GPU"
    return name.decode() if isinstance(name, bytes) else str(name)


def probe(nvml: ModuleType) -> list[GpuProbe]:
    """Every GPU NVML sees and how it can be metered; raises nvml.NVMLError when NVML cannot start."""
    nvml.nvmlInit()
    try:
        found: list[GpuProbe] = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            model = _model(nvml, handle)
            problems: list[str] = []
            mode: str | None = None
            for quantity, call in ((ENERGY, "nvmlDeviceGetTotalEnergyConsumption"),
                                   (POWER, "nvmlDeviceGetPowerUsage")):
                try:
                    getattr(nvml, call)(handle)
                except nvml.NVMLError as exc:
                    problems.append(f"{call}: {exc}")
                    continue
                mode = quantity
                break
            found.append(GpuProbe(index, model, mode, "" if mode else "; ".join(problems)))
        return found
    finally:
        nvml.nvmlShutdown()


def open_nvml(sysfs_root: Path | None = None) -> tuple[list[NvmlMeter], list[str]]:
    """One meter per meterable GPU, and notes about the GPUs (or the library) that cannot be metered.

    The absence of nvidia-ml-py is only noted when the NVIDIA driver is loaded
    (``<sysfs>/module/nvidia`` exists): on a device without an NVIDIA GPU it is not a loss.
    """
    nvml = load_pynvml()
    if nvml is None:
        if sysfs_root is not None and (sysfs_root / "module/nvidia").exists():
            return [], ["nvml: the NVIDIA driver is loaded but nvidia-ml-py (pynvml) is not installed; "
                        "pip install nvidia-ml-py to meter the GPU"]
        return [], []
    try:
        gpus = probe(nvml)
    except nvml.NVMLError as exc:
        return [], [f"nvml: NVML could not start: {exc}"]
    meters: list[NvmlMeter] = []
    notes: list[str] = []
    for gpu in gpus:
        if gpu.mode is None:
            notes.append(f"nvml:gpu{gpu.index} ({gpu.model}): reports neither energy nor power ({gpu.problem})")
            continue
        try:
            meter = NvmlMeter(nvml, gpu.index, gpu.mode)
        except nvml.NVMLError as exc:
            notes.append(f"nvml:gpu{gpu.index} ({gpu.model}): {exc}")
            continue
        try:
            meter.read()
        except MeterError as exc:
            meter.close()
            notes.append(f"nvml:gpu{gpu.index} ({gpu.model}): {exc}")
            continue
        meters.append(meter)
    return meters, notes
