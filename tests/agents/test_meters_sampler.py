"""The Sampler: background reads on the harness clock, against in-process meters and the fake SCPI meter.

No test sleeps: each waits on a condition ("at least N samples", "an error was recorded").
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from agents.meters.base import ENERGY, POWER, MeterError, MeterInfo
from agents.meters.energy import energy_in_window
from agents.meters.sampler import Sampler
from agents.meters.scpi import ScpiMeter


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


class Counting:
    """An in-process meter: an energy counter that grows by `step` joules per read, or fails on demand."""

    def __init__(self, name: str, rate_hz: float = 1000.0, step: float = 1.0, quantity: str = ENERGY,
                 fail_after: int | None = None, error: Exception | None = None) -> None:
        self.info = MeterInfo(name, "rapl", quantity, rate_hz, 0.001)
        self.step, self.reads, self.fail_after = step, 0, fail_after
        self.error = error or MeterError(f"{name} vanished")
        self.closed = False

    def read(self) -> float:
        if self.fail_after is not None and self.reads >= self.fail_after:
            raise self.error
        self.reads += 1
        return self.reads * self.step

    def close(self) -> None:
        self.closed = True


def test_samples_at_the_harness_clock_and_brackets_the_window() -> None:
    meter = Counting("rapl:package-0", rate_hz=2000.0)
    sampler = Sampler([meter])
    sampler.start()
    start_ns = time.perf_counter_ns()
    assert sampler.wait_for_samples(20, timeout_s=10)
    end_ns = time.perf_counter_ns()
    traces = sampler.stop()
    t, v = traces["rapl:package-0"]
    assert t.dtype == np.int64 and v.dtype == np.float64 and t.size == v.size >= 21
    assert t[0] <= start_ns and t[-1] >= end_ns  # start() and stop() each take a sample
    assert np.all(np.diff(t) > 0)
    assert np.array_equal(v, np.arange(1, v.size + 1, dtype=np.float64))
    assert sampler.errors == {}
    assert sampler.stop()["rapl:package-0"][0].size == t.size  # stopping twice changes nothing
    assert energy_in_window(t, v, ENERGY, int(t[0]), int(t[-1]))["joules"] == v[-1] - v[0]


def test_arrays_grow_past_the_preallocation() -> None:
    sampler = Sampler([Counting("a", rate_hz=5000.0)], expected_duration_s=0.0)
    sampler.start()
    assert sampler.wait_for_samples(100, timeout_s=10)
    t, v = sampler.stop()["a"]
    assert v.size >= 100 and np.array_equal(v, np.arange(1, v.size + 1))
    assert np.all(np.diff(t) > 0)


def test_failing_meter_is_recorded_and_the_others_keep_going() -> None:
    bad = Counting("bad", fail_after=3)
    crashing = Counting("crashing", fail_after=1, error=ZeroDivisionError("division by zero"))
    good = Counting("good")
    sampler = Sampler([bad, crashing, good])
    sampler.start()
    assert sampler.wait_until(lambda s: {"bad", "crashing"} <= set(s.errors), timeout_s=10)
    after_errors = sampler.counts()["good"]
    assert sampler.wait_for_samples(after_errors + 10, timeout_s=10)  # only "good" is still waited on
    traces = sampler.stop()
    assert traces["bad"][1].tolist() == [1.0, 2.0, 3.0]
    assert traces["crashing"][1].tolist() == [1.0]
    t_err, message = sampler.errors["bad"]
    assert message == "bad vanished" and t_err >= traces["bad"][0][-1]
    assert sampler.errors["crashing"][1] == "ZeroDivisionError: division by zero"
    assert traces["good"][0][-1] > t_err and traces["good"][1].size >= after_errors + 10
    assert set(sampler.errors) == {"bad", "crashing"}


def test_a_meter_that_never_answers_does_not_hold_up_start() -> None:
    release = threading.Event()

    class Hung(Counting):
        def read(self) -> float:
            release.wait()
            return super().read()

    sampler = Sampler([Hung("hung", quantity=POWER), Counting("ok")], join_timeout_s=0.2)
    try:
        sampler.start()
        assert sampler.errors["hung"][1] == "hung did not answer its first read within 0.2 s"
        assert sampler.wait_for_samples(5, timeout_s=10)
    finally:
        release.set()
    traces = sampler.stop()
    assert traces["hung"][0].size == 0  # the late answer is not recorded
    assert traces["ok"][0].size >= 6


def test_misuse() -> None:
    with pytest.raises(ValueError, match="unique"):
        Sampler([Counting("x"), Counting("x")])
    sampler = Sampler([Counting("x")])
    with pytest.raises(RuntimeError, match="never started"):
        sampler.stop()
    sampler.start()
    with pytest.raises(RuntimeError, match="started once"):
        sampler.start()
    sampler.stop()


def test_bench_meter_trace_integrates_to_power_times_time() -> None:
    with fake_scpi.FakeScpi(watts=12.5) as srv:
        meter = ScpiMeter.from_url(srv.url(rate=500))
        sampler = Sampler([meter])
        sampler.start()
        start_ns = time.perf_counter_ns()
        assert sampler.wait_for_samples(10, timeout_s=10)
        end_ns = time.perf_counter_ns()
        traces = sampler.stop()
        meter.close()
    t, v = traces[meter.info.name]
    assert np.all(v == 12.5) and t[0] <= start_ns < end_ns <= t[-1]
    e = energy_in_window(t, v, POWER, start_ns, end_ns)
    assert e["joules"] == pytest.approx(12.5 * (end_ns - start_ns) / 1e9)
    assert e["avg_power_w"] == pytest.approx(12.5) and e["samples_in_window"] >= 8


def test_bench_meter_stops_answering_mid_run_while_rapl_goes_on(tmp_path: Path) -> None:
    from agents.meters.rapl import open_rapl

    zone = tmp_path / "class/powercap/intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("5000\n")
    (zone / "max_energy_range_uj").write_text("1000000\n")
    (rapl,), notes = open_rapl(tmp_path)
    assert notes == []
    with fake_scpi.FakeScpi(trace=[5.0, 6.0, 7.0, 8.0], answer_limit=4) as srv:
        bench = ScpiMeter.from_url(srv.url(rate=1000, timeout=0.2))
        name = bench.info.name
        sampler = Sampler([bench, rapl])
        sampler.start()
        assert sampler.wait_until(lambda s: name in s.errors, timeout_s=10)
        at_error = sampler.counts()["rapl:package-0"]
        assert sampler.wait_for_samples(at_error + 5, names=["rapl:package-0"], timeout_s=10)
        traces = sampler.stop()
        bench.close()
        queries = srv.queries
    t_err, message = sampler.errors[name]
    assert message == (f"the bench meter at 127.0.0.1:{srv.port} stopped answering "
                       "(no reply to MEAS:POW? within 0.2 s)")
    t, v = traces[name]
    assert v.tolist() == [5.0, 6.0, 7.0, 8.0] and t[-1] < t_err
    assert queries == 5  # no further query once the meter failed
    t_rapl, v_rapl = traces["rapl:package-0"]
    assert t_rapl[-1] > t_err and np.all(v_rapl == 0.0)  # a constant counter: nothing spent
