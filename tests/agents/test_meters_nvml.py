"""The NVML meter with nvidia-ml-py absent (as on this machine) and with a fake pynvml module."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

from agents.meters import nvml
from agents.meters.base import ENERGY, POWER, MeterError
from agents.meters.discover import discover
from agents.meters.registry import best_meter, close_all, open_meters
from pilotlab.domain import EnergySensor


class NVMLError(Exception):
    pass


class FakePynvml(ModuleType):
    """pynvml as far as the meter uses it. gpus: (model, energy supported, power supported)."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[tuple[str | bytes, bool, bool]], init_error: str = "") -> None:
        super().__init__("pynvml")
        self.gpus, self.init_error = gpus, init_error
        self.refs = 0
        self.energy_mj = [10_000_000] * len(gpus)
        self.power_mw = 250_000

    def nvmlInit(self) -> None:
        if self.init_error:
            raise NVMLError(self.init_error)
        self.refs += 1

    def nvmlShutdown(self) -> None:
        self.refs -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        assert self.refs > 0, "NVML used before nvmlInit"
        return i

    def nvmlDeviceGetName(self, h: int) -> str | bytes:
        return self.gpus[h][0]

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        if not self.gpus[h][1]:
            raise NVMLError("Not Supported")
        self.energy_mj[h] += 1500
        return self.energy_mj[h]

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        if not self.gpus[h][2]:
            raise NVMLError("Not Supported")
        return self.power_mw


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakePynvml:
    lib = FakePynvml([(b"NVIDIA H100 80GB HBM3", True, True), ("Tesla K80", False, True), ("Old GPU", False, False)])
    monkeypatch.setitem(sys.modules, "pynvml", lib)
    return lib


@pytest.fixture
def sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PILOTLAB_SYSFS_ROOT", str(tmp_path))
    return tmp_path


def test_absent_library_means_no_meter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert nvml.load_pynvml() is None
    assert nvml.open_nvml(tmp_path) == ([], [])  # no NVIDIA driver: nothing lost, nothing said
    (tmp_path / "module/nvidia").mkdir(parents=True)
    meters, notes = nvml.open_nvml(tmp_path)
    assert meters == [] and len(notes) == 1
    assert "the NVIDIA driver is loaded but nvidia-ml-py (pynvml) is not installed" in notes[0]
    assert nvml.open_nvml(None) == ([], [])


def test_energy_counter_power_fallback_and_unmeterable(fake: FakePynvml, tmp_path: Path) -> None:
    meters, notes = nvml.open_nvml(tmp_path)
    assert [(m.info.name, m.info.quantity, m.info.update_period_s) for m in meters] == [
        ("nvml:gpu0", ENERGY, 0.1), ("nvml:gpu1", POWER, 1.0)]
    assert notes == ["nvml:gpu2 (Old GPU): reports neither energy nor power "
                     "(nvmlDeviceGetTotalEnergyConsumption: Not Supported; nvmlDeviceGetPowerUsage: Not Supported)"]
    gpu0, gpu1 = meters
    assert gpu0.read() == pytest.approx(1.5)  # joules since the probe read, from mJ
    assert gpu0.read() == pytest.approx(3.0)
    assert gpu1.read() == 250.0
    assert fake.refs == 2  # one initialisation held per meter
    close_all(meters)
    close_all(meters)
    assert fake.refs == 0
    with pytest.raises(MeterError, match="closed"):
        gpu0.read()


def test_read_error_becomes_meter_error(fake: FakePynvml, tmp_path: Path) -> None:
    (gpu0, gpu1), _ = nvml.open_nvml(tmp_path)
    fake.gpus[1] = ("Tesla K80", False, False)  # the GPU fell off the bus
    with pytest.raises(MeterError, match="NVML could not read GPU 1: Not Supported"):
        gpu1.read()
    close_all([gpu0, gpu1])


def test_nvml_that_cannot_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakePynvml([], init_error="Driver Not Loaded"))
    assert nvml.open_nvml(tmp_path) == ([], ["nvml: NVML could not start: Driver Not Loaded"])


def test_registry_ranks_the_gpu_above_rapl(fake: FakePynvml, tmp_path: Path) -> None:
    (tmp_path / "class/powercap/intel-rapl:0").mkdir(parents=True)
    (tmp_path / "class/powercap/intel-rapl:0/energy_uj").write_text("1\n")
    (tmp_path / "class/powercap/intel-rapl:0/max_energy_range_uj").write_text("100\n")
    meters, notes = open_meters(tmp_path, None)
    assert [m.info.name for m in meters] == ["rapl:intel-rapl:0", "nvml:gpu0", "nvml:gpu1"]
    assert best_meter(meters) is meters[1]
    assert len(notes) == 1 and notes[0].startswith("nvml:gpu2")
    close_all(meters)
    assert fake.refs == 0


def test_discover_reports_nvml(fake: FakePynvml, sysfs: Path) -> None:
    (sysfs / "class/powercap/intel-rapl:0").mkdir(parents=True)
    (sysfs / "class/powercap/intel-rapl:0/energy_uj").write_text("1\n")
    sensors = discover("scpi://10.0.0.5:5025")
    assert [s.kind for s in sensors] == ["rapl", "nvml", "nvml", "nvml", "scpi"]
    assert sensors[1:4] == [
        EnergySensor("nvml", "gpu0 (NVIDIA H100 80GB HBM3, energy counter)", "nvml:gpu0", True),
        EnergySensor("nvml", "gpu1 (Tesla K80, power)", "nvml:gpu1", True),
        EnergySensor("nvml", "gpu2 (Old GPU, unreadable)", "nvml:gpu2", False),
    ]
    assert fake.refs == 0


def test_discover_without_nvml(monkeypatch: pytest.MonkeyPatch, sysfs: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert discover() == []
    monkeypatch.setitem(sys.modules, "pynvml", FakePynvml([], init_error="Driver Not Loaded"))
    assert discover() == []
