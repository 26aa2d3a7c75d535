"""The thermal gate over a fake sysfs and a fake clock: the hottest sensor, an immediate pass, a wait while the
sensor cools, giving up at max_wait_s, no sensor, and cancel."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agents.thermal import NO_SENSOR, ThermalGate, read_c


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


class FakeTime:
    """A clock that only moves when `sleep` is called; each sleep cools the sensor by `cool_per_s`."""

    def __init__(self, sensor: Path, temp_c: float, cool_per_s: float) -> None:
        self.now, self.sensor, self.temp_c, self.cool_per_s = 1000.0, sensor, temp_c, cool_per_s
        self.sleeps: list[float] = []
        self.on_sleep: list[threading.Event] = []
        self.set_temp(temp_c)

    def set_temp(self, c: float) -> None:
        self.temp_c = c
        self.sensor.write_text(f"{round(c * 1000)}\n")

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s
        self.set_temp(self.temp_c - self.cool_per_s * s)
        for event in self.on_sleep:
            event.set()


@pytest.fixture
def sys_(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    write(root, "class/thermal/thermal_zone0/type", "acpitz\n")
    write(root, "class/thermal/thermal_zone0/temp", "30000\n")
    write(root, "class/thermal/thermal_zone1/temp", "-273000\n")  # an absent sensor: left out
    write(root, "class/hwmon/hwmon0/name", "coretemp\n")
    write(root, "class/hwmon/hwmon0/temp1_label", "Package id 0\n")
    write(root, "class/hwmon/hwmon0/temp1_input", "45000\n")
    write(root, "class/hwmon/hwmon0/temp2_input", "40000\n")
    return root


def package(sys_: Path) -> Path:
    return sys_ / "class/hwmon/hwmon0/temp1_input"


def gate(sys_: Path, ft: FakeTime, **kw: float) -> ThermalGate:
    return ThermalGate(sys_, clock=ft.clock, sleep=ft.sleep, **kw)


def test_read_c_hottest_sensor(sys_: Path) -> None:
    assert read_c(sys_) == (45.0, "coretemp/Package id 0")
    package(sys_).write_text("20000\n")
    assert read_c(sys_) == (40.0, "coretemp/temp2_input")


def test_read_c_from_sysfs_root_env(sys_: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTLAB_SYSFS_ROOT", str(sys_))
    assert read_c() == (45.0, "coretemp/Package id 0")


def test_returns_at_once_within_margin(sys_: Path) -> None:
    ft = FakeTime(package(sys_), 45.0, cool_per_s=1.0)
    g = gate(sys_, ft)
    assert g.baseline() == {"available": True, "sensor": "coretemp/Package id 0", "baseline_c": 45.0}
    ft.set_temp(47.5)
    r = g.wait()
    assert r["within_margin"] and r["waited_s"] == 0 and ft.sleeps == []
    assert (r["baseline_c"], r["start_c"], r["end_c"], r["margin_c"]) == (45.0, 47.5, 47.5, 3.0)


def test_waits_until_cooled(sys_: Path) -> None:
    ft = FakeTime(package(sys_), 45.0, cool_per_s=2.0)
    g = gate(sys_, ft, poll_s=0.5)
    g.baseline()
    ft.set_temp(58.0)  # 10 °C above baseline + margin: 5 s at 2 °C/s
    r = g.wait()
    assert r["within_margin"] and r["available"] and not r["cancelled"]
    assert r["waited_s"] == pytest.approx(5.0) and len(ft.sleeps) == 10
    assert r["start_c"] == 58.0 and r["end_c"] == pytest.approx(48.0)


def test_gives_up_at_max_wait(sys_: Path) -> None:
    ft = FakeTime(package(sys_), 45.0, cool_per_s=0.1)
    g = gate(sys_, ft, max_wait_s=2.0, poll_s=0.75)
    g.baseline()
    ft.set_temp(70.0)
    r = g.wait()
    assert not r["within_margin"]
    assert r["waited_s"] == pytest.approx(2.0) and ft.sleeps == pytest.approx([0.75, 0.75, 0.5])
    assert r["end_c"] == pytest.approx(69.8)


def test_no_sensor(tmp_path: Path) -> None:
    ft = FakeTime(tmp_path / "elsewhere", 50.0, cool_per_s=1.0)
    g = gate(tmp_path / "empty-sys", ft)
    assert read_c(tmp_path / "empty-sys") is None
    assert g.baseline() == {"available": False, "reason": NO_SENSOR}
    assert g.wait() == {"available": False, "reason": NO_SENSOR}
    assert ft.sleeps == []


def test_cancel_stops_the_wait(sys_: Path) -> None:
    ft = FakeTime(package(sys_), 45.0, cool_per_s=0.1)
    g = gate(sys_, ft, max_wait_s=60.0, poll_s=0.5)
    g.baseline()
    ft.set_temp(70.0)
    cancel = threading.Event()
    ft.on_sleep.append(cancel)  # cancelled during the first sleep
    r = g.wait(cancel=cancel)
    assert r["cancelled"] and not r["within_margin"] and len(ft.sleeps) == 1
    already = threading.Event()
    already.set()
    assert g.wait(cancel=already)["waited_s"] == 0


def test_cancel_wakes_a_real_wait(sys_: Path) -> None:
    write(sys_, "class/hwmon/hwmon0/temp1_input", "90000\n")
    g = ThermalGate(sys_, max_wait_s=30.0, poll_s=10.0)
    g.baseline_c, g._taken = 45.0, True
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    r = g.wait(cancel=cancel)
    assert r["cancelled"] and r["waited_s"] < 5.0


def test_wait_without_baseline_takes_it_now(sys_: Path) -> None:
    ft = FakeTime(package(sys_), 80.0, cool_per_s=1.0)
    r = gate(sys_, ft).wait()
    assert r["within_margin"] and r["baseline_c"] == 80.0 and ft.sleeps == []
