"""Deep validation: every model loads in onnxruntime, every dataset and golden file is a readable .npz, and each
task's dataset, golden outputs and batch sizes fit its model's inputs and outputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalsuites.schema import Problem, Suite, TaskSpec

# onnxruntime's type strings for the tensor element types a dataset array can carry.
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def _load_model(path: Any) -> tuple[list[Any], list[Any]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return session.get_inputs(), session.get_outputs()


def _load_npz(path: Any) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _shape_problem(name: str, arr: np.ndarray, model_shape: list[Any]) -> str | None:
    if arr.ndim != len(model_shape):
        return f"array {name!r} has shape {list(arr.shape)}; the model input is {model_shape} (rank differs)"
    for axis, (have, want) in enumerate(zip(arr.shape[1:], model_shape[1:], strict=True), start=1):
        if isinstance(want, int) and want >= 0 and have != want:
            return f"array {name!r} has shape {list(arr.shape)}; the model input needs {want} on axis {axis}"
    return None


def check_model_fit(suite: Suite) -> list[Problem]:
    """Load each locally present model and dataset and check that each task's pair fits together."""
    problems: list[Problem] = []
    models: dict[str, tuple[list[Any], list[Any]]] = {}
    datasets: dict[str, dict[str, np.ndarray]] = {}
    for name, a in sorted(suite.artifacts.items()):
        if a.path is None or not a.path.is_file():
            continue
        try:
            if a.kind == "model":
                models[name] = _load_model(a.path)
            else:
                datasets[name] = _load_npz(a.path)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises types derived only from Exception
            what = "model does not load in onnxruntime" if a.kind == "model" else f"{a.kind} is not a readable .npz"
            problems.append(Problem(f"artifacts.{name}.source", None, f"{what}: {_first_line(e)}"))
    for i, task in enumerate(suite.tasks):
        if task.model not in models:
            continue
        problems += _batch_problems(i, task, models[task.model][0])
        data = datasets.get(task.dataset) if task.dataset is not None else None
        if data is not None and task.dataset is not None:
            problems += _task_problems(i, task.dataset, task.accuracy, models[task.model], data)
        if task.golden is not None and task.golden in datasets:
            top1 = "top1_agreement" in (task.conformance or {}) or any(
                c.metric == "conformance.top1_agreement" for c in suite.criteria_for(task.name))
            problems += _golden_problems(i, task, models[task.model][1], datasets[task.golden], data, top1)
    return problems


def _batch_problems(i: int, task: TaskSpec, inputs: list[Any]) -> list[Problem]:
    batches = task.settings.get("batch_sizes") if task.scenario == "offline" else None
    if not isinstance(batches, list):
        return []
    for inp in inputs:
        first = inp.shape[0] if inp.shape else None
        if not isinstance(first, int) or first < 0:
            continue
        bad = [b for b in batches if b != first]
        if bad:
            return [Problem(f"tasks[{i}].settings.batch_sizes", None,
                            f"batch size {bad[0]} needs a dynamic first dimension, but model input {inp.name!r} "
                            f"is fixed at {first} ({list(inp.shape)})")]
    return []


def _golden_problems(i: int, task: TaskSpec, outputs: list[Any], golden: dict[str, np.ndarray],
                     data: dict[str, np.ndarray] | None, top1: bool) -> list[Problem]:
    field = f"tasks[{i}].golden"
    by_name = {o.name: o for o in outputs}
    out: list[Problem] = []
    if not golden:
        return [Problem(field, None, f"golden {task.golden!r} holds no arrays; add one per compared model output")]
    for name, arr in sorted(golden.items()):
        o = by_name.get(name)
        if o is None:
            out.append(Problem(field, None, f"golden array {name!r} is not an output of model {task.model!r} "
                                            f"(outputs: {', '.join(by_name)})"))
            continue
        if not np.issubdtype(arr.dtype, np.floating):
            out.append(Problem(field, None, f"golden array {name!r} is {arr.dtype}; golden arrays are floating point"))
        if o.type not in ("tensor(float)", "tensor(double)", "tensor(float16)", "tensor(bfloat16)"):
            out.append(Problem(field, None, f"model output {name!r} is {o.type}; conformance compares floating-point "
                                            "outputs only"))
        msg = _shape_problem(name, arr, list(o.shape))
        if msg is not None:
            out.append(Problem(field, None, "golden " + msg.replace("model input", "model output")))
    counts = sorted({a.shape[0] if a.ndim else 0 for a in golden.values()})
    samples = {a.shape[0] for n, a in (data or {}).items() if n != "labels" and a.ndim}
    if len(counts) > 1 or counts[0] < 1:
        out.append(Problem(field, None, f"golden arrays must share a sample count >= 1 on axis 0, got {counts}"))
    elif samples and counts[0] > min(samples):
        out.append(Problem(field, None, f"golden holds {counts[0]} samples but dataset {task.dataset!r} only "
                                        f"{min(samples)}; golden rows are the dataset's first samples"))
    if top1 and not any(a.ndim >= 2 for a in golden.values()):
        out.append(Problem(f"tasks[{i}].conformance", None, "top1_agreement compares argmax over the last axis; "
                                                           "no golden array has rank >= 2"))
    return out


def _task_problems(i: int, dataset: str, accuracy: dict[str, Any] | None, model: tuple[list[Any], list[Any]],
                   arrays: dict[str, np.ndarray]) -> list[Problem]:
    inputs, outputs = model
    field = f"tasks[{i}].dataset"
    out: list[Problem] = []
    counts: set[int] = set()
    for inp in inputs:
        arr = arrays.get(inp.name)
        if arr is None:
            have = ", ".join(sorted(arrays)) or "none"
            out.append(Problem(field, None, f"dataset {dataset!r} has no array {inp.name!r} for model input "
                                            f"{inp.name!r} (arrays: {have})"))
            continue
        want = _ORT_DTYPES.get(inp.type)
        if want is None:
            out.append(Problem(field, None, f"model input {inp.name!r} has type {inp.type}, "
                                            "which a dataset array cannot feed"))
        elif arr.dtype != np.dtype(want):
            out.append(Problem(field, None, f"array {inp.name!r} is {arr.dtype}; model input {inp.name!r} "
                                            f"needs {np.dtype(want)}"))
        if (msg := _shape_problem(inp.name, arr, list(inp.shape))) is not None:
            out.append(Problem(field, None, msg))
        if arr.ndim:
            counts.add(arr.shape[0])
    if len(counts) > 1:
        out.append(Problem(field, None, f"input arrays disagree on the sample count: {sorted(counts)}"))
    if accuracy is not None:
        labels = arrays.get("labels")
        if labels is None:
            out.append(Problem(field, None, f"dataset {dataset!r} has no 'labels' array, which accuracy needs"))
        elif labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            out.append(Problem(field, None, f"'labels' must be a 1-D integer array, got {labels.dtype} "
                                            f"{list(labels.shape)}"))
        elif counts and labels.shape[0] not in counts:
            out.append(Problem(field, None, f"'labels' has {labels.shape[0]} entries for {sorted(counts)} samples"))
        output = accuracy.get("output")
        names = [o.name for o in outputs]
        if output not in names:
            out.append(Problem(f"tasks[{i}].accuracy.output", None,
                               f"model has no output {output!r}; its outputs are {', '.join(names)}"))
    return out
