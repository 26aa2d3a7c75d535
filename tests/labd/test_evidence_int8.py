"""The likely-cause note for an int8 task that does not conform on an x86 CPU without VNNI, the quantized-ONNX
check behind it, and how report.html shows the CPU's features and the note."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agents.cpuinfo import parse_flags
from labd.evidence import int8
from labd.evidence.html import render_html

ROOT = Path(__file__).resolve().parents[2]
CPUINFO = ROOT / "tests/agents/cpuinfo"
AVX2 = parse_flags((CPUINFO / "x86_avx2.txt").read_text())
VNNI = parse_flags((CPUINFO / "x86_avx512_vnni.txt").read_text())
ARM = parse_flags((CPUINFO / "arm64_board.txt").read_text())
INT8_MODEL = ROOT / "evalsuites/terminal-vision/models/digits_mlp_int8.onnx"
FP32_MODEL = ROOT / "evalsuites/terminal-vision/models/digits_mlp_fp32.onnx"


def crit(metric: str, verdict: str, value: float | None = 0.5, cid: str = "") -> dict[str, Any]:
    return {"id": cid or metric, "metric": metric, "op": "<=", "threshold": 0.15, "rule": "point", "value": value,
            "verdict": verdict, "description": "", "required": True}


def task(name: str = "digits-int8-single-stream", model: str = "digits-mlp-int8",
         ep: str = "CPUExecutionProvider", criteria: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    if criteria is None:
        criteria = [crit("accuracy", "pass", 0.97), crit("conformance.max_abs_err", "fail", 0.4)]
    return {"id": "t1", "name": name, "device": "kiosk", "model": {"name": model, "sha256": "0" * 64},
            "execution_provider": ep, "criteria": criteria}


def test_note_on_avx2_x86_without_vnni() -> None:
    note = int8.no_vnni_note(task(), AVX2)
    assert note is not None and note.startswith("likely cause: this x86 CPU has no VNNI")
    for words in ("VPMADDUBSW", "AVX2", "reduce_range", "U8U8", "full-range int8 weights", "16-bit"):
        assert words in note


def test_note_on_sse4_only_x86_names_sse_kernels() -> None:
    note = int8.no_vnni_note(task(), ["sse", "sse2", "sse4_1", "sse4_2", "ssse3"])
    assert note is not None and "SSE4" in note and "(PMADDUBSW)" in note


@pytest.mark.parametrize("flags", [VNNI, [*AVX2, "avx_vnni"], [*AVX2, "amx_int8", "amx_tile"]],
                         ids=["avx512_vnni", "avx_vnni", "amx_int8"])
def test_no_note_with_vnni(flags: list[str]) -> None:
    assert int8.no_vnni_note(task(), flags) is None


@pytest.mark.parametrize("flags", [ARM, []], ids=["arm64", "unknown"])
def test_no_note_off_x86_or_when_flags_unknown(flags: list[str]) -> None:
    assert int8.no_vnni_note(task(), flags) is None


def test_no_note_on_another_provider() -> None:
    assert int8.no_vnni_note(task(ep="CUDAExecutionProvider"), AVX2) is None
    assert int8.no_vnni_note(task(ep=""), AVX2) is None


@pytest.mark.parametrize("criteria", [
    [crit("conformance.max_abs_err", "pass", 0.01)],
    [crit("accuracy", "fail", 0.5), crit("latency_ms.p99", "fail", 20.0)],
    [crit("conformance.max_abs_err", "fail", None)],  # not measured: the task broke, not the arithmetic
    [],
], ids=["conforms", "other-criteria-fail", "not-measured", "no-criteria"])
def test_no_note_without_a_measured_conformance_failure(criteria: list[dict[str, Any]]) -> None:
    assert int8.no_vnni_note(task(criteria=criteria), AVX2) is None


def test_int8_by_task_or_model_name_any_case() -> None:
    assert int8.no_vnni_note(task(name="digits-INT8", model="digits-mlp-q"), AVX2)
    assert int8.no_vnni_note(task(name="digits", model="mlp_Int8"), AVX2)
    assert int8.no_vnni_note(task(name="digits-fp32", model="digits-mlp-fp32"), AVX2) is None


def test_int8_by_quantized_model_file() -> None:
    plain = task(name="digits-single-stream", model="digits-mlp-q")
    assert int8.no_vnni_note(plain, AVX2, INT8_MODEL) is not None
    assert int8.no_vnni_note(plain, AVX2, FP32_MODEL) is None


@pytest.mark.parametrize(("model", "quantized"), [
    ("terminal-vision/models/digits_mlp_int8.onnx", True),  # dynamic: DynamicQuantizeLinear + MatMulInteger
    ("accelerator-throughput/models/convnet_int8.onnx", True),  # static QDQ
    ("terminal-vision/models/digits_mlp_fp32.onnx", False),
    ("accelerator-throughput/models/convnet_fp16.onnx", False),
    ("smoke/models/digits_logreg.onnx", False),
])
def test_quantized_onnx_shipped_models(model: str, quantized: bool) -> None:
    assert int8.quantized_onnx(ROOT / "evalsuites" / model) is quantized


def test_quantized_onnx_edge_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert int8.quantized_onnx(tmp_path / "missing.onnx") is False
    weights_only = tmp_path / "w.onnx"
    weights_only.write_bytes(b"\x00" * 100 + b"DequantizeLinear" + b"\x00" * 100)  # int8 storage, float math
    assert int8.quantized_onnx(weights_only) is False
    split = tmp_path / "split.onnx"
    split.write_bytes(b"\x00" * 1000 + b"QLinearConv" + b"\x00" * 1000)
    monkeypatch.setattr(int8, "_CHUNK", 1005)  # the op name straddles two chunks
    assert int8.quantized_onnx(split) is True


def test_task_notes_reads_the_model_only_when_needed() -> None:
    calls: list[int] = []

    def path() -> Path:
        calls.append(1)
        return INT8_MODEL

    assert int8.task_notes(task(criteria=[crit("conformance.max_abs_err", "pass", 0.01)]), AVX2, path) == []
    assert calls == []
    notes = int8.task_notes(task(name="digits", model="mlp"), AVX2, path)
    assert len(notes) == 1 and notes[0].startswith("likely cause") and calls == [1]
    assert int8.task_notes(task(), VNNI, lambda: None) == []


def test_int8_relevant_and_x86_without_vnni() -> None:
    assert int8.int8_relevant(AVX2) == ["avx2"]
    assert int8.int8_relevant(VNNI) == ["avx2", "avx512f", "avx512_vnni"]
    assert int8.int8_relevant(ARM) == ["asimddp", "i8mm"]
    assert int8.x86_without_vnni(AVX2) and not int8.x86_without_vnni(VNNI)
    assert not int8.x86_without_vnni(ARM) and not int8.x86_without_vnni([])


# --- report.html ----------------------------------------------------------------------------------------------
def report(flags: list[str], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    dev = {"name": "kiosk", "class": "smart-terminal", "region": "eu", "os": "Linux", "os_release": "6.8",
           "arch": "x86_64", "cpu_model": "Test CPU", "cpu_cores": 4, "memory_bytes": 2**32, "agent_version": "0.1.0",
           "onnxruntime_version": "1.20.1", "providers": ["CPUExecutionProvider"], "cpu_flags": flags}
    return {"report_id": "r1", "issued": "2025-01-01T00:00:00.000Z", "lab": {"name": "lab"}, "grade": None,
            "run": {"id": "run-1", "status": "completed", "verdict": "fail", "reason": "", "submitted": None,
                    "finished": None, "suite": {"id": "s", "version": "1", "digest": "sha256:x", "title": "S"}},
            "device": dev, "devices": [dev], "tasks": tasks, "statement": "relates only to the item tested"}


def html_task(flags: list[str], env_flags: list[str] | None = None) -> dict[str, Any]:
    t = task()
    t.update({"status": "completed", "verdict": "fail", "reason": "", "scenario": "single-stream", "attempts": 1,
              "metrics": {}, "settings": {}, "phases": {}, "samples": {},
              "environment": {"before": {"cpu_governor": "performance", "cpu_flags": env_flags or flags}}})
    t["notes"] = int8.task_notes(t, flags, lambda: None)
    return t


def test_html_highlights_int8_features_and_shows_all() -> None:
    html = render_html(report(VNNI, [html_task(VNNI)]), {})
    assert "CPU features" in html
    assert "<mark>avx512_vnni</mark>" in html and "<mark>avx2</mark>" in html and "<mark>avx512f</mark>" in html
    assert f"all {len(VNNI)} features" in html and " avx512bw " in html and "(no VNNI)" not in html
    assert "likely cause" not in html


def test_html_says_no_vnni_and_puts_the_note_after_the_failing_criterion() -> None:
    html = render_html(report(AVX2, [html_task(AVX2)]), {})
    assert "<mark>avx2</mark>" in html and "(no VNNI)" in html
    rows = re.findall(r"<tr.*?</tr>", html.split("<h3>Criteria</h3>", 1)[1].split("</table>", 1)[0], re.S)
    failing = next(i for i, r in enumerate(rows) if "conformance.max_abs_err" in r)
    assert 'class="note"' in rows[failing + 1] and "likely cause: this x86 CPU has no VNNI" in rows[failing + 1]
    assert html.count("likely cause") == 1


def test_html_environment_tells_flags_against_the_device() -> None:
    same = render_html(report(AVX2, [html_task(AVX2)]), {})
    assert f"{len(AVX2)} features, as enrolled" in same
    moved = render_html(report(AVX2, [html_task(AVX2, env_flags=VNNI)]), {})
    assert "+avx512_vnni" in moved


def test_html_without_flags() -> None:
    html = render_html(report([], [html_task([])]), {})
    assert "not reported" in html and "likely cause" not in html
