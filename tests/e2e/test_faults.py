"""Fault injection with real processes: lost agents, a killed labd, a cut network, cancels, data zones,
quarantine and health checks, drain and release, queue timeouts. Every run ends with all its results or a reason."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

from evalsuites import builtin_suites_dir
from tests.e2e.conftest import (
    Labd,
    TcpProxy,
    device_online,
    free_port,
    labctl,
    labctl_json,
    make_suite,
    make_token,
    task_phase,
    wait_until,
)

LONG_MS = 4000


@pytest.fixture
def suites(tmp_path: Path) -> Path:
    root = tmp_path / "suites"
    make_suite(root, "long", min_duration_ms=LONG_MS)
    make_suite(root, "zoned", regions=["cn-north"], classification="important")
    make_suite(root, "broken", own_dataset=True)
    return root


def _lab(tmp_path: Path, suites: Path, lease_s: float = 3, **kw) -> Labd:  # type: ignore[no-untyped-def]
    extra = ["--suites", str(suites), "--suites", str(builtin_suites_dir()), "--lease-seconds", str(lease_s)]
    return Labd(tmp_path / "lab", extra=extra, **kw).start()


def _submit(lab: Labd, eng: str, suite: str, *args: str) -> dict:  # type: ignore[type-arg]
    return labctl_json(lab, eng, "run", "submit", "--suite", suite, *args)


def _wait_run(lab: Labd, run_id: str, timeout: float = 90) -> dict:  # type: ignore[type-arg]
    return wait_until(lambda: (r := labctl_json(lab, lab.admin_token, "run", "show", run_id))["status"]
                      in ("completed", "error", "cancelled") and r, timeout, f"run {run_id} to end")


def _latency_n(run: dict) -> int:  # type: ignore[type-arg]
    return int(run["tasks"][0]["metrics"]["latency_ms"]["n"])


def test_agent_killed_mid_task_is_requeued_and_completes(tmp_path, suites, start_agent) -> None:  # type: ignore[no-untyped-def]
    lab = _lab(tmp_path, suites)
    try:
        agent = start_agent(lab, "dev1")
        eng = make_token(lab, "engineer")
        run = _submit(lab, eng, "long", "--device", "dev1")
        wait_until(lambda: task_phase(lab, run["id"]) == "performance", 60, "performance phase")
        agent.stop(signal.SIGKILL)
        again = start_agent(lab, "dev1", token=agent.token)
        done = _wait_run(lab, run["id"])
        assert done["status"] == "completed", done
        task = done["tasks"][0]
        assert task["attempts"] == 2
        assert "agent lost" in task["attempt_history"][0]["reason"]
        # Every sample of the completed attempt, none twice: the bundle holds exactly the counted queries.
        out = tmp_path / "rep"
        assert labctl(lab, eng, "report", "pull", run["id"], "--out", str(out)).returncode == 0
        runs = [np.load(f) for f in sorted((out / "samples/digits-single-stream").glob("latency*.npy"))]
        assert all(np.unique(r["index"]).size == r.size for r in runs)  # none twice
        assert _latency_n(done) in [r.size for r in runs]  # the graded repeat is one of them, whole
        assert labctl(lab, None, "report", "verify", str(out)).returncode == 0
        assert again.proc is not None and again.proc.poll() is None
    finally:
        lab.stop()


def test_labd_killed_mid_task_recovers(tmp_path, suites, start_agent) -> None:  # type: ignore[no-untyped-def]
    lab = _lab(tmp_path, suites, port=free_port())
    try:
        start_agent(lab, "dev1")
        eng = make_token(lab, "engineer")
        run = _submit(lab, eng, "long", "--device", "dev1")
        wait_until(lambda: task_phase(lab, run["id"]) == "performance", 60, "performance phase")
        lab.stop(signal.SIGKILL)
        lab.start()
        done = _wait_run(lab, run["id"])
        assert done["status"] == "completed" and done["tasks"][0]["attempts"] == 1, done
        assert _latency_n(done) >= 300
    finally:
        lab.stop()


def test_network_cut_and_restored(tmp_path, suites, start_agent) -> None:  # type: ignore[no-untyped-def]
    lab = _lab(tmp_path, suites, lease_s=30)  # the cut is shorter than the lease: the attempt survives it
    proxy = TcpProxy(lab.addr)
    try:
        agent = start_agent(lab, "dev1", wait=False)
        agent.stop()
        agent.lab = Labd(lab.data_dir, addr=proxy.addr)  # the agent dials the proxy
        agent.lab.addr = proxy.addr
        agent.start()
        wait_until(lambda: device_online(lab, "dev1"), 60, "agent online through the proxy")
        eng = make_token(lab, "engineer")
        run = _submit(lab, eng, "long", "--device", "dev1")
        wait_until(lambda: task_phase(lab, run["id"]) == "performance", 60, "performance phase")
        proxy.cut()
        wait_until(lambda: not device_online(lab, "dev1"), 30, "the lab to see the device go")
        proxy.restore()
        done = _wait_run(lab, run["id"])
        assert done["status"] == "completed", done
        assert done["tasks"][0]["attempts"] == 1 and _latency_n(done) >= 300
        assert "session to" in agent.log_text()
    finally:
        proxy.close()
        lab.stop()


def test_cancel_during_a_long_task(tmp_path, suites, start_agent) -> None:  # type: ignore[no-untyped-def]
    lab = _lab(tmp_path, suites)
    try:
        agent = start_agent(lab, "dev1")
        eng = make_token(lab, "engineer")
        run = _submit(lab, eng, "long", "--device", "dev1")
        wait_until(lambda: task_phase(lab, run["id"]) == "performance", 60, "performance phase")
        assert labctl_json(lab, eng, "run", "cancel", run["id"])["status"] == "cancelled"
        wait_until(lambda: "finished: cancelled" in agent.log_text(), 30, "the agent to stop at a query boundary")
        after = labctl_json(lab, eng, "run", "show", run["id"])
        assert after["status"] == "cancelled" and after["tasks"][0]["status"] == "cancelled"
        assert after["tasks"][0]["attempt_history"][0]["outcome"] == "cancelled"
        # The device is free again.
        nxt = labctl(lab, eng, "run", "submit", "--suite", "smoke", "--device", "dev1", "--wait", "--json")
        assert nxt.returncode == 0, nxt.stderr
    finally:
        lab.stop()


def test_data_zone_keeps_dataset_home(tmp_path, suites, start_agent) -> None:  # type: ignore[no-untyped-def]
    lab = _lab(tmp_path, suites)
    try:
        start_agent(lab, "eu-kiosk", extra=["--region", "eu-west"])
        start_agent(lab, "cn-kiosk", extra=["--region", "cn-north"])
        eng = make_token(lab, "engineer")
        p = labctl(lab, eng, "run", "submit", "--suite", "zoned", "--select", "class=smart-terminal", "--wait",
                   "--json")
        run = json.loads(p.stdout)
        assert p.returncode == 3 and run["status"] == "error"
        shown = labctl_json(lab, eng, "run", "show", run["id"])
        by_device = {t["device"]: t for t in shown["tasks"]}
        assert by_device["eu-kiosk"]["status"] == "error" and by_device["eu-kiosk"]["attempts"] == 0
        assert "data zone" in by_device["eu-kiosk"]["reason"] and "cn-north" in by_device["eu-kiosk"]["reason"]
        assert by_device["cn-kiosk"]["status"] == "completed"
        out = tmp_path / "rep"
        assert labctl(lab, eng, "report", "pull", run["id"], "--out", str(out)).returncode == 0
        report = json.loads((out / "report.json").read_text())
        ds = {t["device"]: t["dataset"] for t in report["tasks"]}
        assert ds["cn-kiosk"]["sent_to"] == [{"device": "cn-kiosk", "region": "cn-north"}]
        assert ds["eu-kiosk"]["sent_to"] == [] and "data zone" in ds["eu-kiosk"]["withheld"]
    finally:
        lab.stop()


def test_quarantine_health_check_drain_and_release(tmp_path, suites, start_agent) -> None:  # type: ignore[no-untyped-def]
    lab = _lab(tmp_path, suites)
    try:
        start_agent(lab, "dev1")
        eng = make_token(lab, "engineer")
        # Infrastructure errors of the device's own: a directory stands in the way of the broken suite's dataset in
        # the agent's artifact cache (smoke's is another file). A file missing from the lab's own store would be the
        # lab's fault, never counted against the device (tests/e2e/test_zones_and_integrity.py).
        broken = json.loads(labctl(lab, eng, "suites", "show", "broken", "--json").stdout)
        smoke = json.loads(labctl(lab, eng, "suites", "show", "smoke", "--json").stdout)
        dataset = broken["artifacts"]["digits-test"]["sha256"]
        assert dataset != smoke["artifacts"]["digits-test"]["sha256"]
        (tmp_path / "agent-dev1" / "cache" / dataset).mkdir(parents=True)
        failing = labctl(lab, eng, "run", "submit", "--suite", "broken", "--device", "dev1", "--wait", "--json")
        assert failing.returncode == 3
        shown = labctl_json(lab, eng, "run", "show", json.loads(failing.stdout)["id"])
        assert shown["tasks"][0]["attempts"] == 3 and "agent crash" in shown["tasks"][0]["reason"]
        health = next(r for r in labctl_json(lab, eng, "run", "list") if r["kind"] == "health")
        assert health["suite"]["id"] == "smoke"
        assert _wait_run(lab, health["id"])["verdict"] == "pass"
        wait_until(lambda: labctl_json(lab, eng, "devices", "list")[0]["state"] == "active", 30, "release")
        assert 'labd_quarantines_total 1.0' in lab.metrics() and "labd_requeues_total 2.0" in lab.metrics()

        # Drain: no new work until an admin releases the device. Only admins may.
        p = labctl(lab, eng, "devices", "drain", "dev1")
        assert p.returncode == 3 and "may not drain" in p.stderr
        assert labctl_json(lab, lab.admin_token, "devices", "drain", "dev1")["state"] == "draining"
        queued = _submit(lab, eng, "smoke", "--device", "dev1", "--queue-timeout", "60")
        assert labctl_json(lab, eng, "run", "show", queued["id"])["status"] == "queued"
        labctl_json(lab, lab.admin_token, "devices", "release", "dev1")
        assert _wait_run(lab, queued["id"])["verdict"] == "pass"
    finally:
        lab.stop()


def test_queue_timeout_and_any_device_reassignment(tmp_path, suites, start_agent) -> None:  # type: ignore[no-untyped-def]
    lab = _lab(tmp_path, suites)
    try:
        gone = start_agent(lab, "a-dev", extra=["--tag", "pool=x"])
        gone.stop()
        wait_until(lambda: not device_online(lab, "a-dev"), 30, "a-dev offline")
        eng = make_token(lab, "engineer")
        p = labctl(lab, eng, "run", "submit", "--suite", "smoke", "--device", "a-dev", "--queue-timeout", "1",
                   "--wait", "--json")
        assert p.returncode == 3 and "queue timeout" in labctl_json(lab, eng, "run", "show",
                                                                    json.loads(p.stdout)["id"])["tasks"][0]["reason"]
        # Any-device run: the chosen device dies mid-task; the task moves to the other matching device.
        first = start_agent(lab, "b-dev", extra=["--tag", "pool=x"])
        run = _submit(lab, eng, "long", "--select", "tag.pool=x", "--any")
        wait_until(lambda: task_phase(lab, run["id"]) == "performance", 60, "performance phase")
        first.stop(signal.SIGKILL)
        start_agent(lab, "c-dev", extra=["--tag", "pool=x"])
        done = _wait_run(lab, run["id"], 120)
        assert done["status"] == "completed", done
        task = done["tasks"][0]
        assert task["device"] == "c-dev" and task["attempts"] == 2
        assert "lease expired" in task["attempt_history"][0]["reason"]
        assert "labd_lease_expiries_total 1.0" in lab.metrics()
    finally:
        lab.stop()
