"""int8 inference on CPUs: the instruction-set features that decide how it is computed, and the likely-cause note
a report gives when an int8 task does not conform on an x86 CPU without VNNI.

The note is given for a task that
- is int8: its model's or its task's name contains "int8" (any case), or the lab's copy of the model is an ONNX
  graph with integer-quantized operators (QLinear*, MatMulInteger, ConvInteger, QuantizeLinear or
  DynamicQuantizeLinear; a graph with DequantizeLinear alone holds int8 weights but computes in float);
- ran on CPUExecutionProvider;
- has a `conformance.*` criterion that was measured and failed;
- ran on a device whose `cpu_flags` are known, name an x86 CPU (`avx2` or `sse4_2`) and contain none of
  `avx512_vnni`, `avx_vnni`, `amx_int8`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Shown highlighted in report.html: the features onnxruntime's int8 (and int8-dot-product) kernels use.
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile", "asimddp", "i8mm")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
X86_FLAGS = ("avx2", "sse4_2")
CPU_PROVIDER = "CPUExecutionProvider"

_QUANTIZED_OPS = re.compile(rb"QLinear[A-Z]\w*|MatMulInteger|ConvInteger|(?<!De)QuantizeLinear")
_SCAN_LIMIT = 64 * 2**20  # an ONNX file lists its nodes before the weights (protobuf field order)
_CHUNK = 2**20


def int8_relevant(flags: list[str]) -> list[str]:
    """The device's int8-relevant features, in INT8_FLAGS order."""
    have = set(flags)
    return [f for f in INT8_FLAGS if f in have]


def x86_without_vnni(flags: list[str]) -> bool:
    """An x86 CPU (its features are known) with none of the VNNI int8 dot-product instructions."""
    have = set(flags)
    return bool(have & set(X86_FLAGS)) and not have & set(VNNI_FLAGS)


def quantized_onnx(path: Path) -> bool:
    """Whether an ONNX file's graph has integer-quantized operators (scans its first 64 MiB); False if unreadable."""
    try:
        with path.open("rb") as f:
            tail, read = b"", 0
            while read < _SCAN_LIMIT and (chunk := f.read(_CHUNK)):
                read += len(chunk)
                if _QUANTIZED_OPS.search(tail + chunk):
                    return True
                tail = chunk[-32:]
    except OSError:
        return False
    return False


def _named_int8(task: dict[str, Any]) -> bool:
    names = (task.get("name") or "", (task.get("model") or {}).get("name") or "")
    return any("int8" in n.lower() for n in names)


def failing_conformance(task: dict[str, Any]) -> list[dict[str, Any]]:
    """The task's measured `conformance.*` criteria that failed."""
    return [c for c in task.get("criteria") or [] if str(c.get("metric", "")).startswith("conformance.")
            and c.get("verdict") == "fail" and c.get("value") is not None]


def no_vnni_note(task: dict[str, Any], cpu_flags: list[str], model_path: Path | None = None) -> str | None:
    """The likely cause of an int8 task's conformance failure on an x86 CPU without VNNI, or None.

    `task` is the task as report.json has it (name, model.name, execution_provider, criteria); `model_path`, the
    lab's copy of the model, is only read when every other condition holds and the names do not say int8.
    """
    if (not x86_without_vnni(cpu_flags) or task.get("execution_provider") != CPU_PROVIDER
            or not failing_conformance(task)):
        return None
    if not (_named_int8(task) or (model_path is not None and quantized_onnx(model_path))):
        return None
    isa, instr = ("AVX2", "VPMADDUBSW") if "avx2" in cpu_flags else ("SSE4", "PMADDUBSW")
    return (f"likely cause: this x86 CPU has no VNNI (none of {', '.join(VNNI_FLAGS)}); onnxruntime's U8S8 int8 "
            f"kernels on {isa} saturate 16-bit intermediate sums ({instr}), so a model quantized with full-range "
            "int8 weights can lose accuracy here; models quantized with reduce_range (7-bit weights) or U8U8 do not")


def task_notes(task: dict[str, Any], cpu_flags: list[str], model_path: Callable[[], Path | None]) -> list[str]:
    """Every note report.json gives for the task (`tasks[].notes`); `model_path` is called only when needed."""
    notes: list[str] = []
    if failing_conformance(task):
        note = no_vnni_note(task, cpu_flags, model_path())
        if note:
            notes.append(note)
    return notes
