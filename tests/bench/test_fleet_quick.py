"""Smoke test: bench/fleet.py --quick drives 20 simulated agents through one labd (SQLite) over the real gRPC
protocol and reports no lost or duplicated results and a numeric dispatch p99."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "fleet.py"


@pytest.mark.timeout(60)
def test_fleet_quick(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=40)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    doc = json.loads((out / "fleet.json").read_text())
    assert (out / "fleet.md").is_file()
    [r] = doc["results"]
    assert r["db"] == "sqlite" and r["agents"] == 20 and "error" not in r, r.get("error")
    assert r["lost"] == 0 and r["duplicated"] == 0, r["integrity"]
    assert r["errors"] == {}, r["errors"]
    b, v = r["burst"], r["integrity"]
    assert b["finished"] == b["tasks"] == 20 and not b["timed_out"]
    p99 = r["p99_dispatch_ms"]
    assert isinstance(p99, (int, float)) and math.isfinite(p99) and p99 > 0
    assert b["dispatch_ms"]["n"] == 20
    # every run finished and graded; every sample stored exactly once; every duplicate batch ignored
    assert v["runs_completed"] == v["runs_checked"] == v["runs_submitted"] > 0
    assert v["tasks_invalid"] == 0 and v["verdicts"] == {"VERDICT_PASS": v["runs_checked"]}, v["problems"]
    assert v["labd_samples_ingested"] == v["samples_sent_unique"] > 0
    assert v["labd_dup_batches_ignored"] == v["dup_batches_sent"] > 0
    assert v["batch_acks"] == v["batches_sent"]
    assert v["unexpected_assignments"] == 0
