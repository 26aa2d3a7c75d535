"""Energy end to end: an agent measuring with a (loopback fake) SCPI bench meter; the report carries
`measured:scpi` figures over exactly the performance window, recomputable offline; a meter that stops answering
mid-run makes the figure invalid, never a number."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from labctl.verify import verify_bundle
from tests.e2e.conftest import Labd, labctl, labctl_json, make_suite, make_token

_spec = importlib.util.spec_from_file_location("fake_scpi", Path(__file__).parents[1] / "agents" / "fake_scpi.py")
assert _spec and _spec.loader
fake_scpi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_scpi)


@pytest.fixture
def lab(tmp_path: Path):  # type: ignore[no-untyped-def]
    suites = make_suite(tmp_path / "suites", "long", min_duration_ms=3000)
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
    inferences = m["latency_ms"]["n"]
    assert e["inferences"] == inferences
    assert e["joules_per_inference"] == pytest.approx(12.5 * e["window_s"] / inferences, rel=1e-9)
    assert e["idle_power_w"] == pytest.approx(12.5) and abs(e["net_joules_per_inference"]) < 1e-9
    assert (out / "samples/digits-single-stream/power_phase-perf.csv").exists()
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
