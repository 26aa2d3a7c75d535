"""Energy-sensor discovery and the environment fingerprint, over fake sysfs trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agents import environment
from agents.meters.discover import discover, sysfs_root
from pilotlab.domain import EnergySensor


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


@pytest.fixture
def sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "sys"
    root.mkdir()
    monkeypatch.setenv("PILOTLAB_SYSFS_ROOT", str(root))
    return root


def by_kind(sensors: list[EnergySensor], kind: str) -> list[EnergySensor]:
    return [s for s in sensors if s.kind == kind]


def test_sysfs_root_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PILOTLAB_SYSFS_ROOT", raising=False)
    assert sysfs_root() == Path("/sys")


def test_empty_tree(sysfs: Path) -> None:
    assert sysfs_root() == sysfs
    assert discover() == []


def test_rapl_readable_and_unreadable(sysfs: Path) -> None:
    write(sysfs, "class/powercap/intel-rapl:0/name", "package-0\n")
    good = write(sysfs, "class/powercap/intel-rapl:0/energy_uj", "123456789\n")
    write(sysfs, "class/powercap/intel-rapl:1/name", "dram\n")
    bad = unreadable(sysfs, "class/powercap/intel-rapl:1/energy_uj")
    write(sysfs, "class/powercap/intel-rapl:2/name", "psys\n")  # no counter: not a sensor
    write(sysfs, "class/powercap/dtpm/energy_uj", "1\n")  # not RAPL
    rapl = by_kind(discover(), "rapl")
    assert rapl == [
        EnergySensor("rapl", "intel-rapl:0 (package-0)", str(good), True),
        EnergySensor("rapl", "intel-rapl:1 (dram)", str(bad), False),
    ]


def test_rapl_zone_without_name(sysfs: Path) -> None:
    write(sysfs, "class/powercap/intel-rapl:0/energy_uj", "1\n")
    assert discover()[0].name == "intel-rapl:0 (zone)"


def test_hwmon_jetson_rails(sysfs: Path) -> None:
    write(sysfs, "class/hwmon/hwmon0/name", "ina3221\n")
    r1 = write(sysfs, "class/hwmon/hwmon0/power1_input", "4200\n")
    r2 = write(sysfs, "class/hwmon/hwmon0/power2_input", "900\n")
    write(sysfs, "class/hwmon/hwmon0/temp1_input", "40000\n")  # not a power rail
    r3 = write(sysfs, "class/hwmon/hwmon1/in_power0_input", "7\n")  # no name file: the directory name
    hw = by_kind(discover(), "hwmon")
    assert hw == [
        EnergySensor("hwmon", "ina3221/power1_input", str(r1), True),
        EnergySensor("hwmon", "ina3221/power2_input", str(r2), True),
        EnergySensor("hwmon", "hwmon1/in_power0_input", str(r3), True),
    ]


def test_hwmon_unreadable_rail(sysfs: Path) -> None:
    write(sysfs, "class/hwmon/hwmon0/name", "ina3221\n")
    unreadable(sysfs, "class/hwmon/hwmon0/power1_input")
    (s,) = discover()
    assert s.kind == "hwmon" and s.readable is False


def test_power_supply_first_attribute_only(sysfs: Path) -> None:
    p = write(sysfs, "class/power_supply/BAT0/power_now", "5000000\n")
    write(sysfs, "class/power_supply/BAT0/energy_now", "1\n")
    write(sysfs, "class/power_supply/BAT0/online", "1\n")
    e = write(sysfs, "class/power_supply/BAT1/energy_now", "1\n")
    write(sysfs, "class/power_supply/AC/online", "1\n")  # no power attribute: not a sensor
    ps = by_kind(discover(), "power_supply")
    assert ps == [EnergySensor("power_supply", "BAT0/power_now", str(p), True),
                  EnergySensor("power_supply", "BAT1/energy_now", str(e), True)]


def test_scpi_power_meter(sysfs: Path) -> None:
    assert discover(None) == []
    assert discover("scpi://127.0.0.1:5025") == [
        EnergySensor("scpi", "scpi://127.0.0.1:5025", "scpi://127.0.0.1:5025", True)]


def test_all_kinds_in_order(sysfs: Path) -> None:
    write(sysfs, "class/power_supply/BAT0/power_now", "1\n")
    write(sysfs, "class/hwmon/hwmon0/power1_input", "1\n")
    write(sysfs, "class/powercap/intel-rapl:0/energy_uj", "1\n")
    kinds = [s.kind for s in discover("scpi://10.0.0.5:5025")]
    assert kinds == ["rapl", "hwmon", "power_supply", "scpi"]


def test_fingerprint_from_fake_tree(sysfs: Path) -> None:
    write(sysfs, "devices/system/cpu/cpu0/cpufreq/scaling_governor", "performance\n")
    write(sysfs, "devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "1800000\n")
    write(sysfs, "class/thermal/thermal_zone0/type", "cpu-thermal\n")
    write(sysfs, "class/thermal/thermal_zone0/temp", "45500\n")
    write(sysfs, "class/thermal/thermal_zone1/type", "gpu-thermal\n")
    write(sysfs, "class/thermal/thermal_zone1/temp", "-2000\n")
    write(sysfs, "class/thermal/thermal_zone2/temp", "30000\n")  # no type: named after the zone
    write(sysfs, "class/thermal/thermal_zone3/type", "broken\n")
    write(sysfs, "class/thermal/thermal_zone3/temp", "n/a\n")
    write(sysfs, "class/power_supply/BAT0/power_now", "1\n")
    write(sysfs, "class/power_supply/BAT0/online", "1\n")
    write(sysfs, "class/power_supply/AC/online", "1\n")
    write(sysfs, "class/power_supply/USB/online", "0\n")
    env = environment.fingerprint()
    assert env["cpu_governor"] == "performance"
    assert env["cpu0_freq_mhz"] == 1800.0
    assert env["thermal_c"] == {"cpu-thermal": 45.5, "gpu-thermal": -2.0, "thermal_zone2": 30.0}
    assert env["power_source"] == "AC,BAT0"


def test_fingerprint_empty_tree(sysfs: Path) -> None:
    env = environment.fingerprint()
    for key in ("cpu_governor", "cpu0_freq_mhz", "thermal_c", "power_source"):
        assert key not in env
    assert isinstance(env.get("load_avg_1m", 0.0), float)


def test_fingerprint_ignores_bad_freq_and_unreadable_governor(sysfs: Path) -> None:
    unreadable(sysfs, "devices/system/cpu/cpu0/cpufreq/scaling_governor")
    write(sysfs, "devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "<unknown>\n")
    env = environment.fingerprint()
    assert "cpu_governor" not in env and "cpu0_freq_mhz" not in env
