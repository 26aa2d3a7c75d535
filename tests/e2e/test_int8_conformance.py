"""The portable int8 models conform through a real labd and agent on this CPU, whatever its instruction set:
terminal-vision's int8 task, and a copy of accelerator-throughput switched to the CPU provider (fp32, fp16, int8)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from evalsuites import builtin_suites_dir
from labctl.verify import verify_bundle
from tests.e2e.conftest import Labd, labctl, make_token


def _cpu_copy(root: Path) -> Path:
    """accelerator-throughput on the CPU provider, with shorter sweeps (same models, goldens and tolerances)."""
    dest = root / "accelerator-throughput-cpu"
    shutil.copytree(builtin_suites_dir() / "accelerator-throughput", dest)
    toml = (dest / "suite.toml").read_text()
    toml = toml.replace('id = "accelerator-throughput"', 'id = "accelerator-throughput-cpu"', 1)
    toml = toml.replace('"CUDAExecutionProvider"', '"CPUExecutionProvider"')
    toml = toml.replace("batch_sizes = [1, 4, 16, 64]", "batch_sizes = [1, 16]")
    toml = re.sub(r"min_duration_ms = \d+", "min_duration_ms = 200", toml)
    toml = re.sub(r"min_query_count = \d+", "min_query_count = 5", toml)
    (dest / "suite.toml").write_text(toml)
    return root


def _conformance_criteria(report: dict) -> dict[str, list[dict]]:
    return {t["name"]: [c for c in t["criteria"] if c["metric"].startswith("conformance.")] for t in report["tasks"]}


def _run(lab: Labd, token: str, suite: str, device: str, out: Path) -> dict:
    p = labctl(lab, token, "run", "submit", "--suite", suite, "--device", device, "--wait", "--json", timeout=300)
    run = json.loads(p.stdout)
    assert run["status"] == "completed", (run, p.stderr)
    assert labctl(lab, token, "report", "pull", run["id"], "--out", str(out)).returncode == 0
    assert verify_bundle(out, None)[0] == []
    return dict(json.loads((out / "report.json").read_text()))


def test_int8_conforms_on_this_cpu(tmp_path: Path, start_agent) -> None:  # type: ignore[no-untyped-def]
    lab = Labd(tmp_path / "lab", extra=["--suites", str(_cpu_copy(tmp_path / "suites"))]).start()
    try:
        start_agent(lab, "board", device_class="accelerator-board")
        eng = make_token(lab, "engineer")

        report = _run(lab, eng, "accelerator-throughput-cpu", "board", tmp_path / "acc")
        conf = _conformance_criteria(report)
        assert set(conf) == {"convnet-fp32-offline", "convnet-fp16-offline", "convnet-int8-offline"}
        for task, criteria in conf.items():
            assert criteria, task
            for c in criteria:
                assert c["verdict"] == "pass", (task, c)
        int8 = next(t for t in report["tasks"] if t["name"] == "convnet-int8-offline")
        assert int8["metrics"]["conformance"]["n"] == 64
        assert int8["metrics"]["conformance"]["max_abs_err"] <= 0.094
    finally:
        lab.stop()
