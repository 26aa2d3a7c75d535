"""The sandbox end to end, through a real labd and agent: a model that never finishes, one that allocates 40 GB and
one whose executor crashes each end `error` with a reason naming the timeout, the memory limit or the signal and
the model, are not retried, do not count against the device, and the same agent then passes a smoke run."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import Labd, labctl, labctl_json, make_token

MODELS = Path(__file__).resolve().parents[1] / "models"
SMOKE = Path(__file__).resolve().parents[2] / "evalsuites" / "smoke"
FAULTS = {  # task name: (model file, settings, what its reason must say)
    "hang": ("hang.onnx", "timeout_s = 3", "timeout:"),
    "alloc40g": ("alloc40g.onnx", "memory_mb = 1024", "memory:"),
    "crash": ("crash_standin.onnx", "", "killed by SIGSEGV"),
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _faults_suite(root: Path) -> Path:
    dest = root / "faults"
    (dest / "models").mkdir(parents=True)
    (dest / "data").mkdir()
    data = dest / "data" / "digits_test.npz"
    shutil.copyfile(SMOKE / "data" / "digits_test.npz", data)
    lines = ['[suite]', 'id = "faults"', 'version = "1.0.0"', 'title = "Faulty models"',
             'description = "Models that hang, allocate 40 GB and crash: the sandbox must contain each."',
             'device_classes = ["smart-terminal"]', '',
             '[artifacts.digits-test]', 'kind = "dataset"', 'source = "path:data/digits_test.npz"',
             f'sha256 = "{_sha(data)}"', f'size = {data.stat().st_size}', 'classification = "public"',
             'regions = ["*"]', '']
    for name, (file, _, _) in FAULTS.items():
        model = dest / "models" / file
        shutil.copyfile(MODELS / file, model)
        lines += [f'[artifacts.{name}-model]', 'kind = "model"', f'source = "path:models/{file}"',
                  f'sha256 = "{_sha(model)}"', f'size = {model.stat().st_size}', '']
    for name, (_, setting, _) in FAULTS.items():
        lines += ['[[tasks]]', f'name = "{name}"', f'model = "{name}-model"', 'dataset = "digits-test"',
                  'scenario = "single-stream"', '[tasks.settings]', 'warmup_queries = 1', 'min_query_count = 10',
                  'min_duration_ms = 0', 'repeats = 1', setting, '']
    for name in FAULTS:
        lines += ['[[criteria]]', f'task = "{name}"', 'metric = "latency_ms.p99"', 'op = "<="', 'threshold = 1000.0',
                  '']
    (dest / "suite.toml").write_text("\n".join(lines))
    shutil.copytree(SMOKE, root / "smoke")
    return root


@pytest.fixture
def lab(tmp_path: Path):  # type: ignore[no-untyped-def]
    lab = Labd(tmp_path / "lab", extra=["--suites", str(_faults_suite(tmp_path / "suites"))]).start()
    yield lab
    lab.stop()


def test_hang_40gb_and_crash_end_error_and_the_agent_goes_on(lab, start_agent, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    crash_sha = _sha(MODELS / "crash_standin.onnx")
    monkeypatch.setenv("PILOTLAB_TEST_EXECUTOR_SIGNAL", f"SIGSEGV@{crash_sha}")
    agent = start_agent(lab, "dut")
    eng = make_token(lab, "engineer")
    submitted = labctl(lab, eng, "run", "submit", "--suite", "faults", "--device", "dut", "--wait", "--json")
    assert submitted.returncode == 3, submitted.stderr  # the contract's exit status for a run that ends in error
    run = json.loads(submitted.stdout)
    assert run["status"] == "error", run
    shown = labctl_json(lab, eng, "run", "show", run["id"])
    by_name = {t["name"]: t for t in shown["tasks"]}
    for name, (file, _, says) in FAULTS.items():
        t = by_name[name]
        assert t["status"] == "error" and t["attempts"] == 1, t  # a model fault is never retried
        assert says in t["reason"] and _sha(MODELS / file) in t["reason"], t["reason"]
    assert "1024 MiB" in by_name["alloc40g"]["reason"] and "3 s" in by_name["hang"]["reason"]
    for t in shown["tasks"]:  # shown with pytest -s
        print(f"{t['name']}: {t['status']}, attempts {t['attempts']}: {t['reason']}")

    devices = {d["name"]: d for d in labctl_json(lab, lab.admin_token, "devices", "list")}
    assert devices["dut"]["status"] in ("online", "busy"), devices["dut"]  # not quarantined for the model's faults
    smoke = labctl_json(lab, eng, "run", "submit", "--suite", "smoke", "--device", "dut", "--wait")
    assert smoke["status"] == "completed" and smoke["verdict"] == "pass", agent.log_text()
    print("next smoke run on the same agent:", smoke)
    assert agent.proc is not None and agent.proc.poll() is None  # the same agent process throughout
