"""Runs one task top to bottom: fetch, prepare, warm up, measure, accuracy, upload; always finishes."""

from __future__ import annotations

import logging
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agents.artifact_cache import ArtifactCache, ArtifactError
from agents.environment import fingerprint
from agents.harness.accuracy import run_accuracy
from agents.harness.single_stream import Cancelled, SingleStreamSettings, run_single_stream
from pilotlab import convert
from pilotlab import domain as d
from pilotlab.v1 import agent_pb2

log = logging.getLogger("agent.job")

SCENARIOS = {"single-stream"}


class Reporter(Protocol):
    def batch(self, batch: agent_pb2.ResultBatch) -> None: ...
    def finished(self, fin: agent_pb2.TaskFinished) -> None: ...
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
                 sign: Callable[[agent_pb2.ResultBatch], None]) -> None:
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
            self.reporter.finished(convert.finish_to_pb(fin))
            log.info("task %s (%s) finished: %s %s", a.task_name, a.attempt_id, fin.outcome.value, fin.reason)

    def _emit(self, attempt_id: str, seq: int, kind: str, index: np.ndarray, sample_index: np.ndarray,
              t_ns: np.ndarray, value: np.ndarray) -> int:
        for lo in range(0, len(index), self.batch_size):
            hi = lo + self.batch_size
            b = agent_pb2.ResultBatch(attempt_id=attempt_id, seq=seq, kind=kind, index=index[lo:hi].tolist(),
                                      sample_index=sample_index[lo:hi].tolist(), t_ns=t_ns[lo:hi].tolist(),
                                      value=value[lo:hi].tolist())
            self.sign(b)
            self.reporter.batch(b)
            seq += 1
            self._sent = seq
        return seq

    def _measure(self, job: Job, fin: d.AttemptFinish) -> int:
        from agents.backends.onnxruntime import Refusal, open_session, preload_feeds

        a = job.assignment
        self._sent = 0
        rep = self.reporter
        if a.scenario not in SCENARIOS:
            raise Refusal(f"scenario {a.scenario!r} is not supported by agent; supported: {', '.join(SCENARIOS)}")
        rep.progress(a.attempt_id, "fetch", 0.0)
        model = self.cache.get(a.model.sha256, a.model.size, lambda f: None)
        data_path: Path | None = None
        if a.dataset is not None:
            data_path = self.cache.get(a.dataset.sha256, a.dataset.size, lambda f: None)
        rep.progress(a.attempt_id, "prepare", 0.0)
        env_before = fingerprint()
        rss0 = _rss_mb()
        sess = open_session(model, a.execution_provider, a.settings)
        if data_path is None:
            raise Refusal("single-stream needs a dataset to draw query samples from")
        with np.load(data_path) as z:
            arrays = {k: z[k] for k in z.files}
        feeds = preload_feeds(sess, arrays)
        issue = sess.runner()
        t0 = time.perf_counter()
        issue(feeds[0])
        first_ms = (time.perf_counter() - t0) * 1000
        settings = SingleStreamSettings.from_requested(a.settings)
        fin.phases = {"session_create_ms": sess.create_ms, "first_inference_ms": first_ms,
                      "peak_rss_growth_mb": max(0.0, _rss_mb() - rss0)}
        rep.progress(a.attempt_id, "performance", 0.0)
        res = run_single_stream(issue, feeds, settings, job.cancel)
        fin.phases["performance_s"] = res.duration_ns / 1e9
        seq = self._emit(a.attempt_id, 0, "latency", np.arange(res.latency_ns.size, dtype=np.int64),
                         res.sample_index, res.issue_ns, res.latency_ns)
        if a.accuracy:
            rep.progress(a.attempt_id, "accuracy", 0.0)
            decode = _decoder(sess.output_names, a.accuracy.get("output", sess.output_names[0]))
            t1 = time.perf_counter()
            pred = run_accuracy(issue, feeds, decode, job.cancel)
            fin.phases["accuracy_s"] = time.perf_counter() - t1
            idx = np.arange(pred.size, dtype=np.int64)
            seq = self._emit(a.attempt_id, seq, "prediction", idx, idx, np.zeros_like(idx), pred)
        rep.progress(a.attempt_id, "upload", 1.0)
        fin.effective_settings = {**settings.effective(), **sess.options, "execution_provider": sess.provider}
        fin.environment = {"before": env_before, "after": fingerprint()}
        fin.execution_provider = sess.provider
        fin.providers_used = sess.providers_used
        return seq
