"""One conformance rule: the builder's path and the agent's path (records on the wire, reduced by the lab and the
verifier) give identical numbers for the fp32, fp16 and int8 models on the CPU provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.backends.onnxruntime import open_session, preload_feeds
from agents.harness.conformance import golden_outputs
from evalsuites import builtin_suites_dir, load_suite
from evalsuites.conformance import measure_conformance
from evalsuites.gen.common import run_ort
from pilotlab import conformance
from pilotlab.attempt_metrics import compute_metrics
from pilotlab.samples import as_columns, read_samples_npy, samples_npy

TASKS = [("accelerator-throughput", "convnet-fp32-offline"), ("accelerator-throughput", "convnet-fp16-offline"),
         ("accelerator-throughput", "convnet-int8-offline"), ("terminal-vision", "digits-int8-single-stream"),
         ("robot-control", "policy-100hz")]


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("suite_id,task_name", TASKS)
def test_builder_and_agent_paths_agree_exactly(suite_id: str, task_name: str) -> None:
    suite = load_suite(builtin_suites_dir() / suite_id)
    task = suite.task(task_name)
    model_path = suite.artifacts[task.model].path
    golden = _npz(suite.artifacts[task.golden].path)  # type: ignore[arg-type,index]
    data = {k: v for k, v in _npz(suite.artifacts[task.dataset].path).items() if k != "labels"}  # type: ignore[arg-type,index]
    n = next(iter(golden.values())).shape[0]

    # the builder's path: outputs of one query per sample, the shared rule in one call
    built = measure_conformance(run_ort(model_path.read_bytes(), {k: v[:n] for k, v in data.items()},  # type: ignore[union-attr]
                                        per_sample=True), golden)

    # the agent's path: its session and feeds, records as raw samples, through the bundle's .npy, reduced by the lab
    sess = open_session(model_path, "CPUExecutionProvider", {"intra_op_threads": 1})  # type: ignore[arg-type]
    feeds = preload_feeds(sess, data)
    records = conformance.compare(golden_outputs(sess.runner(), feeds, sess.output_names, golden), golden)
    wire = {kind: as_columns(read_samples_npy(samples_npy(arrays))) for kind, arrays in conformance.to_samples(records)}
    lab = compute_metrics("single-stream", {}, wire, None)["conformance"]

    assert {f"conformance.{k}": v for k, v in lab.items() if k != "n"} == built
    assert lab["n"] == n
    for c in suite.criteria_for(task_name):  # every model meets its suite's conformance criteria on the CPU
        if c.metric.startswith("conformance."):
            v = built[c.metric]
            assert {"<=": v <= c.threshold, ">=": v >= c.threshold, "<": v < c.threshold,
                    ">": v > c.threshold}[c.op], (c.id, v)
