"""The executor: one repeat of one task (session, warm-up, timed run, and on the first repeat the audits, accuracy,
conformance and profile) in a process of its own, started by the agent for that repeat and nothing else.

It holds no socket, credential, logger or sampler thread. The agent hands it a plan (a JSON file), and it talks
back on stdout, one JSON event per line: progress, a `gate` before the idle baseline and before the timed run
(it then waits for `go` on stdin, so the agent can start its meter and thermal gate outside this process), the
performance window, and a final `done`, `refused` or `fault`. Raw sample sets go to .npz files in its working
directory. Exit status: 0 done, 3 refused, 4 a model fault (memory, onnxruntime error), anything else an error.

Run as `python -m agents.executor PLAN.json`.
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

EXIT_OK, EXIT_REFUSED, EXIT_FAULT = 0, 3, 4


class Fault(Exception):
    """The model, not the device or the agent, failed: `kind` is memory or model."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fault_of(e: BaseException, memory_mb: int) -> Fault | None:
    """An onnxruntime or allocation failure while the model runs is the model's fault, reported, not retried."""
    full = str(e) or type(e).__name__
    text = full.splitlines()[0][:300]
    alloc = re.search(r"Failed to allocate memory[^\n]*|bad_alloc|bad allocation", full)
    if isinstance(e, MemoryError) or alloc:
        text = alloc.group(0)[:200] if alloc else text
        limit = f"the executor's limit of {memory_mb} MiB (memory_mb)" if memory_mb else "the device's memory"
        return Fault("memory", f"memory: the model needed more than {limit}: {text}")
    if type(e).__module__.startswith("onnxruntime"):
        return Fault("model", f"onnxruntime failed running the model: {text}")
    return None


class Channel:
    """Events to the agent on stdout, `go` from it on stdin."""

    def __init__(self, out: IO[str], inp: IO[str]) -> None:
        self.out, self.inp = out, inp

    def emit(self, event: str, **fields: Any) -> None:
        self.out.write(json.dumps({"event": event, **fields}) + "\n")
        self.out.flush()

    def progress(self, phase: str) -> None:
        self.emit("progress", phase=phase)

    def gate(self, phase: str) -> None:
        self.emit("gate", phase=phase)
        if self.inp.readline().strip() != "go":
            raise SystemExit(f"the agent did not release the {phase} gate")


def _save(out_dir: Path, sets: list[tuple[str, dict[str, np.ndarray]]]) -> list[dict[str, str]]:
    files = []
    for i, (kind, arrs) in enumerate(sets):
        name = f"set-{i:03d}.npz"
        np.savez(out_dir / name, **arrs)  # type: ignore[arg-type]
        files.append({"kind": kind, "file": name})
    return files


def run(plan: dict[str, Any], ch: Channel) -> dict[str, Any]:
    """One repeat as the plan says; returns the result document (sample sets saved beside it)."""
    if plan["scenario"] == "generative":  # a KV-cache decoder: prompts and tokens, not feeds and queries
        from agents.generative_run import run_generative

        return run_generative(plan, ch)
    from agents.backends.onnxruntime import Refusal, open_session, preload_feeds, profile_summary
    from agents.harness.accuracy import decoder, run_accuracy
    from agents.harness.conformance import golden_outputs
    from agents.harness.warmup import warm_up
    from agents.measure import Settings, audit_same_sample, batch_feeds, performance
    from pilotlab import conformance

    out_dir = Path(plan["out_dir"])
    eff: dict[str, Any] = plan["settings"]
    settings = Settings.from_requested(plan["scenario"], eff)
    repeat, first = int(plan["repeat"]), bool(plan["extras"])
    ch.progress("prepare")
    rss0 = _rss_mb()
    sess = open_session(Path(plan["model"]), plan["execution_provider"], eff)
    _test_signal(Path(plan["model"]))
    with np.load(plan["dataset"]) as z:
        arrays = {k: z[k] for k in z.files}
    feeds = preload_feeds(sess, arrays)
    issue = sess.runner()
    t0 = time.perf_counter()
    issue(feeds[0])
    phases: dict[str, Any] = {"session_create_ms": sess.create_ms,
                              "first_inference_ms": (time.perf_counter() - t0) * 1000}
    batch_cache: dict[int, list[dict[str, np.ndarray]]] = {}

    def batched(b: int) -> list[dict[str, np.ndarray]]:
        if b not in batch_cache:
            shape = sess.session.get_inputs()[0].shape
            if b > 1 and isinstance(shape[0], int) and shape[0] != b:
                raise Refusal(f"batch size {b} needs a dynamic batch axis; the model's first input is {shape}")
            batch_cache[b] = batch_feeds(arrays, sess.input_names, b)
        return batch_cache[b]

    if plan.get("idle_gate"):
        ch.gate("idle")  # the model is loaded and nothing is issued: the agent samples the idle device
    ch.progress("warmup")
    warm_feeds = batched(settings.batch_sizes[-1]) if settings.scenario == "offline" else feeds
    phases["warmup"] = warm_up(issue, warm_feeds, settings.warmup_queries, settings.warmup_min_ms)
    ch.gate("performance")
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    sets, windows = performance(settings, issue, feeds, batched, None, repeat=repeat,
                                min_window_ms=int(plan.get("min_window_ms", 0)))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    ch.emit("performance-done")
    phases["performance_s"] = sum((w["end_ns"] - w["start_ns"]) for w in windows) / 1e9
    phases["performance_cpu_s"] = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    if first:
        decode: Callable[[list[Any]], int] | None = None
        accuracy = plan.get("accuracy")
        if accuracy:
            try:
                decode = decoder(sess.output_names, accuracy.get("output", sess.output_names[0]))
            except ValueError as e:
                raise Refusal(f"accuracy: {e}") from None
        if settings.audit and settings.scenario in ("single-stream", "server", "multi-stream"):
            ch.progress("audit")
            audit_feeds = batched(settings.samples_per_query) if settings.scenario == "multi-stream" else feeds
            sets += audit_same_sample(settings, issue, audit_feeds, None)
            if decode is not None:
                order = np.random.default_rng(settings.seed + 7).integers(0, len(feeds), settings.audit_queries)
                pred = np.array([decode(issue(feeds[i])) for i in order], dtype=np.int64)
                sets.append(("perf-prediction", {"index": np.arange(order.size, dtype=np.int64),
                                                 "sample_index": order.astype(np.int64), "value": pred}))
        if decode is not None:
            ch.progress("accuracy")
            t1 = time.perf_counter()
            pred = run_accuracy(issue, feeds, decode, None)
            phases["accuracy_s"] = time.perf_counter() - t1
            idx = np.arange(pred.size, dtype=np.int64)
            sets.append(("prediction", {"index": idx, "sample_index": idx, "value": pred}))
        if plan.get("golden"):
            ch.progress("conformance")
            with np.load(plan["golden"]) as g:
                golden = {k: g[k] for k in g.files}
            sets += conformance.to_samples(conformance.compare(golden_outputs(issue, feeds, sess.output_names,
                                                                              golden), golden))
        if settings.profile:
            ch.progress("profile")
            phases["profile"] = profile_summary(Path(plan["model"]), sess.provider, eff, feeds,
                                                settings.profile_queries, out_dir)
    phases["peak_rss_growth_mb"] = max(0.0, _rss_mb() - rss0)
    return {"sets": _save(out_dir, sets), "windows": windows, "phases": phases,
            "session_options": dict(sess.options), "execution_provider": sess.provider,
            "providers_used": sess.providers_used, "peak_rss_mb": _rss_mb(),
            "affinity": sorted(os.sched_getaffinity(0)), "cpu_s": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime}


def _test_signal(model: Path) -> None:
    """PILOTLAB_TEST_EXECUTOR_SIGNAL=SIGSEGV@SHA256 makes the executor of that model die by that signal once the
    model is loaded: the reproducible stand-in for an onnxruntime crash that the sandbox tests use."""
    name, _, sha = os.environ.get("PILOTLAB_TEST_EXECUTOR_SIGNAL", "").partition("@")
    if name and model.name == sha:
        import signal

        os.kill(os.getpid(), getattr(signal, name))


def confine(plan: dict[str, Any]) -> None:
    """Before anything heavy is imported: die with the agent, no core dumps, the plan's CPUs and address space."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG: never outlive the agent
    except (OSError, AttributeError):
        pass
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if plan.get("cpus"):
        os.sched_setaffinity(0, set(plan["cpus"]))
    if plan.get("memory_mb"):
        limit = int(plan["memory_mb"]) << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m agents.executor PLAN.json", file=sys.stderr)
        return 2
    ch = Channel(sys.stdout, sys.stdin)
    sys.stdout = sys.stderr  # nothing but events on the channel, whatever a library prints
    plan = json.loads(Path(argv[1]).read_text())
    confine(plan)
    from agents.backends.onnxruntime import ModelLoadError, Refusal

    try:
        result = run(plan, ch)
    except Refusal as e:
        ch.emit("refused", reason=str(e))
        return EXIT_REFUSED
    except ModelLoadError as e:
        memory = _fault_of(e, int(plan.get("memory_mb") or 0))  # e.g. constant folding past the memory limit
        if memory is not None and memory.kind == "memory":
            ch.emit("fault", kind="memory", reason=str(memory))
            return EXIT_FAULT
        ch.emit("refused", reason=f"{e}; the suite's model cannot run here")
        return EXIT_REFUSED
    except Exception as e:
        fault = e if isinstance(e, Fault) else _fault_of(e, int(plan.get("memory_mb") or 0))
        if fault is None:
            raise
        ch.emit("fault", kind=fault.kind, reason=str(fault))
        return EXIT_FAULT
    Path(plan["out_dir"], "result.json").write_text(json.dumps(result))
    ch.emit("done")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv))
