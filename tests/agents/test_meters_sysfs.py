"""The sysfs meters (RAPL, hwmon/INA3221, batteries) over fake sysfs trees, and the registry's choice."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from agents.meters.base import ENERGY, POWER, MeterError, MeterInfo
from agents.meters.hwmon import open_hwmon
from agents.meters.power_supply import open_power_supplies
from agents.meters.rapl import RaplMeter, open_rapl
from agents.meters.registry import best_meter, open_meters, rank


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def unreadable(root: Path, rel: str) -> Path:
    """A sensor file that exists but cannot be read, also when the tests run as root."""
    p = root / rel
    if os.geteuid() == 0:
        p.mkdir(parents=True)  # read_text on a directory raises IsADirectoryError
    else:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("0\n")
        p.chmod(0)
    return p


def rapl_zone(root: Path, rel: str, name: str, uj: int, max_uj: int | None = 1_000_000) -> Path:
    write(root, f"class/powercap/{rel}/name", f"{name}\n")
    write(root, f"class/powercap/{rel}/energy_uj", f"{uj}\n")
    if max_uj is not None:
        write(root, f"class/powercap/{rel}/max_energy_range_uj", f"{max_uj}\n")
    return root / "class/powercap" / rel


@pytest.fixture(autouse=True)
def no_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry runs as on a device without nvidia-ml-py, whatever this machine has."""
    monkeypatch.setitem(sys.modules, "pynvml", None)


# -- RAPL ------------------------------------------------------------------------------------------
def test_rapl_counter_wrap_is_accumulated(tmp_path: Path) -> None:
    zone = rapl_zone(tmp_path, "intel-rapl:0", "package-0", 999_000)
    (m,), notes = open_rapl(tmp_path)
    assert notes == []
    assert m.info == MeterInfo("rapl:package-0", "rapl", ENERGY, 100.0, 0.001)
    (zone / "energy_uj").write_text("2000\n")  # wrapped at 1_000_000: +3000 µJ
    assert m.read() == pytest.approx(0.003)
    (zone / "energy_uj").write_text("502000\n")
    assert m.read() == pytest.approx(0.503)
    (zone / "energy_uj").write_text("1000\n")  # wrapped again: +499000 µJ
    assert m.read() == pytest.approx(1.002)
    m.close()


def test_rapl_subzones_sibling_and_nested(tmp_path: Path) -> None:
    rapl_zone(tmp_path, "intel-rapl:0", "package-0", 1)
    rapl_zone(tmp_path, "intel-rapl:0:0", "dram", 1)  # as /sys/class/powercap lists it
    rapl_zone(tmp_path, "intel-rapl:0/intel-rapl:0:0", "dram", 1)  # the same zone, nested
    rapl_zone(tmp_path, "intel-rapl:1", "package-1", 1)
    rapl_zone(tmp_path, "intel-rapl:1/intel-rapl:1:0", "dram", 1)  # only nested
    rapl_zone(tmp_path, "intel-rapl:2", "psys", 1)
    write(tmp_path, "class/powercap/intel-rapl:3/name", "core\n")  # no counter
    meters, notes = open_rapl(tmp_path)
    assert [m.info.name for m in meters] == [
        "rapl:package-0", "rapl:package-0/dram", "rapl:package-1", "rapl:psys", "rapl:package-1/dram"]
    assert notes == []


def test_rapl_unreadable_counter(tmp_path: Path) -> None:
    rapl_zone(tmp_path, "intel-rapl:0", "package-0", 1)
    zone = tmp_path / "class/powercap/intel-rapl:1"
    write(tmp_path, "class/powercap/intel-rapl:1/name", "package-1\n")
    unreadable(tmp_path, "class/powercap/intel-rapl:1/energy_uj")
    meters, notes = open_rapl(tmp_path)
    assert [m.info.name for m in meters] == ["rapl:package-0"]
    assert len(notes) == 1 and notes[0].startswith(f"rapl:package-1: {zone / 'energy_uj'}")
    assert notes[0].endswith("; run the agent with read access to energy_uj or use another meter")


def test_rapl_permission_denied_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = rapl_zone(tmp_path, "intel-rapl:0", "package-0", 1)
    real = Path.read_text

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(MeterError) as err:
        RaplMeter(zone, "rapl:package-0").read()
    assert str(err.value) == (f"{zone / 'energy_uj'} is readable by root only; "
                              "run the agent with read access to energy_uj or use another meter")


def test_rapl_failures_mid_run(tmp_path: Path) -> None:
    zone = rapl_zone(tmp_path, "intel-rapl:0", "package-0", 500, max_uj=None)
    (m,), notes = open_rapl(tmp_path)
    assert notes == ["rapl:package-0: no readable max_energy_range_uj, a counter wrap would stop the meter"]
    (zone / "energy_uj").write_text("400\n")
    with pytest.raises(MeterError, match="went backwards"):
        m.read()
    (zone / "energy_uj").write_text("garbage\n")
    with pytest.raises(MeterError, match="does not hold a number"):
        m.read()
    (zone / "energy_uj").unlink()
    with pytest.raises(MeterError, match="has disappeared"):
        m.read()


# -- hwmon -----------------------------------------------------------------------------------------
def test_hwmon_rails_in_both_styles(tmp_path: Path) -> None:
    write(tmp_path, "class/hwmon/hwmon0/name", "ina3221\n")  # mainline driver: in*/curr* per channel
    write(tmp_path, "class/hwmon/hwmon0/in1_input", "5000\n")
    write(tmp_path, "class/hwmon/hwmon0/curr1_input", "800\n")
    write(tmp_path, "class/hwmon/hwmon0/in1_label", "VDD_IN\n")
    write(tmp_path, "class/hwmon/hwmon0/curr1_label", "VDD_IN\n")
    write(tmp_path, "class/hwmon/hwmon0/in2_input", "1000\n")
    write(tmp_path, "class/hwmon/hwmon0/curr2_input", "-250\n")  # a reverse current: magnitude
    write(tmp_path, "class/hwmon/hwmon0/in4_input", "12\n")  # a shunt voltage without current: no rail
    write(tmp_path, "class/hwmon/hwmon1/name", "ina3221\n")  # L4T driver: in_power* in mW
    write(tmp_path, "class/hwmon/hwmon1/in_power0_input", "4200\n")
    write(tmp_path, "class/hwmon/hwmon1/in_voltage0_input", "5000\n")
    write(tmp_path, "class/hwmon/hwmon1/in_current0_input", "840\n")
    write(tmp_path, "class/hwmon/hwmon1/rail_name_0", "VDD_IN\n")
    write(tmp_path, "class/hwmon/hwmon1/in_voltage1_input", "5000\n")  # no in_power1: V × I
    write(tmp_path, "class/hwmon/hwmon1/in_current1_input", "300\n")
    write(tmp_path, "class/hwmon/hwmon2/name", "acpi_power\n")
    write(tmp_path, "class/hwmon/hwmon2/power1_input", "9500000\n")  # µW
    write(tmp_path, "class/hwmon/hwmon2/in1_input", "12000\n")  # has power1: the pair is not used
    write(tmp_path, "class/hwmon/hwmon2/curr1_input", "1\n")
    write(tmp_path, "class/hwmon/hwmon2/in2_input", "12000\n")
    write(tmp_path, "class/hwmon/hwmon2/curr2_input", "500\n")
    write(tmp_path, "class/hwmon/hwmon2/in2_label", "VBUS\n")
    write(tmp_path, "class/hwmon/hwmon2/curr2_label", "IBAT\n")  # different rails: not paired
    meters, notes = open_hwmon(tmp_path)
    got = {m.info.name: m.read() for m in meters}
    assert list(got) == ["hwmon:ina3221@hwmon0/in1*curr1", "hwmon:ina3221@hwmon0/in2*curr2",
                         "hwmon:ina3221@hwmon1/in_power0", "hwmon:ina3221@hwmon1/in_voltage1*in_current1",
                         "hwmon:acpi_power/power1"]
    assert got == pytest.approx({
        "hwmon:ina3221@hwmon0/in1*curr1": 4.0,
        "hwmon:ina3221@hwmon0/in2*curr2": 0.25,
        "hwmon:ina3221@hwmon1/in_power0": 4.2,
        "hwmon:ina3221@hwmon1/in_voltage1*in_current1": 1.5,
        "hwmon:acpi_power/power1": 9.5,
    })
    assert notes == []
    by_name = {m.info.name: m for m in meters}
    assert by_name["hwmon:ina3221@hwmon1/in_power0"].label == "VDD_IN"
    assert by_name["hwmon:ina3221@hwmon0/in1*curr1"].info.update_period_s == 0.05
    assert by_name["hwmon:acpi_power/power1"].info.update_period_s == 0.1
    assert all(m.info.quantity == POWER and m.info.kind == "hwmon" for m in meters)


def test_hwmon_single_jetson_chip_and_unreadable_rail(tmp_path: Path) -> None:
    write(tmp_path, "class/hwmon/hwmon0/name", "ina3221\n")
    write(tmp_path, "class/hwmon/hwmon0/in_power0_input", "7000\n")
    unreadable(tmp_path, "class/hwmon/hwmon0/in_power1_input")
    meters, notes = open_hwmon(tmp_path)
    assert [m.info.name for m in meters] == ["hwmon:ina3221/in_power0"] and meters[0].read() == 7.0
    assert len(notes) == 1 and notes[0].startswith("hwmon:ina3221/in_power1: ")
    assert "run the agent with read access to the hwmon rail" in notes[0]


# -- batteries -------------------------------------------------------------------------------------
def test_battery_power_now_and_current_times_voltage(tmp_path: Path) -> None:
    write(tmp_path, "class/power_supply/BAT0/type", "Battery\n")
    write(tmp_path, "class/power_supply/BAT0/status", "Discharging\n")
    write(tmp_path, "class/power_supply/BAT0/power_now", "7500000\n")  # µW
    write(tmp_path, "class/power_supply/BAT1/status", "Discharging\n")
    write(tmp_path, "class/power_supply/BAT1/current_now", "-1500000\n")  # µA, negative when discharging
    write(tmp_path, "class/power_supply/BAT1/voltage_now", "12000000\n")  # µV
    write(tmp_path, "class/power_supply/AC/type", "Mains\n")
    write(tmp_path, "class/power_supply/AC/online", "0\n")
    meters, notes = open_power_supplies(tmp_path)
    got = {m.info.name: m.read() for m in meters}
    assert got == pytest.approx({"power_supply:BAT0": 7.5, "power_supply:BAT1": 18.0})
    assert notes == [] and all(m.info.quantity == POWER and m.info.update_period_s == 1.0 for m in meters)


def test_battery_energy_now_counts_down(tmp_path: Path) -> None:
    bat = write(tmp_path, "class/power_supply/BAT0/energy_now", "50000000\n").parent  # µWh
    write(tmp_path, "class/power_supply/BAT0/current_now", "1000000\n")
    write(tmp_path, "class/power_supply/BAT0/voltage_now", "11000000\n")
    meters, notes = open_power_supplies(tmp_path)
    assert [m.info.name for m in meters] == ["power_supply:BAT0", "power_supply:BAT0/energy_now"]
    energy = meters[1]
    assert energy.info.quantity == ENERGY and energy.info.update_period_s == 5.0
    (bat / "energy_now").write_text("49999000\n")  # 1000 µWh used = 3.6 J
    assert energy.read() == pytest.approx(3.6)
    (bat / "energy_now").write_text("49999000\n")
    assert energy.read() == pytest.approx(3.6)
    (bat / "energy_now").write_text("49998500\n")
    assert energy.read() == pytest.approx(5.4)
    (bat / "energy_now").write_text("49999500\n")
    with pytest.raises(MeterError, match="went up .* the battery is charging"):
        energy.read()


def test_battery_on_mains_is_noted_not_offered(tmp_path: Path) -> None:
    write(tmp_path, "class/power_supply/BAT0/status", "Charging\n")
    write(tmp_path, "class/power_supply/BAT0/power_now", "20000000\n")
    write(tmp_path, "class/power_supply/BAT1/status", "Full\n")  # nothing to meter: no note either
    meters, notes = open_power_supplies(tmp_path)
    assert meters == []
    assert notes == ["power_supply:BAT0: the battery is 'Charging', not discharging; it measures the system "
                     "only while running on battery"]


# -- registry --------------------------------------------------------------------------------------
class Stub:
    def __init__(self, name: str, kind: str) -> None:
        self.info = MeterInfo(name, kind, POWER, 10.0, 0.1)

    def read(self) -> float:
        return 1.0

    def close(self) -> None:
        pass


def test_best_meter_order() -> None:
    ps, hw = Stub("power_supply:BAT0", "power_supply"), Stub("hwmon:ina3221/in_power0", "hwmon")
    dram, pkg = Stub("rapl:package-0/dram", "rapl"), Stub("rapl:package-0", "rapl")
    gpu, bench = Stub("nvml:gpu0", "nvml"), Stub("scpi:10.0.0.5:5025", "scpi")
    assert [rank(m) for m in (bench, gpu, pkg, hw, ps, dram)] == [0, 1, 2, 3, 4, 5]
    chain = [ps, dram, hw, pkg, gpu, bench]
    for expected in (bench, gpu, pkg, hw, ps, dram):
        assert best_meter(chain) is expected
        chain.remove(expected)
    assert best_meter([]) is None
    first = Stub("rapl:package-1", "rapl")
    assert best_meter([Stub("rapl:psys", "rapl"), first, Stub("rapl:package-0", "rapl")]) is first  # ties: order


def test_open_meters_over_a_whole_tree(tmp_path: Path) -> None:
    rapl_zone(tmp_path, "intel-rapl:0", "package-0", 1)
    rapl_zone(tmp_path, "intel-rapl:0:0", "dram", 1)
    write(tmp_path, "class/powercap/intel-rapl:1/name", "package-1\n")
    unreadable(tmp_path, "class/powercap/intel-rapl:1/energy_uj")
    write(tmp_path, "class/hwmon/hwmon0/name", "ina3221\n")
    write(tmp_path, "class/hwmon/hwmon0/in_power0_input", "7000\n")
    write(tmp_path, "class/power_supply/BAT0/power_now", "1000000\n")
    meters, notes = open_meters(tmp_path, None)
    assert [m.info.name for m in meters] == [
        "rapl:package-0", "rapl:package-0/dram", "hwmon:ina3221/in_power0", "power_supply:BAT0"]
    assert len(notes) == 1 and notes[0].startswith("rapl:package-1: ")
    best = best_meter(meters)
    assert best is not None and best.info.name == "rapl:package-0"
