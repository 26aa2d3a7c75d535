"""Smoke test: bench/verify.py --quick builds a 2,000-sample bundle through a real labd and the agent protocol, then
pulls and verifies it with labctl; the JSON has every figure, positive, and verify found the bundle intact."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "verify.py"


def _positive(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.mark.timeout(300)
def test_verify_quick(tmp_path: Path) -> None:
    out, md = tmp_path / "verify.json", tmp_path / "verify.md"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", str(out), "--md", str(md)], cwd=REPO,
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    assert "pull and verify" in md.read_text().lower()
    assert doc["params"]["sizes"] == [2000] and doc["params"]["rounds"] == 1
    assert doc["code"]["commit"] and all(str(f).startswith(str(REPO)) for f in doc["code"]["imports_subprocess"]
                                         .values())
    assert _positive(doc["startup"]["labctl_help"]["wall_s"]["median"])

    [r] = doc["results"]
    assert "error" not in r, r.get("error")
    assert r["size"] == r["samples"] == 2000 and r["rounds_done"] == 1 and "note" not in r
    assert (r["run"]["status"], r["run"]["valid"]) == ("completed", True), r["run"]
    ing = r["ingest"]
    assert sum(ing["latency_per_set"]) == 2000 and ing["acked_batches"] == ing["batches"] > 0
    b = r["bundle"]
    assert _positive(b["mb"]) and _positive(b["largest_sample_mb"]) and b["largest_sample_mb"] < b["mb"]
    assert b["largest_sample_file"].startswith("samples/") and b["sample_files"] > 1
    assert r["issue"]["rc"] == 0 and _positive(r["issue"]["wall_s"])

    for step in ("pull", "verify"):
        s = r[step]
        [run] = s["runs"]
        assert run["rc"] == 0 and run["killed"] is None, run["stderr_tail"]
        assert _positive(run["wall_s"]) and _positive(run["rss_mb"]) and _positive(run["cpu_s"])
        assert s["wall_s"]["median"] == s["wall_s"]["min"] == s["wall_s"]["max"] == run["wall_s"]
        assert s["rss_mb_max"] == run["rss_mb"]
    assert r["verify"]["intact"] is True and r["verify"]["rc"] == [0]
    assert _positive(r["verify_s_per_million"]) and _positive(r["pull_s_per_million"])
    assert isinstance(r["targets"]["verify_met"], bool)
