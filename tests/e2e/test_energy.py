"""Energy end to end: an agent measuring with a (loopback fake) SCPI bench meter; the report carries
`measured:scpi` figures over exactly the performance window, recomputable offline; a meter that stops answering
mid-run makes the figure invalid, never a number."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from labctl.verify import verify_bundle
from tests.e2e.conftest import Labd, labctl, labctl_json, make_suite, make_token

_spec = importlib.util.spec_from_file_location("fake_scpi", Path(__file__).parents[1] / "agents" / "fake_scpi.py")
assert _spec and _spec.loader
fake_scpi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_scpi)


@pytest.fixture
def lab(tmp_path: Path):  # type: ignore[no-untyped-def]
    suites = make_suite(tmp_path / "suites", "long", min_duration_ms=1000, repeats=3)
    lab = Labd(tmp_path / "lab", extra=["--suites", str(suites)]).start()
    yield lab
    lab.stop()


def test_measured_energy_from_bench_meter(lab, start_agent, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with fake_scpi.FakeScpi(watts=12.5) as meter:
        start_agent(lab, "bench", extra=["--power-meter", meter.url()])
        devices = labctl_json(lab, lab.admin_token, "devices", "list")
        assert {"kind": "scpi"}.items() <= devices[0]["capabilities"]["energy_sensors"][0].items()
        eng = make_token(lab, "engineer")
        run = labctl_json(lab, eng, "run", "submit", "--suite", "long", "--device", "bench", "--wait")
        out = tmp_path / "rep"
        assert labctl(lab, eng, "report", "pull", run["id"], "--out", str(out)).returncode == 0
    report = json.loads((out / "report.json").read_text())
    m = report["tasks"][0]["metrics"]
    e = m["energy"]
    assert e["source"] == "measured:scpi" and e["valid"] is True
    assert e["avg_power_w"] == pytest.approx(12.5, rel=1e-9)
    assert e["window_s"] >= 3.0 and e["samples_in_window"] >= 5
    inferences = sum(np.load(f).size  # every timed query of every repeat
                     for f in (out / "samples/digits-single-stream").glob("latency*.npy"))
    assert e["inferences"] == inferences
    assert e["joules_per_inference"] == pytest.approx(12.5 * e["window_s"] / inferences, rel=1e-9)
    assert e["idle_power_w"] == pytest.approx(12.5) and abs(e["net_joules_per_inference"]) < 1e-9
    assert (out / "samples/digits-single-stream/power_phase-perf.npy").exists()
    assert verify_bundle(out, None)[0] == []
    # An edited energy figure does not recompute from the power trace.
    assert any("energy.joules_per_inference" in p for p in _edited(out, tmp_path))


def _edited(out: Path, tmp_path: Path) -> list[str]:
    import shutil

    import rfc8785

    from labctl.verify import recompute

    copy = tmp_path / "edited"
    shutil.copytree(out, copy)
    report = json.loads((copy / "report.json").read_text())
    report["tasks"][0]["metrics"]["energy"]["joules_per_inference"] *= 0.5
    return recompute(copy, json.loads(rfc8785.dumps(report)))


def test_meter_that_stops_answering_gives_invalid_energy(lab, start_agent, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with fake_scpi.FakeScpi(watts=9.0, answer_limit=60) as meter:  # ~40 idle readings, then dies mid-run
        start_agent(lab, "flaky", extra=["--power-meter", meter.url(timeout=0.2)])
        eng = make_token(lab, "engineer")
        run = labctl_json(lab, eng, "run", "submit", "--suite", "long", "--device", "flaky", "--wait")
    shown = labctl_json(lab, eng, "run", "show", run["id"])
    e = shown["tasks"][0]["metrics"]["energy"]
    assert e["source"] == "measured:scpi" and e["valid"] is False
    assert e["joules_per_inference"] is None and e["avg_power_w"] is None
    assert any("stopped answering" in r for r in e["invalid_reasons"])
    # The rest of the task is unaffected: latency and accuracy are there, the run completed.
    assert shown["status"] == "completed" and shown["tasks"][0]["metrics"]["latency_ms"]["n"] >= 300


def _smoke_energy(tmp_path: Path, start_agent, name: str, extra: list[str]) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """The shipped smoke suite on an agent with the given meter: the report's energy block, verified offline."""
    lab = Labd(tmp_path / f"lab-{name}").start()
    try:
        start_agent(lab, name, extra=extra)
        eng = make_token(lab, "engineer")
        run = labctl_json(lab, eng, "run", "submit", "--suite", "smoke", "--device", name, "--wait")
        assert run["status"] == "completed", run
        out = tmp_path / f"rep-{name}"
        assert labctl(lab, eng, "report", "pull", run["id"], "--out", str(out)).returncode == 0
    finally:
        lab.stop()
    assert verify_bundle(out, None)[0] == []
    task = json.loads((out / "report.json").read_text())["tasks"][0]
    return {"energy": task["metrics"]["energy"], "observed": task["observations"]["energy"],
            "windows": task["observations"]["windows"]}


def test_smoke_suite_gets_a_measured_figure_from_a_01s_bench_meter(tmp_path, start_agent) -> None:  # type: ignore[no-untyped-def]
    """The smoke suite asks for 0.5 s timed runs; a 0.1 s meter needs 1 s: the agent lengthens each repeat."""
    with fake_scpi.FakeScpi(watts=7.0) as meter:
        got = _smoke_energy(tmp_path, start_agent, "bench01", ["--power-meter", meter.url()])
    e = got["energy"]
    print("0.1 s SCPI meter, smoke suite:", json.dumps(e), [w["end_ns"] - w["start_ns"] for w in got["windows"]])
    assert e["source"] == "measured:scpi" and e["valid"] is True, e
    assert e["avg_power_w"] == pytest.approx(7.0, rel=1e-9) and e["update_period_s"] == 0.1
    assert got["observed"]["min_window_ms"] >= 1000
    assert len(got["windows"]) == 3  # three repeats, each at least ten meter periods long
    assert all(w["end_ns"] - w["start_ns"] >= 1_000_000_000 for w in got["windows"])
    assert e["window_s"] >= 3.0


def test_smoke_suite_gets_a_measured_figure_from_rapl(tmp_path, start_agent, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A fake powercap tree whose package counter advances at 20 W, as the kernel's does."""
    import os
    import threading
    import time

    zone = tmp_path / "sys/class/powercap/intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    counter = zone / "energy_uj"
    stop = threading.Event()
    t0 = time.monotonic()

    def advance() -> None:
        while True:
            tmp = zone / "energy_uj.tmp"
            tmp.write_text(f"{int((time.monotonic() - t0) * 20e6)}\n")
            os.replace(tmp, counter)  # readers see the old or the new value, never half of one
            if stop.wait(0.001):
                return

    advance_thread = threading.Thread(target=advance, daemon=True)
    counter.write_text("0\n")
    advance_thread.start()
    monkeypatch.setenv("PILOTLAB_SYSFS_ROOT", str(tmp_path / "sys"))
    try:
        got = _smoke_energy(tmp_path, start_agent, "raplbox", [])
    finally:
        stop.set()
        advance_thread.join()
    e = got["energy"]
    print("fake RAPL tree, smoke suite:", json.dumps(e))
    assert e["source"] == "measured:rapl" and e["valid"] is True, e
    assert e["avg_power_w"] == pytest.approx(20.0, rel=0.05)
    assert e["joules_per_inference"] > 0 and len(got["windows"]) == 3
