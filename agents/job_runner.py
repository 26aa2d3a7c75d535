"""Runs one task top to bottom: fetch, check, then one executor process per repeat (warm up, measure; audits,
accuracy and conformance in the first), then upload; always finishes."""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agents import sysstat
from agents.artifact_cache import ArtifactCache, ArtifactError
from agents.energy_run import IDLE_MS_DEFAULT, PerformanceTrace, idle_baseline, meter_settings
from agents.environment import fingerprint
from agents.measure import SCENARIOS
from agents.meters.base import Meter
from agents.model_files import ExternalDataRefused, check_confined
from agents.sandbox import Cancelled, Executor, ExecutorError, ExecutorFault, ExecutorRefused, Limits
from agents.thermal import ThermalGate
from pilotlab import domain as d
from pilotlab import tasks

log = logging.getLogger("agent.job")


class Reporter(Protocol):
    """Where a job's domain results go; the worker makes them durable and converts them for the wire."""

    def batch(self, batch: d.ResultBatch) -> None: ...
    def finished(self, fin: d.AttemptFinish) -> None: ...
    def progress(self, attempt_id: str, phase: str, fraction: float, message: str = "") -> None: ...


Refusal = ExecutorRefused
WINDOW_MARGIN = 1.05  # energy windows run 5% past ten meter update periods, so edge effects never cut them short


@dataclass(frozen=True)
class Caps:
    """The agent's own limits on every task, below the suite's: 0 = none (memory: 80% of the device's RAM);
    `cpus` are the executor's measurement cores (None = wherever the agent may run)."""

    timeout_s: float = 0.0
    memory_mb: int = 0
    cpus: frozenset[int] | None = None


@dataclass
class Job:
    assignment: d.Assignment
    cancel: threading.Event = field(default_factory=threading.Event)


class Around:
    """What the agent does around each timed run, outside the executor: the idle baseline, the thermal gate, the
    machine-state snapshots of the executor's CPUs and the energy trace."""

    def __init__(self, meter: Meter | None, gate: ThermalGate, cpus: frozenset[int] | None, cancel: threading.Event,
                 expected_s: float) -> None:
        self.meter, self.gate, self.cancel = meter, gate, cancel
        self.cpus = set(cpus) if cpus is not None else None
        self.thermal_baseline = gate.baseline()
        self.trace = PerformanceTrace(meter, expected_s) if meter is not None else None
        self.idle_traces: list[tuple[str, dict[str, np.ndarray]]] = []
        self.energy: dict[str, Any] = {}
        self._rec: dict[str, Any] = {}
        self._snaps: list[sysstat.Snapshot] = []

    def before(self, phase: str) -> None:
        if phase == "idle-baseline":
            if self.meter is not None:
                sets, info = idle_baseline(self.meter, IDLE_MS_DEFAULT)
                self.idle_traces += sets
                self.energy.update(info)
            return
        self._rec = {"thermal": self.gate.wait(self.cancel)}
        if self.trace is not None:
            self.trace.start()
        self._snaps = [sysstat.snapshot(self.cpus)]

    def after(self) -> None:
        if len(self._snaps) == 1:
            self._snaps.append(sysstat.snapshot(self.cpus))
        if self.trace is not None:
            self.trace.stop()

    def record(self, executor_cpu_s: float) -> dict[str, Any]:
        """This repeat's machine state: steal, iowait, other processes' share (besides the executor's CPU time),
        load, frequency, governor, throttling, and the thermal gate."""
        rec = dict(self._rec)
        if len(self._snaps) == 2:
            rec.update(sysstat.window(self._snaps[0], self._snaps[1], executor_cpu_s, self.cpus))
        self._rec, self._snaps = {}, []
        return rec


class JobRunner:
    """Runs one task as a sequence of executor processes, one per repeat, and forwards what they measured.

    This process keeps the session, heartbeats and the outbox; the model runs only in the executors. Around each
    timed run it holds the thermal gate, the machine-state snapshots and the energy sampler, outside the
    executor, which it releases with `go` once they are started."""

    def __init__(self, cache: ArtifactCache, reporter: Reporter, batch_size: int,
                 sign: Callable[[d.ResultBatch], None], meter: Meter | None = None,
                 tdp_w: float = 0.0, work_dir: Path | None = None, caps: Caps | None = None) -> None:
        self.meter = meter
        self.tdp_w = tdp_w
        self.cache = cache
        self.reporter = reporter
        self.batch_size = batch_size
        self.sign = sign
        self.work_dir = work_dir or cache.root.parent / "exec"
        self.caps = caps or Caps()
        self._sent = 0  # batches handed to the reporter for the current job (one job per runner)

    def run(self, job: Job) -> None:
        a = job.assignment
        fin = d.AttemptFinish(attempt_id=a.attempt_id, outcome=d.Outcome.ERROR, execution_provider=a.execution_provider)
        seq = 0
        try:
            try:
                seq = self._measure(job, fin)
                fin.outcome = d.Outcome.OK
            except ExecutorRefused as e:
                fin.outcome, fin.reason = d.Outcome.REFUSED, str(e)
            except Cancelled:
                fin.outcome, fin.reason = d.Outcome.CANCELLED, "cancelled by the lab"
            except ExecutorFault as e:
                fin.outcome, fin.reason = d.Outcome.FAULT, f"{e} (model {a.model.sha256})"
            except ExecutorError as e:
                fin.outcome, fin.reason = d.Outcome.ERROR, str(e)
            except ArtifactError as e:
                fin.outcome, fin.reason = d.Outcome.ERROR, f"artifact fetch failed: {e}"
        except Exception as e:  # a crash of the agent's side is an infrastructure error, reported
            log.exception("task %s crashed", a.task_name)
            fin.outcome, fin.reason = d.Outcome.ERROR, f"agent crash: {type(e).__name__}: {e}"
        finally:
            fin.batches = seq if fin.outcome == d.Outcome.OK else self._sent
            self.reporter.finished(fin)
            shutil.rmtree(self.work_dir / a.attempt_id, ignore_errors=True)
            log.info("task %s (%s) finished: %s %s", a.task_name, a.attempt_id, fin.outcome.value, fin.reason)

    def _emit(self, attempt_id: str, seq: int, kind: str, arrs: dict[str, np.ndarray]) -> int:
        n = len(arrs["index"])
        zeros = np.zeros(n, dtype=np.int64)
        for lo in range(0, max(n, 1), self.batch_size):
            hi = lo + self.batch_size
            b = d.ResultBatch(
                attempt_id=attempt_id, seq=seq, kind=kind, index=arrs["index"][lo:hi].tolist(),
                sample_index=arrs.get("sample_index", zeros)[lo:hi].tolist(),
                t_ns=arrs.get("t_ns", zeros)[lo:hi].tolist(), value=arrs["value"][lo:hi].tolist(),
                aux=arrs.get("aux", zeros)[lo:hi].tolist(),
                fvalue=arrs["fvalue"][lo:hi].tolist() if "fvalue" in arrs else [])
            self.sign(b)
            self.reporter.batch(b)
            seq += 1
            self._sent = seq
        return seq

    def _measure(self, job: Job, fin: d.AttemptFinish) -> int:
        a = job.assignment
        self._sent = 0
        rep = self.reporter
        if a.scenario not in SCENARIOS:
            raise Refusal(f"scenario {a.scenario!r} is not supported by this agent; it runs {', '.join(SCENARIOS)}")
        try:  # the one effective() step: requested settings, typed and normalised, every default filled
            eff = tasks.effective(tasks.requested(a.scenario, a.settings))
        except ValueError as e:
            raise Refusal(f"settings: {e}") from None
        rep.progress(a.attempt_id, "fetch", 0.0)
        model = self.cache.get(a.model.sha256, a.model.size)
        if a.dataset is None:
            raise Refusal(f"{a.scenario} needs a dataset to draw query samples from")
        data_path = self.cache.get(a.dataset.sha256, a.dataset.size)
        golden_path = self.cache.get(a.golden.sha256, a.golden.size) if a.golden is not None else None
        try:  # a model artifact is one file: any external data would lie outside its artifact set
            check_confined(model, allowed=())
        except ExternalDataRefused as e:
            raise Refusal(str(e)) from None
        except ValueError:
            pass  # not a protobuf at all: onnxruntime's load in the executor says so
        limits = Limits.of(eff.timeout_s, eff.memory_mb, self.caps.timeout_s, self.caps.memory_mb, self.caps.cpus,
                           rlimit_as=a.execution_provider in ("", "CPUExecutionProvider"))
        deadline = time.monotonic() + limits.timeout_s
        energy: dict[str, Any] = {}
        min_window_ms = 0
        if self.meter is not None:
            energy = meter_settings(self.meter)
            # MLPerf Power's rule: a window must span enough sensor updates to be measured at all.
            min_window_ms = math.ceil(10 * self.meter.info.update_period_s * 1000 * WINDOW_MARGIN)
            energy["min_window_ms"] = min_window_ms
        plan = {"scenario": a.scenario, "settings": eff.to_dict(), "model": str(model), "dataset": str(data_path),
                "golden": str(golden_path) if golden_path else None, "execution_provider": a.execution_provider,
                "accuracy": dict(a.accuracy) if a.accuracy else None, "min_window_ms": min_window_ms}
        around = Around(self.meter, ThermalGate(), limits.cpus, job.cancel,
                        eff.min_duration_ms / 1000 + min_window_ms / 1000 + 30)
        env_before = fingerprint()
        sets: list[tuple[str, dict[str, np.ndarray]]] = []
        windows: list[dict[str, Any]] = []
        system: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for r in range(eff.repeats):
            label = f"repeat {r + 1}/{eff.repeats}"
            ex = Executor({**plan, "repeat": r, "extras": r == 0, "idle_gate": r == 0 and self.meter is not None},
                          self.work_dir / a.attempt_id / f"r{r}", limits, deadline, job.cancel, label)
            try:
                for ev in ex.events():
                    if ev.get("event") == "progress":
                        rep.progress(a.attempt_id, str(ev.get("phase")), r / eff.repeats, label)
                    elif ev.get("event") == "gate":
                        phase = "idle-baseline" if ev.get("phase") == "idle" else "performance"
                        rep.progress(a.attempt_id, phase, r / eff.repeats, label)
                        around.before(phase)
                        ex.go()
                    elif ev.get("event") == "performance-done":
                        around.after()
            finally:
                around.after()
                if ex.proc.poll() is None:
                    ex.kill()
            res = ex.result()
            results.append(res)
            for f in res["sets"]:
                with np.load(ex.work / f["file"]) as z:
                    sets.append((f["kind"], {k: z[k] for k in z.files}))
            windows += res["windows"]
            system.append({"repeat": r, **around.record(float(res["phases"].get("performance_cpu_s", 0.0))),
                           "peak_rss_mb": res["peak_rss_mb"]})
            shutil.rmtree(ex.work, ignore_errors=True)
        energy.update(around.energy)
        first = results[0]
        cpu_s = sum(float(x["phases"].get("performance_cpu_s", 0.0)) for x in results)
        energy["cpu_seconds"] = cpu_s
        perf_traces, perf_info = around.trace.results() if around.trace is not None else ([], {})
        energy.update(perf_info)
        if self.meter is None and self.tdp_w:
            energy["estimate"] = {"cpu_seconds": cpu_s, "tdp_w": self.tdp_w,
                                  "cores": len(limits.cpus) if limits.cpus else os.cpu_count() or 1}
        sets += around.idle_traces + perf_traces
        fin.phases = dict(first["phases"])
        fin.phases["performance_s"] = sum(float(x["phases"]["performance_s"]) for x in results)
        fin.phases["repeats"] = [{k: x["phases"].get(k) for k in ("session_create_ms", "first_inference_ms",
                                                                   "performance_s")} for x in results]
        rep.progress(a.attempt_id, "upload", 0.0)
        seq = 0
        for kind, arrs in sets:
            seq = self._emit(a.attempt_id, seq, kind, arrs)
        executor: dict[str, Any] = {**limits.to_dict(), "processes": len(results),
                                    "affinity": first["affinity"], "agent_affinity": sorted(os.sched_getaffinity(0)),
                                    "peak_rss_mb": [x["peak_rss_mb"] for x in results],
                                    "session_create_ms": [x["phases"].get("session_create_ms") for x in results],
                                    "thermal_baseline": around.thermal_baseline}
        hint = sysstat.likely_cause(system) if len(system) > 1 else None
        if hint:
            executor["instability_hint"] = hint
        fin.effective_settings = eff.to_dict()
        fin.observations = d.Observations(session_options=dict(first["session_options"]), energy=energy,
                                          windows=windows, executor=executor, system=system)
        fin.environment = {"before": env_before, "after": fingerprint()}
        fin.execution_provider = first["execution_provider"]
        fin.providers_used = list(first["providers_used"])
        return seq
