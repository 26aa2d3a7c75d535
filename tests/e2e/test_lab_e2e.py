"""End to end with real processes: enrol, dispatch, artifacts, results, reports, metrics, health."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.e2e.conftest import labctl, labctl_json, make_token, wait_until

CONTRACT_TASK_KEYS = {"id", "name", "model", "scenario", "execution_provider", "settings", "metrics", "verdict",
                      "attempts"}


def _submit(lab, token, device="dev1", suite="smoke"):  # type: ignore[no-untyped-def]
    p = labctl(lab, token, "run", "submit", "--suite", suite, "--device", device, "--wait", "--json")
    return p.returncode, json.loads(p.stdout) if p.stdout.strip() else None, p.stderr


def test_smoke_run_end_to_end(labd, start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent(labd, "dev1", extra=["--region", "eu-west", "--tag", "site=lab2"])
    engineer = make_token(labd, "engineer")

    devices = labctl_json(labd, engineer, "devices", "list")
    assert [d["name"] for d in devices] == ["dev1"]
    dev = devices[0]
    assert set(dev) >= {"name", "class", "status", "region", "tags", "capabilities"}
    assert dev["class"] == "smart-terminal" and dev["region"] == "eu-west" and dev["tags"] == {"site": "lab2"}
    caps = dev["capabilities"]
    assert caps["cpu_cores"] > 0 and caps["memory_bytes"] > 0 and caps["arch"]
    assert "CPUExecutionProvider" in caps["providers"] and caps["onnxruntime_version"]

    suites = labctl_json(labd, engineer, "suites", "list")
    assert any(s["id"] == "smoke" and s["digest"].startswith("sha256:") for s in suites)

    rc, run, err = _submit(labd, engineer)
    assert rc == 0, err + agent.log_text()
    assert run["status"] == "completed" and run["verdict"] == "pass"

    shown = labctl_json(labd, engineer, "run", "show", run["id"])
    assert shown["id"] == run["id"] and shown["status"] == "completed" and shown["verdict"] == "pass"
    assert [set(t) >= {"id", "name", "status", "device", "attempts"} for t in shown["tasks"]] == [True]
    assert shown["tasks"][0]["device"] == "dev1" and shown["tasks"][0]["attempts"] == 1
    assert run["id"] in [r["id"] for r in labctl_json(labd, engineer, "run", "list")]

    watch = labctl(labd, engineer, "run", "watch", run["id"])
    assert watch.returncode == 0 and "digits-single-stream" in watch.stdout

    out = tmp_path / "report"
    pull = labctl(labd, engineer, "report", "pull", run["id"], "--out", str(out))
    assert pull.returncode == 0, pull.stderr
    assert "digits-single-stream" in pull.stdout and "PASS" in pull.stdout
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    assert report["run"]["id"] == run["id"] and report["run"]["verdict"] == "pass"
    assert set(report["run"]["suite"]) >= {"id", "version", "digest"}
    assert set(report["device"]) >= {"name", "class", "region", "agent_version", "onnxruntime_version", "providers"}
    task = report["tasks"][0]
    assert set(task) >= CONTRACT_TASK_KEYS
    m = task["metrics"]
    lat = m["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and lat["n"] >= 300
    assert m["throughput_per_s"] > 0
    assert m["accuracy"]["n"] == 360 and 0.9 < m["accuracy"]["value"] <= 1
    assert m["accuracy"]["ci95"][0] < m["accuracy"]["value"] < m["accuracy"]["ci95"][1]
    assert m["energy"]["source"] == "unavailable"
    assert task["model"]["sha256"] == hashlib.sha256(
        Path("evalsuites/smoke/models/digits_logreg.onnx").read_bytes()).hexdigest()
    assert task["execution_provider"] == "CPUExecutionProvider" and task["settings"]["min_query_count"] == 300

    pub = tmp_path / "lab.pem"
    pub.write_text(labctl(labd, engineer, "lab", "pubkey").stdout)
    ok = labctl(labd, None, "report", "verify", str(out), "--pubkey", str(pub))
    assert ok.returncode == 0, ok.stderr

    metrics = labd.metrics()
    assert "labd_connected_agents 1.0" in metrics
    assert 'labd_tasks{state="completed"} 1.0' in metrics
    ingested = [ln for ln in metrics.splitlines() if ln.startswith('labd_results_ingested_total{kind="latency"}')]
    rows = sum(np.load(f).size for f in (out / "samples/digits-single-stream").glob("latency*.npy"))
    assert len(list((out / "samples/digits-single-stream").glob("latency_repeat-*.npy"))) == 3  # three repeats
    assert ingested and float(ingested[0].split()[-1]) == rows
    assert "labd_dispatch_latency_seconds_count 1.0" in metrics


def test_health_and_reflection(labd) -> None:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(labd.addr) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="pilotlab.v1.LabService"),
                                                    timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        answers = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                 timeout=10))
        names = {s.name for s in answers[0].list_services_response.service}
        assert {"pilotlab.v1.AgentService", "pilotlab.v1.ArtifactService", "pilotlab.v1.LabService",
                "grpc.health.v1.Health"} <= names


def test_corrupted_cache_entry_is_refetched(labd, start_agent) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent(labd, "dev1")
    engineer = make_token(labd, "engineer")
    assert _submit(labd, engineer)[0] == 0
    model_sha = hashlib.sha256(Path("evalsuites/smoke/models/digits_logreg.onnx").read_bytes()).hexdigest()
    cached = agent.work_dir / "cache" / model_sha
    assert cached.exists()
    cached.write_bytes(b"\x00" * 64 + cached.read_bytes()[64:])
    rc, run, err = _submit(labd, engineer)
    assert rc == 0 and run["verdict"] == "pass", err
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == model_sha
    assert "corrupted; refetching" in agent.log_text()


def test_agent_keeps_identity_across_restart(labd, start_agent) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent(labd, "dev1")
    cred = json.loads((agent.work_dir / "device.json").read_text())
    agent.stop()
    wait_until(lambda: not any(d["status"] != "offline" for d in
                               labctl_json(labd, labd.admin_token, "devices", "list")), 30, "device offline")
    again = start_agent(labd, "dev1", token="not-needed-once-enrolled")
    assert json.loads((again.work_dir / "device.json").read_text())["device_id"] == cred["device_id"]
    assert len(labctl_json(labd, labd.admin_token, "devices", "list")) == 1
    assert _submit(labd, make_token(labd, "engineer"))[0] == 0
