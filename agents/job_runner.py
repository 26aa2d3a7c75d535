"""Runs one task top to bottom: fetch, prepare, warm up, measure, accuracy, upload; always finishes."""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from agents.artifact_cache import ArtifactCache, ArtifactError
from agents.energy_run import IDLE_MS_DEFAULT, PerformanceEnergy, idle_baseline, meter_settings
from agents.environment import fingerprint
from agents.harness.accuracy import run_accuracy
from agents.harness.conformance import golden_outputs
from agents.harness.single_stream import Cancelled
from agents.harness.warmup import warm_up
from agents.measure import SCENARIOS, Settings, audit_same_sample, batch_feeds, performance
from agents.meters.base import Meter
from pilotlab import conformance, tasks
from pilotlab import domain as d

log = logging.getLogger("agent.job")


class Reporter(Protocol):
    """Where a job's domain results go; the worker makes them durable and converts them for the wire."""

    def batch(self, batch: d.ResultBatch) -> None: ...
    def finished(self, fin: d.AttemptFinish) -> None: ...
    def progress(self, attempt_id: str, phase: str, fraction: float, message: str = "") -> None: ...


@dataclass
class Job:
    assignment: d.Assignment
    cancel: threading.Event = field(default_factory=threading.Event)


def _decoder(output_names: list[str], output: str) -> Callable[[list[Any]], int]:
    if output not in output_names:
        raise ValueError(f"the model has no output {output!r} (it has {', '.join(output_names)})")
    k = output_names.index(output)

    def decode(outputs: list[Any]) -> int:
        arr = np.asarray(outputs[k])
        if arr.dtype.kind in "iu":
            return int(arr.ravel()[0])
        return int(np.argmax(arr.reshape(arr.shape[0], -1)[0]))

    return decode


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class JobRunner:
    def __init__(self, cache: ArtifactCache, reporter: Reporter, batch_size: int,
                 sign: Callable[[d.ResultBatch], None], meter: Meter | None = None,
                 tdp_w: float = 0.0) -> None:
        self.meter = meter
        self.tdp_w = tdp_w
        self.cache = cache
        self.reporter = reporter
        self.batch_size = batch_size
        self.sign = sign
        self._sent = 0  # batches handed to the reporter for the current job (one job per runner)

    def run(self, job: Job) -> None:
        a = job.assignment
        fin = d.AttemptFinish(attempt_id=a.attempt_id, outcome=d.Outcome.ERROR, execution_provider=a.execution_provider)
        seq = 0
        try:
            from agents.backends.onnxruntime import ModelLoadError, Refusal

            try:
                seq = self._measure(job, fin)
                fin.outcome = d.Outcome.OK
            except Refusal as e:
                fin.outcome, fin.reason = d.Outcome.REFUSED, str(e)
            except ModelLoadError as e:
                fin.outcome, fin.reason = d.Outcome.REFUSED, f"{e}; the suite's model cannot run here"
            except Cancelled:
                fin.outcome, fin.reason = d.Outcome.CANCELLED, "cancelled by the lab"
            except ArtifactError as e:
                fin.outcome, fin.reason = d.Outcome.ERROR, f"artifact fetch failed: {e}"
        except Exception as e:  # a crash of the session or harness is an infrastructure error, reported
            log.exception("task %s crashed", a.task_name)
            fin.outcome, fin.reason = d.Outcome.ERROR, f"agent crash: {type(e).__name__}: {e}"
        finally:
            fin.batches = seq if fin.outcome == d.Outcome.OK else self._sent
            self.reporter.finished(fin)
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
        from agents.backends.onnxruntime import Refusal, open_session, preload_feeds, profile_summary

        a = job.assignment
        self._sent = 0
        rep = self.reporter
        if a.scenario not in SCENARIOS:
            raise Refusal(f"scenario {a.scenario!r} is not supported by this agent; it runs {', '.join(SCENARIOS)}")
        try:  # the one effective() step: requested settings, typed and normalised, every default filled
            eff = tasks.effective(tasks.requested(a.scenario, a.settings))
        except ValueError as e:
            raise Refusal(f"settings: {e}") from None
        settings = Settings.from_requested(a.scenario, eff.to_dict())
        rep.progress(a.attempt_id, "fetch", 0.0)
        model = self.cache.get(a.model.sha256, a.model.size)
        if a.dataset is None:
            raise Refusal(f"{a.scenario} needs a dataset to draw query samples from")
        data_path = self.cache.get(a.dataset.sha256, a.dataset.size)
        golden_path = self.cache.get(a.golden.sha256, a.golden.size) if a.golden is not None else None
        rep.progress(a.attempt_id, "prepare", 0.0)
        env_before = fingerprint()
        rss0 = _rss_mb()
        sess = open_session(model, a.execution_provider, eff.to_dict())
        with np.load(data_path) as z:
            arrays = {k: z[k] for k in z.files}
        feeds = preload_feeds(sess, arrays)
        issue = sess.runner()
        t0 = time.perf_counter()
        issue(feeds[0])
        fin.phases = {"session_create_ms": sess.create_ms, "first_inference_ms": (time.perf_counter() - t0) * 1000,
                      "peak_rss_growth_mb": max(0.0, _rss_mb() - rss0)}
        batch_cache: dict[int, list[dict[str, np.ndarray]]] = {}

        def batched(b: int) -> list[dict[str, np.ndarray]]:
            if b not in batch_cache:
                shape = sess.session.get_inputs()[0].shape
                if b > 1 and isinstance(shape[0], int) and shape[0] != b:
                    raise Refusal(f"batch size {b} needs a dynamic batch axis; the model's first input is {shape}")
                batch_cache[b] = batch_feeds(arrays, sess.input_names, b)
            return batch_cache[b]

        energy: dict[str, Any] = {}
        traces: list[tuple[str, dict[str, np.ndarray]]] = []
        if self.meter is not None:
            rep.progress(a.attempt_id, "idle-baseline", 0.0)
            energy = meter_settings(self.meter)
            idle_sets, idle_info = idle_baseline(self.meter, IDLE_MS_DEFAULT)
            traces += idle_sets
            energy.update(idle_info)
        rep.progress(a.attempt_id, "warmup", 0.0)
        warm_feeds = batched(settings.batch_sizes[-1]) if a.scenario == "offline" else feeds
        fin.phases["warmup"] = warm_up(issue, warm_feeds, settings.warmup_queries, settings.warmup_min_ms)
        rep.progress(a.attempt_id, "performance", 0.0)
        with PerformanceEnergy(self.meter, settings.min_duration_ms / 1000 * settings.repeats + 30) as pe:
            sets = performance(settings, issue, feeds, batched, job.cancel)
        perf_traces, perf_info = pe.results()
        traces += perf_traces
        energy.update(perf_info)
        if self.meter is None and self.tdp_w:
            energy["estimate"] = {"cpu_seconds": perf_info["cpu_seconds"], "tdp_w": self.tdp_w,
                                  "cores": os.cpu_count() or 1}
        fin.phases["performance_s"] = sum(float(x["t_ns"][-1] + x["value"][-1] - x["t_ns"][0])
                                          for _, x in sets) / 1e9
        decode = None
        if a.accuracy:
            decode = _decoder(sess.output_names, a.accuracy.get("output", sess.output_names[0]))
        if settings.audit and a.scenario in ("single-stream", "server", "multi-stream"):
            rep.progress(a.attempt_id, "audit", 0.0)
            audit_feeds = batched(settings.samples_per_query) if a.scenario == "multi-stream" else feeds
            sets += audit_same_sample(settings, issue, audit_feeds, job.cancel)
            if decode is not None:
                order = np.random.default_rng(settings.seed + 7).integers(0, len(feeds), settings.audit_queries)
                pred = np.array([decode(issue(feeds[i])) for i in order], dtype=np.int64)
                sets.append(("perf-prediction", {"index": np.arange(order.size, dtype=np.int64),
                                                 "sample_index": order.astype(np.int64), "value": pred}))
        if decode is not None:
            rep.progress(a.attempt_id, "accuracy", 0.0)
            t1 = time.perf_counter()
            pred = run_accuracy(issue, feeds, decode, job.cancel)
            fin.phases["accuracy_s"] = time.perf_counter() - t1
            idx = np.arange(pred.size, dtype=np.int64)
            sets.append(("prediction", {"index": idx, "sample_index": idx, "value": pred}))
        if golden_path is not None:
            rep.progress(a.attempt_id, "conformance", 0.0)
            with np.load(golden_path) as g:
                golden = {k: g[k] for k in g.files}
            sets += conformance.to_samples(conformance.compare(golden_outputs(issue, feeds, sess.output_names, golden),
                                                               golden))
        if eff.profile:
            rep.progress(a.attempt_id, "profile", 0.0)
            fin.phases["profile"] = profile_summary(model, sess.provider, eff.to_dict(), feeds, eff.profile_queries,
                                                    self.cache.root)
        sets += traces
        rep.progress(a.attempt_id, "upload", 0.0)
        seq = 0
        for kind, arrs in sets:
            seq = self._emit(a.attempt_id, seq, kind, arrs)
        fin.effective_settings = eff.to_dict()
        fin.observations = d.Observations(session_options=dict(sess.options), energy=energy)
        fin.environment = {"before": env_before, "after": fingerprint()}
        fin.execution_provider = sess.provider
        fin.providers_used = sess.providers_used
        return seq
