"""The only module that imports onnxruntime: sessions with a strict execution provider, and their inputs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort


class Refusal(Exception):
    """The device will not run this task as asked (a status with a reason, not a crash)."""


class ModelLoadError(Exception):
    """The model file does not load in onnxruntime."""


@dataclass
class OrtSession:
    session: ort.InferenceSession
    provider: str
    providers_used: list[str]
    input_names: list[str]
    output_names: list[str]
    create_ms: float
    options: dict[str, Any] = field(default_factory=dict)

    def runner(self) -> Callable[[dict[str, np.ndarray]], list[Any]]:
        """A bound call for the hot loop: feeds in, all outputs out."""
        run, names = self.session.run, self.output_names
        return lambda feed: run(names, feed)


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def open_session(model: Path, provider: str, settings: dict[str, Any]) -> OrtSession:
    """Create a session on exactly the requested provider: no silent fallback to the CPU."""
    provider = provider or "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        raise Refusal(f"execution provider {provider} is not available on this device "
                      f"(it has {', '.join(ort.get_available_providers())})")
    so = ort.SessionOptions()
    if provider != "CPUExecutionProvider":
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    requested_intra = int(settings.get("intra_op_threads", 0))
    # 0 resolves to one thread per CPU this process may run on: onnxruntime's own default counts the machine's
    # physical cores and ignores the affinity the executor is pinned to, which oversubscribes those cores.
    intra = requested_intra or len(os.sched_getaffinity(0))
    so.intra_op_num_threads = intra
    so.inter_op_num_threads = int(settings.get("inter_op_threads", 0))
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    spinning = str(settings.get("allow_spinning", "1"))
    so.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    level = settings.get("graph_optimization", "all")
    so.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }.get(str(level), ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    threads0 = _threads()
    t0 = time.perf_counter()
    try:
        sess = ort.InferenceSession(str(model), sess_options=so, providers=[provider])
    except Exception as e:  # onnxruntime raises several unrelated types for a bad model
        raise ModelLoadError(f"onnxruntime could not load the model: {str(e).splitlines()[0][:300]}") from e
    create_ms = (time.perf_counter() - t0) * 1000
    used = list(sess.get_providers())
    if provider not in used:
        raise Refusal(f"onnxruntime did not place the model on {provider} (used {', '.join(used)})")
    return OrtSession(
        session=sess, provider=provider, providers_used=used,
        input_names=[i.name for i in sess.get_inputs()], output_names=[o.name for o in sess.get_outputs()],
        create_ms=create_ms,
        options={"intra_op_threads": intra, "intra_op_threads_requested": requested_intra,
                 "inter_op_threads": so.inter_op_num_threads, "execution_mode": "sequential",
                 "allow_spinning": spinning == "1", "threads_started_by_session": _threads() - threads0,
                 "graph_optimization": str(level)},
    )


def preload_feeds(sess: OrtSession, arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """One ready feed per dataset sample (batch of one), built before any timing starts."""
    missing = [n for n in sess.input_names if n not in arrays]
    if missing:
        raise Refusal(f"the dataset has no array for model input(s) {', '.join(missing)}")
    n = len(arrays[sess.input_names[0]])
    return [{name: np.ascontiguousarray(arrays[name][i:i + 1]) for name in sess.input_names} for i in range(n)]


def profile_summary(model: Path, provider: str, settings: dict[str, Any], feeds: list[dict[str, np.ndarray]],
                    queries: int, out_dir: Path) -> dict[str, Any]:
    """Run queries under onnxruntime's profiler (a separate session, outside any timed phase) and summarise
    node time per execution provider and the top operators."""
    import json

    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(out_dir / "ort_profile")
    so.intra_op_num_threads = int(settings.get("intra_op_threads", 0))
    if provider != "CPUExecutionProvider":
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    sess = ort.InferenceSession(str(model), sess_options=so, providers=[provider])
    for i in range(queries):
        sess.run(None, feeds[i % len(feeds)])
    path = Path(sess.end_profiling())
    try:
        events = json.loads(path.read_text())
    finally:
        path.unlink(missing_ok=True)
    by_ep: dict[str, float] = {}
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        args = e.get("args", {})
        us = float(e.get("dur", 0))
        ep = str(args.get("provider", "?"))
        op = str(args.get("op_name", "?"))
        by_ep[ep] = by_ep.get(ep, 0.0) + us
        by_op[op] = by_op.get(op, 0.0) + us
    total = sum(by_ep.values()) or 1.0
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:10]
    return {"queries": queries,
            "by_provider_us_per_query": {k: v / queries for k, v in sorted(by_ep.items())},
            "top_ops": [{"op": k, "us_per_query": v / queries, "share": v / total} for k, v in top]}
