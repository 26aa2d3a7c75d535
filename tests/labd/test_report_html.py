"""report.html as a certifier reads it: tables instead of Python reprs, the criteria that decide the verdict apart
from grade-only ones with the verdict's basis in one sentence, a reason beside every unavailable or invalid figure,
and the ISO/IEC 17025 7.8.2.1 items (report id on every printed page, authorisation, end marker, how to verify)."""

from __future__ import annotations

import re
from typing import Any

from labd.evidence import explain, present
from labd.evidence.html import render_html

FP = "ab" * 32
NO_METER = explain.no_meter([], {})


def crit(cid: str, metric: str, verdict: str, value: float | None, required: bool = True) -> dict[str, Any]:
    return {"id": cid, "metric": metric, "op": "<=", "threshold": 20.0, "rule": "point", "value": value,
            "verdict": verdict, "description": f"{cid} described", "required": required}


def task(name: str = "digits", **kw: Any) -> dict[str, Any]:
    t: dict[str, Any] = {
        "id": f"t-{name}", "name": name, "device": "kiosk", "status": "completed", "verdict": "pass", "reason": "",
        "model": {"name": "m", "sha256": "0" * 64}, "scenario": "single-stream", "attempts": 1,
        "execution_provider": "CPUExecutionProvider", "phases": {}, "samples": {}, "notes": [],
        "metrics": {"latency_ms": {"p50": 0.005491, "p90": 0.0138, "p99": 0.019145, "mean": 0.0077, "n": 58714,
                                   "method": "nearest-rank"}, "throughput_per_s": 117425.27,
                    "energy": {"source": "unavailable", "joules_per_inference": None, "avg_power_w": None}},
        "criteria": [crit("tv1-p99", "latency_ms.p99", "pass", 0.019), crit("tv1-acc", "accuracy", "pass", 0.95),
                     crit("tv2-int8", "conformance.max_abs_err", "fail", 0.4, required=False),
                     crit("tv2-energy", "energy.joules_per_inference", "fail", None, required=False),
                     crit("tv3-p99", "latency_ms.p99", "fail", 0.019, required=False)],
        "settings": {"audit": True, "profile": False, "min_duration_ms": 500, "stability_max_spread": 0.1,
                     "batch_sizes": [1, 8, 32], "timeout_s": 1800, "seed": 0,
                     "limits": {"cpu_seconds": 0.9061080000000001, "pinned": True}},
        "environment": {"before": {"cpu_flags": ["avx2", "sse4_2"], "load_avg_1m": 4.51, "mem_available_mb": 21847},
                        "after": {"cpu_flags": ["avx2", "sse4_2"], "load_avg_1m": 4.6, "mem_available_mb": 21800}},
        "figure_notes": {"energy": NO_METER}}
    t.update(kw)
    return t


def report(tasks: list[dict[str, Any]], verdict: str = "pass", status: str = "completed") -> dict[str, Any]:
    dev = {"name": "kiosk", "class": "smart-terminal", "region": "eu", "os": "Linux", "os_release": "6.8",
           "arch": "x86_64", "cpu_model": "Test CPU", "cpu_cores": 4, "memory_bytes": 2**33, "agent_version": "0.1.0",
           "onnxruntime_version": "1.20.1", "providers": ["CPUExecutionProvider"], "cpu_flags": ["avx2", "sse4_2"]}
    return {"report_id": "rep-0123456789abcdef", "issued": "2026-01-01T00:00:00.000Z",
            "lab": {"name": "Acme Test Lab", "key_id": "ed25519:0011223344556677", "public_key_sha256": FP,
                    "software": "pilotlab 0.1.0"},
            "authorised_by": {"name": "Acme Test Lab", "key_id": "ed25519:0011223344556677", "public_key_sha256": FP,
                              "means": "the lab's Ed25519 signature"},
            "grade": {"scheme": "TV levels", "level": "TV-1", "by_device": {"kiosk": "TV-1"},
                      "levels": [{"name": "TV-1", "description": "basic", "criteria": ["tv1-p99", "tv1-acc"]},
                                 {"name": "TV-2", "description": "int8", "criteria": ["tv2-int8", "tv2-energy"]}]},
            "run": {"id": "run-42", "status": status, "verdict": verdict, "reason": "", "submitted": None,
                    "finished": None, "suite": {"id": "terminal-vision", "version": "2.0.0", "digest": "sha256:x",
                                                "title": "Terminal vision"}},
            "device": dev, "devices": [dev], "tasks": tasks, "statement": "relates only to the item tested"}


def section(html: str, start: str, end: str) -> str:
    return html.split(start, 1)[1].split(end, 1)[0]


def test_settings_and_environment_are_tables_without_python_reprs() -> None:
    html = render_html(report([task()]), {})
    shown = section(html, "<h3>Settings, as the lab assigned and graded them</h3>", "</section>")
    for repr_bit in ("{'", "': ", "True", "False", "[1, 8", "0.9061080000000001"):
        assert repr_bit not in shown, repr_bit
    rows = dict(re.findall(r"<tr><th>(\w+)</th><td>(.*?)</td></tr>", shown))
    assert rows["audit"] == "yes" and rows["min_duration_ms"] == "500 ms" and rows["timeout_s"] == "1,800 s"
    assert rows["batch_sizes"] == "1, 8, 32" and rows["stability_max_spread"] == "10%" and "profile" not in rows
    assert '<table class="kv nested">' in shown and "<td>0.906 s</td>" in shown  # a nested mapping is a sub-table
    env = section(shown, "<h3>Environment of the device</h3>", "</table>")
    assert re.search(r"<th>field</th><th>before</th><th>after</th>", env)  # snapshots side by side, in time order
    assert "<td>4.51</td>" in env and "<td>21,847 MB</td>" in env and "2 features, as enrolled" in env


def test_grade_only_criteria_stand_apart_and_the_verdict_says_what_it_rests_on() -> None:
    t = task()
    html = render_html(report([t]), {})
    decides = section(html, 'id="group-decides-digits"', "</table>")
    grade = section(html, 'id="group-grade-digits"', "</table>")
    assert "tv1-p99" in decides and "tv1-acc" in decides and "tv2-int8" not in decides
    assert "do not affect the verdict" in grade and {"tv2-int8", "tv2-energy", "tv3-p99"} <= set(
        re.findall(r"<code>([\w-]+)</code>", grade))
    basis = ("PASS: all 2 criteria that decide the verdict pass; 3 grade-only criteria do not affect it "
             "(0 pass, 3 fail).")
    assert present.task_basis(t) == basis and basis in html
    assert present.run_basis(report([t])) == basis.replace("pass;", "pass (1 task);") and html.count(basis) == 1
    # A measured-as-missing figure in a criterion says why.
    assert "not measured" in grade and NO_METER in grade


def test_failing_and_unfinished_tasks_state_their_basis() -> None:
    failed = task(verdict="fail", criteria=[crit("a", "latency_ms.p99", "fail", 30.0),
                                            crit("b", "accuracy", "pass", 0.9)])
    assert present.task_basis(failed) == "FAIL: 1 of 2 criteria that decide the verdict fails (a)."
    broken = task(status="error", verdict=None, reason="timed out after 5 s", metrics={}, criteria=[])
    assert present.task_basis(broken).startswith("ERROR: the task did not complete (timed out after 5 s)")
    r = report([failed, task("other")], verdict="fail")
    assert present.run_basis(r) == ("FAIL: 1 of 4 criteria that decide the verdict fails (a in digits); 3 grade-only "
                                    "criteria do not affect it (0 pass, 3 fail).")
    broken["figure_notes"] = explain.figure_notes(broken, [], {})
    html = render_html(report([broken], verdict="", status="error"), {})
    assert "no figures: the task ended error (timed out after 5 s)" in html


def test_every_unavailable_or_invalid_figure_says_why() -> None:
    invalid = {"source": "measured:rapl", "meter": "rapl:package-0", "valid": False, "joules_per_inference": None,
               "avg_power_w": None, "invalid_reasons": ["the window lasts 0.2 s, shorter than 10 update periods"]}
    t = task("measured", metrics={"energy": invalid}, accuracy_metric="top1")
    t["figure_notes"] = explain.figure_notes(t, [], {})
    assert t["figure_notes"]["energy"].startswith("measured by rapl:package-0 but not valid: the window lasts 0.2 s")
    assert t["figure_notes"]["accuracy"] == "not measured: the device returned no predictions to grade"
    html = render_html(report([task(), t]), {})
    notes = section(html, 'id="summary-notes"', "</ol>")
    assert f"digits, energy: {NO_METER}" in notes and "measured, energy: measured by rapl:package-0" in notes
    assert "<b>invalid</b>: measured by rapl:package-0 but not valid" in html
    assert f"<b>unavailable</b>: {NO_METER}" in html


def test_no_meter_reasons_follow_the_enrolled_sensors() -> None:
    assert NO_METER.startswith("the device has no energy meter") and "no tdp_w tag" in NO_METER
    rapl = [{"kind": "rapl", "name": "intel-rapl:0 (package-0)", "readable": False}]
    assert "are not readable by the agent" in explain.no_meter(rapl, {"tdp_w": "15"})
    scpi = [{"kind": "scpi", "name": "scpi://10.0.0.5:5025", "readable": True}]
    assert "did not answer when the agent started" in explain.no_meter(scpi, {})
    obs = {"meter": "scpi://10.0.0.5:5025", "errors": ["timed out"]}
    assert explain.energy({"energy": {"source": "unavailable"}}, obs, scpi, {}) == (
        "the meter scpi://10.0.0.5:5025 gave no samples during the timed runs: timed out")
    estimate = {"source": "estimated:cpu-time-tdp", "joules_per_inference": 1e-4,
                "basis": {"cpu_seconds": 1.5, "tdp_w": 15.0, "cores": 4}}
    assert "an estimate, not a measurement" in (explain.energy({"energy": estimate}, {}, [], {}) or "")


def test_identification_authorisation_verification_and_end_marker() -> None:
    html = render_html(report([task()]), {})
    running = re.findall(r'<div class="running">.*?</div>', html)
    assert len(running) == 2 and all("rep-0123456789abcdef" in r for r in running)  # repeated on printed pages
    assert html.index("<thead><tr><td><div class=\"running\">") < html.index("<h1>")
    auth = section(html, 'id="authorisation"', "</table>")
    assert "Acme Test Lab" in auth and "ed25519:0011223344556677" in auth and FP in auth
    box = section(html, 'id="how-to-verify"', "</div>")
    assert "labctl report verify run-42 --pubkey lab.pem" in box and "labctl lab pubkey &gt; lab.pem" in box
    assert "sha256sum lab.pem" in box and FP in box
    assert html.rstrip().endswith("</html>")
    end = section(html, 'id="end-of-report">', "</div>")
    assert end == "End of report rep-0123456789abcdef" and html.index(end) > html.index('id="how-to-verify"')
    assert "@media print" in html and "size: A4" in html and "break-inside: avoid" in html
    assert "<script" not in html


def test_numbers_round_sensibly_with_units() -> None:
    assert [present.number(v) for v in (1800, 117425.27, 3.14159, 0.005491, 8.5e-05, 0.0)] == [
        "1,800", "117,425", "3.142", "0.00549", "8.5e-05", "0"]
    assert present.scalar("peak_rss_mb", 82.25) == "82.25 MB" and present.scalar("steal_share", 0.021) == "2.1%"
    assert present.scalar("memory_bytes", 2**33) == "8.0 GiB" and present.scalar("x", None) == "—"
    assert str(present.value_html("k", [{"a": 1, "b": True}])).count("<td>") == 2


def test_the_warm_up_is_told_in_the_terms_of_the_tasks_scenario() -> None:
    phases = {"session_create_ms": 612.34, "first_inference_ms": 88.5, "peak_rss_growth_mb": 180.25}
    single = task(phases={**phases, "warmup": {"queries": 64, "ms": 12.0, "settled": True}})
    unsettled = task("slow", phases={**phases, "warmup": {"queries": 900, "ms": 10001.0, "settled": False}})
    # a generative warm-up is a fixed count of whole requests: there is no settling test, so never "not settled"
    chat = task("chat-40", scenario="generative", settings={"max_new_tokens": 32, "warmup_queries": 1},
                phases={**phases, "warmup": {"queries": 1, "ms": 1510.7}})
    assert present.cold_start(chat) == (
        "Cold start: session 612.3 ms, first token (one prompt's prefill) 88.50 ms, RSS growth 180.2 MB; warm-up 1 "
        "untimed request (a prompt and 32 new tokens each) in 1511 ms, the fixed count assigned (decode warm-up has "
        "no settling test)")
    assert present.cold_start(single).endswith("; warm-up 64 queries in 12 ms (median latency settled)")
    assert present.cold_start(unsettled).endswith("(median latency not settled within its time limit)")
    assert present.cold_start(task(phases={"session_create_ms": 5.0})) == (
        "Cold start: session 5.0 ms, first inference —, RSS growth —")
    html = render_html(report([single, unsettled, chat]), {})
    assert html.count("settled") == 2 and "no settling test" in html and "first token (one prompt" in html
