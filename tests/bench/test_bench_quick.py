"""Smoke test: bench/harness_overhead.py --quick runs end to end and writes its JSON with four numeric rows."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "harness_overhead.py"

pytest.importorskip("onnxruntime")


@pytest.mark.timeout(60)
def test_harness_overhead_quick(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads((out / "harness_overhead.json").read_text())
    assert (out / "harness_overhead.md").is_file()
    rows = {r["key"]: r for r in doc["rows"]}
    assert set(rows) == {"null", "onnx_add", "digits_logreg", "ppocr_det"}

    must_run = ["null", "digits_logreg"]
    if importlib.util.find_spec("onnx") is not None:
        must_run.append("onnx_add")
    if importlib.util.find_spec("rapidocr_onnxruntime") is not None:
        must_run.append("ppocr_det")
    for key in must_run:
        row = rows[key]
        assert row["status"] == "ok", (key, row["status"])
        for method in ("plain", "ours"):  # column (c) is optional: LoadGen may be absent
            v = row["p50_ns"][method]
            assert isinstance(v, (int, float)) and math.isfinite(v) and v > 0, (key, method, v)
        assert isinstance(row["overhead_us"]["ours"], (int, float))
        lg = row["p50_ns"]["loadgen"]
        assert (lg is None and row["loadgen"] != "ok") or (isinstance(lg, (int, float)) and lg > 0)
