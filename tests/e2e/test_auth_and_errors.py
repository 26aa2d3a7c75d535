"""Auth refusals per role, bad input and an unreachable lab: one line on stderr, the contract's exit codes."""

from __future__ import annotations

import json

import grpc
import pytest

from pilotlab.v1 import lab_pb2, lab_pb2_grpc
from tests.e2e.conftest import Agent, free_port, labctl, labctl_json, make_token, wait_until


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    assert "Traceback" not in stderr
    return lines[0]


def test_roles(labd, start_agent, tmp_path) -> None:  # type: ignore[no-untyped-def]
    start_agent(labd, "dev1")
    certifier, engineer = make_token(labd, "certifier"), make_token(labd, "engineer")
    agent_tok = make_token(labd, "agent")

    # A certifier reads runs, devices and suites ...
    assert labctl(labd, certifier, "run", "list", "--json").returncode == 0
    assert labctl(labd, certifier, "devices", "list", "--json").returncode == 0
    # ... but cannot submit, cancel or mint tokens.
    p = labctl(labd, certifier, "run", "submit", "--suite", "smoke", "--device", "dev1")
    assert p.returncode == 3 and "may not submit runs" in _one_line(p.stderr)
    p = labctl(labd, certifier, "run", "cancel", "run-doesnotexist")
    assert p.returncode == 3 and "may not cancel runs" in _one_line(p.stderr)
    p = labctl(labd, certifier, "token", "create", "--role", "admin")
    assert p.returncode == 3 and "may not create tokens" in _one_line(p.stderr)
    # An engineer cannot mint tokens either; an agent token cannot read the fleet.
    p = labctl(labd, engineer, "token", "create", "--role", "agent")
    assert p.returncode == 3 and "an engineer token may not create tokens" in _one_line(p.stderr)
    p = labctl(labd, agent_tok, "devices", "list")
    assert p.returncode == 3 and "an agent token may not list devices" in _one_line(p.stderr)
    # Unknown and missing tokens.
    p = labctl(labd, "plt_admin_forged", "devices", "list")
    assert p.returncode == 3 and "does not know this token" in _one_line(p.stderr)
    p = labctl(labd, "", "devices", "list")
    assert p.returncode == 3 and "no token" in _one_line(p.stderr)

    # A certifier token cannot enrol a device.
    bad = Agent(labd, "intruder", tmp_path / "agent-intruder", certifier).start()
    assert bad.proc is not None and bad.proc.wait(timeout=60) == 3
    assert "enrolment refused" in bad.log_text() and "may not enrol devices" in bad.log_text()

    # A device credential acts only as its device: it cannot use the user API.
    cred = json.loads((tmp_path / "agent-dev1" / "device.json").read_text())
    with grpc.insecure_channel(labd.addr) as ch:
        with pytest.raises(grpc.RpcError) as e:
            lab_pb2_grpc.LabServiceStub(ch).ListRuns(
                lab_pb2.ListRunsRequest(), metadata=[("authorization", f"Bearer {cred['device_token']}")], timeout=10)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as e:
            lab_pb2_grpc.LabServiceStub(ch).ListRuns(lab_pb2.ListRunsRequest(), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_bad_input(labd, start_agent) -> None:  # type: ignore[no-untyped-def]
    start_agent(labd, "dev1")
    eng = make_token(labd, "engineer")
    cases = [
        (("run", "submit", "--suite", "nope", "--device", "dev1"), "no suite nope"),
        (("run", "submit", "--suite", "smoke@9.9.9", "--device", "dev1"), "no suite smoke@9.9.9"),
        (("run", "submit", "--suite", "smoke", "--device", "ghost"), "no device named 'ghost'"),
        (("run", "submit", "--suite", "smoke"), "exactly one of --device NAME or --select EXPR"),
        (("run", "submit", "--suite", "smoke", "--select", "class=robot"), "no enrolled device matches"),
        (("run", "submit", "--suite", "smoke", "--select", "colour=red"), "unknown selector field 'colour'"),
        (("run", "show", "run-missing"), "no run run-missing"),
        (("report", "pull", "run-missing", "--out", "/tmp/x-never"), "no run run-missing"),
    ]
    for args, message in cases:
        p = labctl(labd, eng, *args)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert message in _one_line(p.stderr), (args, p.stderr)
    p = labctl(labd, labd.admin_token, "token", "create", "--role", "superuser")
    assert p.returncode == 2 and "unknown role 'superuser'" in _one_line(p.stderr)
    # A selector does reach the device.
    p = labctl(labd, eng, "run", "submit", "--suite", "smoke", "--select", "class=smart-terminal and cpu_cores >= 1",
               "--wait", "--json")
    assert p.returncode == 0, p.stderr


def test_unreachable_lab() -> None:
    p = labctl(f"127.0.0.1:{free_port()}", "plt_admin_x", "devices", "list")
    assert p.returncode == 3
    assert "cannot reach the lab" in _one_line(p.stderr)


def test_cancel_queued_run(labd, start_agent) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent(labd, "dev1")
    agent.stop()
    wait_until(lambda: labctl_json(labd, labd.admin_token, "devices", "list")[0]["status"] == "offline", 30,
               "device offline")
    eng = make_token(labd, "engineer")
    run = labctl_json(labd, eng, "run", "submit", "--suite", "smoke", "--device", "dev1")
    assert run["status"] == "queued" and run["verdict"] is None
    cancelled = labctl_json(labd, eng, "run", "cancel", run["id"])
    assert cancelled["status"] == "cancelled"
    shown = labctl_json(labd, eng, "run", "show", run["id"])
    assert shown["tasks"][0]["status"] == "cancelled"
    p = labctl(labd, eng, "run", "cancel", run["id"])
    assert p.returncode == 2 and "already ended" in _one_line(p.stderr)
    p = labctl(labd, eng, "run", "watch", run["id"])
    assert p.returncode == 3


def test_labd_refuses_an_invalid_suite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys
    from pathlib import Path

    from tests.e2e.conftest import make_suite

    root = make_suite(tmp_path / "suites", "bad")
    toml = root / "bad" / "suite.toml"
    toml.write_text(toml.read_text().replace('scenario = "single-stream"', 'scenario = "warp-speed"'))
    p = subprocess.run([str(Path(sys.executable).parent / "labd"), "serve", "--data-dir", str(tmp_path / "lab"),
                        "--listen", "127.0.0.1:0", "--suites", str(root)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    line = _one_line(p.stderr)
    assert "tasks[0].scenario" in line and "warp-speed" in line
