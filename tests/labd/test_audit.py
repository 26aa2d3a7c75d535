"""The audit log without gRPC: each token, run, device and report action records its actor, role, action, target and
detail (labd's own health decisions as actor labd, role system), and a run's signed report names the actions that
touched it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labctl.verify import verify_bundle
from labd.evidence.bundle import report_bundle
from labd.evidence.keys import Issuer, load_or_create_signing_key
from labd.evidence.report_json import AFTER_END_MS
from labd.handlers import agents, audit, devices, runs
from labd.scheduler.health import QUARANTINE_AFTER
from labd.state import AuditEntry
from pilotlab import domain as d
from pilotlab import dsse
from tests.labd.conftest import ENGINEER, Parts

ADMIN = d.Principal(d.Role.ADMIN, "tok-admin")
AGENT = d.Principal(d.Role.AGENT, "tok-agent")
CERTIFIER = d.Principal(d.Role.CERTIFIER, "tok-cert")


def seen(entries: list[AuditEntry]) -> list[tuple[str, str, str, str, str]]:
    return [(e.actor, e.role, e.action, e.target, e.detail) for e in entries]


def enrol(parts: Parts, name: str) -> d.Device:
    dev, _ = agents.enrol(parts.store, parts.clock, name, "robot", "eu", {}, d.Capabilities(), b"", AGENT)
    return dev


def test_runs_and_devices_are_audited_with_who_did_what(parts: Parts) -> None:
    enrol(parts, "r1")
    run = runs.submit_run(parts.store, parts.sessions, parts.clock, ENGINEER,
                          runs.SubmitOptions(suite_id="smoke", device="r1", priority=5))
    runs.cancel_run(parts.store, parts.clock, run.id, "wrong firmware", ENGINEER)
    for state in ("draining", "active", "quarantined"):
        devices.set_state(parts.store, "r1", state, ADMIN, parts.clock)
    assert seen(parts.store.list_audit(run.id)) == [
        ("tok-eng", "engineer", "run.cancel", run.id, "wrong firmware"),
        ("tok-eng", "engineer", "run.submit", run.id, f"smoke@{parts.suite.version} on r1, priority 5")]
    assert seen(parts.store.list_audit("r1")) == [
        ("tok-admin", "admin", "device.quarantine", "r1", "active -> quarantined"),
        ("tok-admin", "admin", "device.release", "r1", "draining -> active"),
        ("tok-admin", "admin", "device.drain", "r1", "active -> draining"),
        ("tok-agent", "agent", "device.enrol", "r1", "class robot, region eu")]
    assert all(e.time_ms == parts.clock.now_ms() for e in parts.store.list_audit())


def test_health_quarantine_and_release_are_labds_own(parts: Parts) -> None:
    dev = enrol(parts, "r1")
    for _ in range(QUARANTINE_AFTER):
        health_run = parts.health.after_attempt(dev.id, infra_error=True)
    assert health_run is not None and parts.store.get_device(dev.id).state == "quarantined"
    [quarantined, _] = parts.store.list_audit("r1")
    assert seen([quarantined]) == [("labd", "system", "device.quarantine", "r1",
                                    f"{QUARANTINE_AFTER} consecutive infrastructure errors")]
    assert seen(parts.store.list_audit(health_run)) == [
        ("labd", "system", "run.submit", health_run,
         f"health check of r1 (smoke@{parts.suite.version}) after its quarantine")]

    task, att = parts.claim(dev)
    parts.store.finish_attempt(d.AttemptFinish(att.id, d.Outcome.OK), task_status=d.Status.COMPLETED,
                               verdict=d.Verdict.PASS, metrics={}, reason="", now_ms=parts.clock.now_ms())
    parts.health.run_ended(parts.store.get_run(task.run_id))
    assert parts.store.get_device(dev.id).state == "active"
    assert seen(parts.store.list_audit("r1", limit=1)) == [
        ("labd", "system", "device.release", "r1", f"passed its health check {health_run}")]


def test_list_handler_bounds_its_limit(parts: Parts) -> None:
    for i in range(3):
        enrol(parts, f"r{i}")
    assert [e.target for e in audit.list_audit(parts.store)] == ["r2", "r1", "r0"]
    assert [e.target for e in audit.list_audit(parts.store, "r1")] == ["r1"]
    assert [e.target for e in audit.list_audit(parts.store, limit=1)] == ["r2"]
    with pytest.raises(d.Invalid, match="--limit must be between 1 and 10000"):
        audit.list_audit(parts.store, limit=10_001)


def _unpack(files: dict[str, bytes], root: Path) -> dict[str, Any]:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    report: dict[str, Any] = json.loads(files["report.json"])
    return report


def test_the_signed_report_names_the_actions_that_touched_the_run(parts: Parts, tmp_path: Path) -> None:
    ran, _ = enrol(parts, "r1"), enrol(parts, "r2")
    run = runs.submit_run(parts.store, parts.sessions, parts.clock, ENGINEER,
                          runs.SubmitOptions(suite_id="smoke", device="r1"))
    parts.clock.advance(1_000)
    parts.claim(ran)
    parts.clock.advance(1_000)
    for _ in range(QUARANTINE_AFTER):  # r1 ran a task of the run and is quarantined while it runs
        parts.health.after_attempt(ran.id, infra_error=True)
    devices.set_state(parts.store, "r2", "quarantined", ADMIN, parts.clock)  # r2 ran none of its tasks
    parts.clock.advance(1_000)
    runs.cancel_run(parts.store, parts.clock, run.id, "bench power cut", ENGINEER)
    parts.clock.advance(AFTER_END_MS + 1)
    devices.set_state(parts.store, "r1", "quarantined", ADMIN, parts.clock)  # after the run: not the run's

    lab = tmp_path / "lab"
    lab.mkdir()
    issuer = Issuer("PilotLab test lab", load_or_create_signing_key(lab))
    pubkey = tmp_path / "lab.pub.pem"
    pubkey.write_text(dsse.public_pem(issuer.key.public_key()))
    report = _unpack(report_bundle(parts.store, issuer, parts.clock, run.id, who=CERTIFIER), tmp_path / "first")
    assert run.submitted_ms == 1_700_000_000_000  # the fake clock's start: 2023-11-14T22:13:20Z
    assert report["audit"] == [
        {"time": "2023-11-14T22:13:20.000Z", "actor": "tok-eng", "role": "engineer", "action": "run.submit",
         "target": run.id, "detail": f"smoke@{parts.suite.version} on r1"},
        {"time": "2023-11-14T22:13:22.000Z", "actor": "labd", "role": "system", "action": "device.quarantine",
         "target": "r1", "detail": f"{QUARANTINE_AFTER} consecutive infrastructure errors"},
        {"time": "2023-11-14T22:13:23.000Z", "actor": "tok-eng", "role": "engineer", "action": "run.cancel",
         "target": run.id, "detail": "bench power cut"}]
    html = (tmp_path / "first" / "report.html").read_text()
    assert "Actions on this run" in html and "bench power cut" in html and "device.quarantine" in html
    assert verify_bundle(tmp_path / "first", pubkey)[0] == []  # the entries are inside the signed report

    # Pulls are recorded (not in the report); an amendment is, in the report that replaces the first.
    again = _unpack(report_bundle(parts.store, issuer, parts.clock, run.id, who=CERTIFIER), tmp_path / "again")
    assert again == report
    amended = _unpack(report_bundle(parts.store, issuer, parts.clock, run.id, "wrong bench named", ENGINEER),
                      tmp_path / "amended")
    assert amended["audit"][:3] == report["audit"]
    assert {k: amended["audit"][3][k] for k in ("actor", "role", "action", "target", "detail")} == {
        "actor": "tok-eng", "role": "engineer", "action": "report.amend", "target": run.id,
        "detail": f"replaces report {report['report_id']}: wrong bench named"}
    assert verify_bundle(tmp_path / "amended", pubkey)[0] == []
    assert seen(parts.store.list_audit(run.id, limit=4)) == [
        ("tok-eng", "engineer", "report.pull", run.id, f"report {amended['report_id']}"),
        ("tok-eng", "engineer", "report.amend", run.id, amended["audit"][3]["detail"]),
        ("tok-cert", "certifier", "report.pull", run.id, f"report {report['report_id']}"),
        ("tok-cert", "certifier", "report.pull", run.id, f"report {report['report_id']}")]

    # An entry altered after signing is caught by the verifier like any other change to report.json.
    first = tmp_path / "first" / "report.json"
    doc = json.loads(first.read_bytes())
    doc["audit"][2]["actor"] = "tok-someone-else"
    first.write_text(json.dumps(doc))
    problems, _ = verify_bundle(tmp_path / "first", pubkey)
    assert any("report.json" in p for p in problems), problems
