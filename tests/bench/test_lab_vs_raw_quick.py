"""Smoke test: bench/lab_vs_raw.py --quick starts a real labd and lab-agent, runs the smoke model once through the
lab and once as a plain loop, and writes its JSON with positive figures for both sides. No timing thresholds."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "lab_vs_raw.py"

pytest.importorskip("onnxruntime")


def _positive(v: object) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


@pytest.mark.timeout(120)
def test_lab_vs_raw_quick(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(out), "--json", str(out / "q.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    doc = json.loads((out / "q.json").read_text())
    assert (out / "lab_vs_raw.md").is_file()
    assert doc["bench"] == "lab_vs_raw" and doc["quick"] is True
    assert doc["target"]["ratio"] == 1.0 and doc["target"]["tolerance"] == 0.03
    [row] = doc["models"]
    assert row["key"] == "smoke" and row["status"] == "ok", row["status"]
    assert row["settings"]["repeats"] == 3
    [r] = row["rounds"]
    assert r["round"] == 1 and r["order"] == "AB"
    for side in ("lab", "plain"):
        s = r[side]
        for key in ("p50_ms", "p99_ms"):
            assert _positive(s[key]), (side, key, s[key])
        assert s["p50_ms"] <= s["p99_ms"]
        assert len(s["repeats_p50_ms"]) == len(s["repeats_p99_ms"]) == 3
        assert all(_positive(x) for x in s["repeats_p50_ms"] + s["repeats_p99_ms"])
        assert s["p50_ms"] == sorted(s["repeats_p50_ms"])[1]  # the median repeat by p50
        assert len(s["steal_share"]) == 3
        assert all(x is None or 0 <= x <= 1 for x in s["steal_share"])
        assert s["queries"] >= 50
    assert r["lab"]["valid"], r["lab"]["validity_reasons"]
    assert _positive(r["ratio_p50"]) and _positive(r["ratio_p99"])
    summ = row["summary"]
    assert summ["rounds"] == 1
    for key in ("ratio_p50", "ratio_p99"):
        assert set(summ[key]) == {"median", "min", "max", "q1", "q3", "iqr"}
        assert _positive(summ[key]["median"])
    assert isinstance(summ["within_target_p50"], bool)
