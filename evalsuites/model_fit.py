"""Deep validation: every model loads in onnxruntime, every dataset and golden file is a readable .npz, and each
task's dataset, golden outputs and batch sizes fit its model's inputs and outputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalsuites.schema import TOKEN_AGREEMENT, Problem, Suite, TaskSpec
from pilotlab import genai
from pilotlab.tasks import SCENARIO_SETTINGS

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
        if task.scenario == "generative":
            problems += generative_problems(i, task, models[task.model], datasets.get(task.dataset or ""),
                                            datasets.get(task.golden or ""),
                                            any(c.metric == TOKEN_AGREEMENT for c in suite.criteria_for(task.name)))
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


def generative_problems(i: int, task: TaskSpec, model: tuple[list[Any], list[Any]], data: dict[str, np.ndarray] | None,
                        golden: dict[str, np.ndarray] | None, agreement_graded: bool) -> list[Problem]:
    """A generative task: the model is a KV-cache decoder (pilotlab.genai), the dataset holds its prompts as token
    ids, and the golden holds a reference decode covering every generated token and/or reference log-likelihoods
    for the scored windows."""
    try:
        spec = genai.decoder_spec(*model)
    except genai.NotADecoder as e:
        return [Problem(f"tasks[{i}].model", None, str(e))]
    defaults = SCENARIO_SETTINGS["generative"]
    setting = {k: int(task.settings.get(k, defaults[k].default))
               for k in ("max_new_tokens", "perplexity_windows", "perplexity_tokens")}
    if data is None:
        return []
    ids = data.get(genai.INPUT_IDS)
    field = f"tasks[{i}].dataset"
    if ids is None or ids.ndim != 2 or ids.dtype != np.int64 or 0 in ids.shape:
        have = ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in sorted(data.items())) or "none"
        return [Problem(field, None, f"dataset {task.dataset!r} must hold {genai.INPUT_IDS!r} int64 [prompts, length] "
                                     f"(the prompts as token ids); it holds {have}")]
    out: list[Problem] = []
    if ids.min() < 0 or ids.max() >= spec.vocab:
        out.append(Problem(field, None, f"token ids run from {ids.min()} to {ids.max()}, outside the model's "
                                        f"vocabulary of {spec.vocab}"))
    prompts, length = ids.shape
    windows, tokens = setting["perplexity_windows"], setting["perplexity_tokens"] or length
    if windows > prompts:
        out.append(Problem(f"tasks[{i}].settings.perplexity_windows", None,
                           f"{windows} windows, but dataset {task.dataset!r} holds {prompts} rows"))
    if windows and not 2 <= tokens <= length:
        out.append(Problem(f"tasks[{i}].settings.perplexity_tokens", None,
                           f"scores {tokens} tokens of windows of {length}; use 2..{length} (0: all)"))
    if golden is None:
        return out
    gfield = f"tasks[{i}].golden"
    unknown = sorted(set(golden) - set(genai.GOLDEN_ARRAYS))
    if unknown:
        out.append(Problem(gfield, None, f"golden {task.golden!r} holds {', '.join(unknown)}; a generative golden "
                                         f"holds {' and/or '.join(genai.GOLDEN_ARRAYS)}"))
    ref = golden.get(genai.GENERATED_IDS)
    if ref is not None:
        if ref.ndim != 2 or not np.issubdtype(ref.dtype, np.integer):
            out.append(Problem(gfield, None, f"{genai.GENERATED_IDS!r} must be integer [prompts, tokens], got "
                                             f"{ref.dtype}{list(ref.shape)}"))
        elif ref.shape[0] > prompts or ref.shape[1] < setting["max_new_tokens"]:
            out.append(Problem(gfield, None, f"{genai.GENERATED_IDS!r} is {list(ref.shape)}: it must cover every "
                                             f"generated token, at most {prompts} prompts of at least max_new_tokens "
                                             f"{setting['max_new_tokens']}"))
    elif agreement_graded:
        out.append(Problem(gfield, None, f"{TOKEN_AGREEMENT} is graded, but golden {task.golden!r} holds no "
                                         f"{genai.GENERATED_IDS!r}"))
    ll = golden.get(genai.LOG_LIKELIHOODS)
    if ll is not None and (ll.ndim != 2 or not np.issubdtype(ll.dtype, np.floating) or ll.shape[1] != length - 1
                           or ll.shape[0] > prompts):
        out.append(Problem(gfield, None, f"{genai.LOG_LIKELIHOODS!r} must be float [windows <= {prompts}, "
                                         f"{length - 1}], got {ll.dtype}{list(ll.shape)}"))
    elif windows and (ll is None or ll.shape[0] < windows):
        have = "none" if ll is None else f"{ll.shape[0]} windows"
        out.append(Problem(gfield, None, f"perplexity_windows = {windows} needs {genai.LOG_LIKELIHOODS!r} for as "
                                         f"many windows; golden {task.golden!r} has {have}"))
    return out
