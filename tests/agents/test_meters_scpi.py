"""The SCPI bench-meter plug-in against a loopback fake meter, and its place in the registry."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agents.meters.base import POWER, MeterError
from agents.meters.registry import best_meter, close_all, open_meters
from agents.meters.scpi import DEFAULT_COMMAND, ScpiMeter


def load_helper(name: str) -> ModuleType:
    """A helper module next to this file, loaded by path (tests/agents is not a package)."""
    key = f"pilotlab_test_helper_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, Path(__file__).with_name(f"{name}.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


fake_scpi = load_helper("fake_scpi")


@pytest.fixture(autouse=True)
def no_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry runs as on a device without nvidia-ml-py, whatever this machine has."""
    monkeypatch.setitem(sys.modules, "pynvml", None)


@pytest.fixture
def server() -> Iterator[Any]:
    with fake_scpi.FakeScpi(watts=12.5) as srv:
        yield srv


def test_url_parsing() -> None:
    m = ScpiMeter.from_url("scpi://10.0.0.5:5025")
    assert (m.host, m.port, m.command, m.timeout_s) == ("10.0.0.5", 5025, DEFAULT_COMMAND, 1.0)
    assert m.info.name == "scpi:10.0.0.5:5025" and m.info.kind == "scpi" and m.info.quantity == POWER
    assert m.info.update_period_s == 0.1 and m.info.sample_rate_hz == 20.0
    m = ScpiMeter.from_url("scpi://meter.lab?query=:MEASure:POWer:AC?&period=0.5&rate=4&timeout=0.3")
    assert (m.host, m.port, m.command, m.timeout_s) == ("meter.lab", 5025, ":MEASure:POWer:AC?", 0.3)
    assert (m.info.update_period_s, m.info.sample_rate_hz) == (0.5, 4.0)
    assert ScpiMeter.from_url("scpi://[::1]:5025").info.name == "scpi:[::1]:5025"


@pytest.mark.parametrize("url, message", [
    ("http://10.0.0.5:5025", "expected scpi://"),
    ("scpi://:5025", "expected scpi://"),
    ("scpi://h:99999", "bad port"),
    ("scpi://h:5025?qeury=X", "unknown parameter(s) qeury"),
    ("scpi://h:5025?period=0", "period must be a positive number"),
    ("scpi://h:5025?rate=fast", "rate must be a positive number of Hz"),
    ("scpi://h:5025?query=", "query must be one non-empty SCPI command"),
])
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ScpiMeter.from_url(url)


def test_reads_watts_with_the_default_and_a_custom_query(server: Any) -> None:
    m = ScpiMeter.from_url(server.url())
    try:
        assert [m.read() for _ in range(3)] == [12.5, 12.5, 12.5]
    finally:
        m.close()
    m = ScpiMeter.from_url(server.url(query="READ?"))
    assert m.read() == 12.5
    m.close()
    m.close()  # twice is fine
    assert server.commands == ["MEAS:POW?"] * 3 + ["READ?"]
    assert server.connections == 2


def test_trace_values_in_order() -> None:
    with fake_scpi.FakeScpi(trace=[1.0, 2.5, 4.0]) as srv:
        m = ScpiMeter.from_url(srv.url())
        assert [m.read() for _ in range(5)] == [1.0, 2.5, 4.0, 4.0, 4.0]
        m.close()


def test_meter_that_stops_answering() -> None:
    with fake_scpi.FakeScpi(watts=3.0, answer_limit=2) as srv:
        m = ScpiMeter.from_url(srv.url(timeout=0.2))
        assert m.read() == 3.0 and m.read() == 3.0
        with pytest.raises(MeterError, match=rf"the bench meter at 127\.0\.0\.1:{srv.port} stopped answering"):
            m.read()
        m.close()


def test_late_answer_is_not_taken_for_the_next_reply() -> None:
    """After a timeout the socket is dropped: the next read asks again on a fresh connection."""
    with fake_scpi.FakeScpi(watts=3.0, answer_limit=1) as srv:
        m = ScpiMeter.from_url(srv.url(timeout=0.2))
        assert m.read() == 3.0
        with pytest.raises(MeterError, match="stopped answering"):
            m.read()
        srv.answer_limit = None
        assert m.read() == 3.0
        assert srv.connections == 2
        m.close()


def test_reconnects_once_after_a_broken_connection() -> None:
    with fake_scpi.FakeScpi(trace=[1.0, 2.0, 3.0], drop_after=2) as srv:
        m = ScpiMeter.from_url(srv.url(timeout=1))
        assert [m.read(), m.read()] == [1.0, 2.0]
        assert m.read() == 3.0  # the fake closed the connection after two answers
        assert srv.connections == 2
        m.close()


def test_unreachable_meter() -> None:
    srv = fake_scpi.FakeScpi().start()
    url = srv.url(timeout=0.5)
    srv.stop()  # nothing listens on that port any more
    m = ScpiMeter.from_url(url)
    with pytest.raises(MeterError, match="cannot be reached"):
        m.read()
    m.close()


@pytest.mark.parametrize("reply, value", [
    ("+1.250000E+01", 12.5), ("7.5 W", 7.5), ("4.0,50.0,0.99", 4.0), ("  3  ", 3.0)])
def test_reply_formats(reply: str, value: float) -> None:
    with fake_scpi.FakeScpi(responder=lambda i, cmd: reply) as srv:
        m = ScpiMeter.from_url(srv.url())
        assert m.read() == value
        m.close()


@pytest.mark.parametrize("reply, message", [
    ("ERR -113", "not a number of watts"), ("", "not a number of watts"),
    ("9.9E37", "overload"), ("nan", "overload")])
def test_bad_replies(reply: str, message: str) -> None:
    with fake_scpi.FakeScpi(responder=lambda i, cmd: reply) as srv:
        m = ScpiMeter.from_url(srv.url())
        with pytest.raises(MeterError, match=message):
            m.read()
        m.close()


def test_registry_prefers_the_bench_meter(tmp_path: Path, server: Any) -> None:
    (tmp_path / "class/powercap/intel-rapl:0").mkdir(parents=True)
    (tmp_path / "class/powercap/intel-rapl:0/name").write_text("package-0\n")
    (tmp_path / "class/powercap/intel-rapl:0/energy_uj").write_text("1000\n")
    (tmp_path / "class/powercap/intel-rapl:0/max_energy_range_uj").write_text("262143328850\n")
    meters, notes = open_meters(tmp_path, server.url())
    try:
        assert [m.info.name for m in meters] == ["rapl:package-0", f"scpi:127.0.0.1:{server.port}"]
        assert notes == []
        best = best_meter(meters)
        assert best is not None and best.info.kind == "scpi"
    finally:
        close_all(meters)


def test_registry_notes_a_silent_or_malformed_bench_meter(tmp_path: Path) -> None:
    with fake_scpi.FakeScpi(answer_limit=0) as srv:
        meters, notes = open_meters(tmp_path, srv.url(timeout=0.2))
    assert meters == []
    assert len(notes) == 1 and notes[0].startswith(f"scpi:127.0.0.1:{srv.port}: the bench meter at")
    assert "stopped answering" in notes[0]
    meters, notes = open_meters(tmp_path, "tcp://nowhere")
    assert meters == [] and notes[0].startswith("scpi: the power meter URL is not usable")
    assert open_meters(tmp_path, None) == ([], [])
