"""A smoke run whose agent is the one CI installs with the oldest supported onnxruntime (PILOTLAB_AGENT_BIN).

Under plain `pytest` the agent is this venv's; `make test-agent-oldest` runs this file with the agent of
.venv-agent-oldest (onnxruntime 1.20.1, numpy 1.26), against labd and labctl of the main venv.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.conftest import AGENT_BIN, labctl, labctl_json, make_token


def _agent_runtime() -> str:
    """The onnxruntime version importable by the python that runs the agent under test."""
    python = AGENT_BIN.parent / "python"
    out = subprocess.run([str(python), "-c", "import onnxruntime; print(onnxruntime.__version__)"],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_smoke_suite_with_the_agents_own_onnxruntime(labd, start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    version = _agent_runtime()
    start_agent(labd, "device-own-ort")
    engineer = make_token(labd, "engineer")
    dev = labctl_json(labd, engineer, "devices", "list")[0]
    assert dev["capabilities"]["onnxruntime_version"] == version

    p = labctl(labd, engineer, "run", "submit", "--suite", "smoke", "--device", "device-own-ort", "--wait", "--json")
    assert p.returncode == 0, p.stderr
    run = json.loads(p.stdout)
    assert run["status"] == "completed" and run["verdict"] == "pass", run

    out = tmp_path / "report"
    certifier = make_token(labd, "certifier")
    pulled = labctl(labd, certifier, "report", "pull", run["id"], "--out", str(out))
    assert pulled.returncode == 0, pulled.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["device"]["onnxruntime_version"] == version
    assert all(t["verdict"] == "pass" for t in report["tasks"])
    verified = labctl(labd, None, "report", "verify", str(out))
    assert verified.returncode == 0, verified.stdout + verified.stderr
