"""CPU features end to end: agents on fake cpuinfo files (an AVX2-only x86 and an AVX-512 VNNI x86) report them;
they reach `labctl devices list`, the fleet selector, report.json and report.html; an int8 task that does not
conform on the x86 without VNNI carries the likely-cause note, and the bundle still verifies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from agents.cpuinfo import parse_flags
from labctl.verify import verify_bundle
from tests.e2e.conftest import Labd, labctl, labctl_json, make_token

ROOT = Path(__file__).resolve().parents[2]
CPUINFO = ROOT / "tests/agents/cpuinfo"
TV = ROOT / "evalsuites/terminal-vision"

# The model is named without "int8": the lab finds it quantized from its own copy of the file.
SUITE = """
[suite]
id = "int8-check"
version = "1.0.0"
title = "int8 conformance check"
description = "The terminal-vision int8 digits model held to exact agreement with fp32, which int8 never meets."
device_classes = ["smart-terminal"]

[artifacts.digits-mlp-q]
kind = "model"
source = "path:digits_mlp_int8.onnx"
sha256 = "{model_sha}"
size = {model_size}

[artifacts.digits-test]
kind = "dataset"
source = "path:digits_test.npz"
sha256 = "{data_sha}"
size = {data_size}
classification = "public"

[artifacts.digits-fp32-golden]
kind = "golden"
source = "path:digits_fp32_golden.npz"
sha256 = "{golden_sha}"
size = {golden_size}
classification = "public"

[[tasks]]
name = "digits-q-single-stream"
model = "digits-mlp-q"
dataset = "digits-test"
golden = "digits-fp32-golden"
scenario = "single-stream"
execution_provider = "CPUExecutionProvider"
[tasks.settings]
warmup_queries = 10
min_query_count = 100
min_duration_ms = 200
[tasks.conformance]
max_abs_err = 0.0

[[criteria]]
id = "exact"
task = "digits-q-single-stream"
metric = "conformance.max_abs_err"
op = "<="
threshold = 0.0
description = "int8 outputs equal to the fp32 golden outputs"
"""


def _suite(root: Path) -> Path:
    import hashlib

    dest = root / "int8-check"
    dest.mkdir(parents=True)
    pins: dict[str, Any] = {}
    for key, rel in (("model", "models/digits_mlp_int8.onnx"), ("data", "data/digits_test.npz"),
                     ("golden", "data/digits_fp32_golden.npz")):
        path = shutil.copy(TV / rel, dest)
        blob = Path(path).read_bytes()
        pins[f"{key}_sha"], pins[f"{key}_size"] = hashlib.sha256(blob).hexdigest(), len(blob)
    (dest / "suite.toml").write_text(SUITE.format(**pins))
    return root


@pytest.fixture
def lab(tmp_path: Path):  # type: ignore[no-untyped-def]
    lab = Labd(tmp_path / "lab", extra=["--suites", str(_suite(tmp_path / "suites"))]).start()
    yield lab
    lab.stop()


def _run(lab: Labd, target: list[str], out: Path) -> dict[str, Any]:
    eng = make_token(lab, "engineer")
    p = labctl(lab, eng, "run", "submit", "--suite", "int8-check", *target, "--wait", "--json")
    assert p.returncode == 1, p.stderr  # completed with verdict fail
    run = json.loads(p.stdout)
    assert labctl(lab, eng, "report", "pull", run["id"], "--out", str(out)).returncode == 0
    assert verify_bundle(out, None)[0] == []
    return dict(json.loads((out / "report.json").read_text()))


def test_flags_reach_the_report_and_explain_int8_failures(lab, start_agent, tmp_path,  # type: ignore[no-untyped-def]
                                                          monkeypatch) -> None:
    for name, cpuinfo in (("haswell", "x86_avx2.txt"), ("cascade", "x86_avx512_vnni.txt")):
        proc = tmp_path / f"proc-{name}"
        proc.mkdir()
        shutil.copy(CPUINFO / cpuinfo, proc / "cpuinfo")
        monkeypatch.setenv("PILOTLAB_PROC_ROOT", str(proc))  # the agent process inherits it
        start_agent(lab, name)
    avx2 = parse_flags((CPUINFO / "x86_avx2.txt").read_text())
    vnni = parse_flags((CPUINFO / "x86_avx512_vnni.txt").read_text())
    devices = {dv["name"]: dv for dv in labctl_json(lab, lab.admin_token, "devices", "list")}
    assert devices["haswell"]["capabilities"]["cpu_flags"] == avx2
    assert devices["cascade"]["capabilities"]["cpu_flags"] == vnni

    report = _run(lab, ["--device", "haswell"], tmp_path / "haswell")
    task = report["tasks"][0]
    assert report["device"]["cpu_flags"] == avx2 and task["environment"]["before"]["cpu_flags"] == avx2
    assert task["verdict"] == "fail" and task["execution_provider"] == "CPUExecutionProvider"
    assert len(task["notes"]) == 1 and task["notes"][0].startswith("likely cause: this x86 CPU has no VNNI")
    html = (tmp_path / "haswell" / "report.html").read_text()
    assert "<mark>avx2</mark>" in html and "(no VNNI)" in html and 'class="note"' in html

    # The selector picks the one device with AVX-512 VNNI.
    report = _run(lab, ["--select", "class=smart-terminal AND cpu_flags HAS avx512_vnni"], tmp_path / "cascade")
    assert [dv["name"] for dv in report["devices"]] == ["cascade"] and report["device"]["cpu_flags"] == vnni
    assert report["tasks"][0]["verdict"] == "fail" and report["tasks"][0]["notes"] == []
    assert "<mark>avx512_vnni</mark>" in (tmp_path / "cascade" / "report.html").read_text()
