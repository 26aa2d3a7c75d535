"""Every shipped suite runs on a local agent: graded against its criteria, with a grade from its own table;
the accelerator suite's strict execution provider is refused on a CPU-only device, with the reason. terminal-genai is
listed here and run end to end in test_genai.py (once: a language model is the slowest suite to run)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from labctl.verify import verify_bundle
from tests.e2e.conftest import labctl, labctl_json, make_token


def test_shipped_suites_on_local_agents(labd, start_agent, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for cls in ("smart-terminal", "robot", "accelerator-board"):
        start_agent(labd, cls, device_class=cls)
    eng = make_token(labd, "engineer")
    assert {s["id"] for s in labctl_json(labd, eng, "suites", "list")} == {
        "smoke", "terminal-vision", "robot-control", "accelerator-throughput", "terminal-genai"}

    # The three runs go to three devices at once: the periodic loops mostly wait for their next release, so the
    # suites' wall times overlap rather than add up.
    runs = (("robot-control", "robot"), ("terminal-vision", "smart-terminal"),
            ("accelerator-throughput", "accelerator-board"))
    with ThreadPoolExecutor(len(runs)) as pool:
        done = dict(zip((suite for suite, _ in runs), pool.map(
            lambda r: labctl(labd, eng, "run", "submit", "--suite", r[0], "--device", r[1], "--wait", "--json",
                             timeout=300), runs), strict=True))

    for suite, _ in runs[:2]:
        p = done[suite]
        run = json.loads(p.stdout)
        assert run["status"] == "completed", (suite, run, p.stderr)
        out = tmp_path / suite
        assert labctl(labd, eng, "report", "pull", run["id"], "--out", str(out)).returncode == 0
        report = json.loads((out / "report.json").read_text())
        assert report["grade"]["scheme"] and report["grade"]["levels"]
        # The verdict rests on the basic level: a pass means at least the first level was reached.
        if run["verdict"] == "pass":
            assert report["grade"]["level"] is not None
        for task in report["tasks"]:
            assert task["metrics"]["validity"]["valid"], (suite, task["name"], task["metrics"]["validity"])
        assert verify_bundle(out, None)[0] == [], suite
        if suite == "robot-control":
            periodic = {t["name"]: t["metrics"]["periodic"] for t in report["tasks"]}
            assert {p["rate_hz"] for p in periodic.values()} == {100.0, 500.0}
            assert all(p["n"] >= 200 for p in periodic.values())
            assert any("conformance" in t["metrics"] for t in report["tasks"])
        else:
            names = {t["name"]: t for t in report["tasks"]}
            assert any(t["scenario"] == "offline" and len(t["metrics"]["offline"]["by_batch"]) == 3
                       for t in names.values())
            assert any("ocr" in n.lower() or "det" in n.lower() for n in names)

    p = done["accelerator-throughput"]
    run = json.loads(p.stdout)
    assert p.returncode == 3 and run["status"] == "error"
    assert "CUDAExecutionProvider is not available on this device" in run["reason"]
    shown = labctl_json(labd, eng, "run", "show", run["id"])
    assert all(t["attempts"] == 1 for t in shown["tasks"] if t["status"] != "cancelled")  # refusals not retried
