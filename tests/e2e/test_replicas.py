"""Several labd replicas on one PostgreSQL: agents dial any of them, work submitted on one reaches agents held by
another (a NATS hint, or the next poll), the single-writer duties move when their leader is SIGKILLed, and a killed
replica loses no acknowledged result while its agents reconnect to the others. SQLite stays single-replica."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    BIN,
    Agent,
    Labd,
    device_online,
    free_port,
    labctl,
    labctl_json,
    make_suite,
    make_token,
    wait_until,
)

NATS_URL = os.environ.get("PILOTLAB_NATS_URL", "nats://127.0.0.1:4222")


def nats_flags() -> list[str]:
    """--nats for the replicas; the test fails (not skips) without the server unless PILOTLAB_SKIP_NATS=1, which
    runs the replicas on polling alone."""
    if os.environ.get("PILOTLAB_SKIP_NATS") == "1":
        return []
    host, port = NATS_URL.split("//", 1)[1].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        pytest.fail(f"NATS at {NATS_URL} is not reachable ({e}); start it, set PILOTLAB_NATS_URL, or set "
                    "PILOTLAB_SKIP_NATS=1 to test the replicas on polling alone", pytrace=False)
    return ["--nats", NATS_URL]


def sessions_on(lab: Labd) -> set[str]:
    """The devices whose sessions this replica holds now (from its log: opened and not closed since)."""
    held: set[str] = set()
    for line in lab.log.read_text().splitlines():
        if m := re.search(r"session open: (\S+)", line):
            held.add(m.group(1))
        elif m := re.search(r"session (?:closed|of) (\S+?):?\s", line):
            held.discard(m.group(1).rstrip(":"))
    return held


def test_three_replicas_one_killed_mid_run(tmp_path: Path, pg_url: str) -> None:
    suites = make_suite(tmp_path / "suites", "smoke-long", min_duration_ms=2500)
    common = ["--blobs", str(tmp_path / "blobs"), "--suites", str(suites), "--lease-seconds", "6", *nats_flags()]
    ports = [free_port() for _ in range(3)]
    r1 = Labd(tmp_path / "r1", port=ports[0], db=pg_url, extra=common).start()
    replicas = [r1]
    agents: list[Agent] = []
    try:
        # Every agent dials the three replicas; only r1 is up, so all sessions open there.
        everyone = Labd(tmp_path / "unused", addr=",".join(f"127.0.0.1:{p}" for p in ports))
        token = make_token(r1, "agent")
        for i in range(3):
            agents.append(Agent(everyone, f"rep{i}", tmp_path / f"agent-rep{i}", token).start())
        for a in agents:
            wait_until(lambda a=a: device_online(r1, a.name), 60, f"{a.name} online")
        assert sessions_on(r1) == {"rep0", "rep1", "rep2"}
        key = ["--signing-key", str(r1.data_dir / "signing_key.pem")]
        r2 = Labd(tmp_path / "r2", port=ports[1], db=pg_url, extra=[*common, *key]).start()
        r3 = Labd(tmp_path / "r3", port=ports[2], db=pg_url, extra=[*common, *key]).start()
        replicas += [r2, r3]
        assert "now leads reaper" in r1.log.read_text()

        # Submitted on r2, for devices whose sessions r1 holds: r1 assigns them.
        eng = make_token(r2, "engineer")
        run = labctl_json(r2, eng, "run", "submit", "--suite", "smoke-long", "--select", "class=smart-terminal")
        assert len(labctl_json(r2, eng, "run", "show", run["id"])["tasks"]) == 3
        wait_until(lambda: all(t["status"] == "running"
                               for t in labctl_json(r2, eng, "run", "show", run["id"])["tasks"]),
                   60, "every task running on r1's agents")
        assert "assigned" in r1.log.read_text() and "assigned" not in r2.log.read_text()
        # r2 holds none of their sessions, and still shows them busy (from the store).
        assert {dv["name"]: dv["status"] for dv in labctl_json(r2, r2.admin_token, "devices", "list")} == \
            {"rep0": "busy", "rep1": "busy", "rep2": "busy"}

        # r1, which leads and holds every session, dies mid-run: its agents move to r2 and r3, which take over
        # the attempts they still run, and one of them takes the lead.
        assert r1.stop(signal.SIGKILL) == -signal.SIGKILL
        wait_until(lambda: sessions_on(r2) | sessions_on(r3) == {"rep0", "rep1", "rep2"}, 60,
                   "the agents to reconnect to r2 and r3")
        wait_until(lambda: "now leads reaper" in r2.log.read_text() + r3.log.read_text(), 30,
                   "r2 or r3 to take the lead")
        done = wait_until(lambda: (r := labctl_json(r3, eng, "run", "show", run["id"]))["status"] in
                          ("completed", "cancelled", "error") and r, 180, "the run to end")
        assert done["status"] == "completed" and done["verdict"] == "pass", done
        for task in done["tasks"]:
            assert task["status"] == "completed" and task["metrics"]["latency_ms"]["n"] >= 100, task
        # No agent was told to give up an attempt: each finished the attempt r1 had assigned.
        assert all(t["attempts"] == 1 for t in done["tasks"]), done["tasks"]

        # The report, issued once whichever replica is asked, verifies against the lab's one key.
        out2, out3 = tmp_path / "rep2", tmp_path / "rep3"
        for lab, out in ((r2, out2), (r3, out3)):
            pulled = labctl(lab, eng, "report", "pull", run["id"], "--out", str(out))
            assert pulled.returncode == 0, pulled.stderr
            verified = labctl(lab, None, "report", "verify", str(out))
            assert verified.returncode == 0, verified.stdout + verified.stderr
        assert (out2 / "report.json").read_bytes() == (out3 / "report.json").read_bytes()
    finally:
        for a in agents:
            a.stop()
        for lab in replicas:
            lab.stop()


def test_a_replica_with_another_signing_key_is_refused(tmp_path: Path, pg_url: str) -> None:
    r1 = Labd(tmp_path / "r1", db=pg_url).start()
    try:
        p = subprocess.run([str(BIN / "labd"), "serve", "--data-dir", str(tmp_path / "r2"), "--listen",
                            f"127.0.0.1:{free_port()}", "--db", pg_url], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2
        line = p.stderr.strip().splitlines()[-1]
        assert "signs its reports with key" in line and "--signing-key" in line, p.stderr
    finally:
        r1.stop()


def test_sqlite_serves_one_labd(tmp_path: Path) -> None:
    first = Labd(tmp_path / "a").start()
    try:
        started = time.monotonic()
        p = subprocess.run([str(BIN / "labd"), "serve", "--data-dir", str(tmp_path / "b"), "--listen",
                            f"127.0.0.1:{free_port()}", "--db", f"sqlite:///{first.data_dir / 'lab.db'}"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and time.monotonic() - started < 60
        line = p.stderr.strip()
        assert line.count("\n") == 0, line
        assert f"--db {first.data_dir / 'lab.db'} is in use by another labd (pid {first.proc.pid})" in line, line
        assert "a SQLite database serves one labd" in line and "PostgreSQL" in line, line
    finally:
        first.stop()


def test_a_cancel_on_one_replica_stops_the_attempt_another_holds(tmp_path: Path, pg_url: str) -> None:
    """No NATS here: the cancel reaches the agent of the other replica by that replica's poll alone."""
    suites = make_suite(tmp_path / "suites", "smoke-long", min_duration_ms=60_000)
    common = ["--blobs", str(tmp_path / "blobs"), "--suites", str(suites)]
    r1 = Labd(tmp_path / "r1", db=pg_url, extra=common).start()
    r2: Labd | None = None
    agent = Agent(r1, "held", tmp_path / "agent-held", make_token(r1, "agent")).start()
    try:
        wait_until(lambda: device_online(r1, "held"), 60, "the agent online on r1")
        r2 = Labd(tmp_path / "r2", db=pg_url,
                  extra=[*common, "--signing-key", str(r1.data_dir / "signing_key.pem")]).start()
        eng = make_token(r2, "engineer")
        run = labctl_json(r2, eng, "run", "submit", "--suite", "smoke-long", "--device", "held")
        wait_until(lambda: "assigned digits-single-stream" in agent.log_text(), 60, "the attempt on r1's agent")
        cancelled = labctl(r2, eng, "run", "cancel", run["id"])
        assert cancelled.returncode == 0, cancelled.stderr
        wait_until(lambda: "cancel att-" in agent.log_text(), 30, "the agent to be told to stop")
        assert "cancelled on another replica" in r1.log.read_text()
        shown = labctl_json(r2, eng, "run", "show", run["id"])
        assert shown["status"] == "cancelled", shown
    finally:
        agent.stop()
        if r2 is not None:
            r2.stop()
        r1.stop()


def test_an_unreachable_nats_stops_a_replica_in_one_line(tmp_path: Path, pg_url: str) -> None:
    p = subprocess.run([str(BIN / "labd"), "serve", "--data-dir", str(tmp_path / "r"), "--listen",
                        f"127.0.0.1:{free_port()}", "--db", pg_url, "--nats", f"nats://127.0.0.1:{free_port()}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("labd: cannot reach NATS at nats://127.0.0.1:") and "leave --nats out" in line, p.stderr
