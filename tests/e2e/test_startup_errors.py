"""Start-up problems of labd and lab-agent, each against a real process: one line on stderr that says what is wrong
and what to do, no traceback, exit status 2. One labd per listen address and per data dir; one agent per work dir."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import AGENT_BIN, BIN, Labd, labctl, make_token

REPO = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], **kw: Any) -> str:
    """Run a start-up that must fail; return its one stderr line."""
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, **kw)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 2, f"exit {p.returncode}: {p.stderr}"
    assert len(lines) == 1, f"expected one line on stderr, got: {p.stderr!r}"
    return lines[0]


def _labd(data_dir: Path, *args: str, **kw: Any) -> str:
    return _run([str(BIN / "labd"), "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *args], **kw)


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_second_labd_on_the_same_port_exits_and_the_first_keeps_the_lab(labd: Labd, tmp_path: Path) -> None:
    line = _labd(tmp_path / "other", "--listen", labd.addr)
    assert line == (f"labd: {labd.addr} is already in use (another labd, or another program); "
                    "stop it or choose another --listen")
    for _ in range(8):
        p = labctl(labd, labd.admin_token, "devices", "list")
        assert p.returncode == 0, p.stderr


def test_second_labd_on_the_same_data_dir_exits(labd: Labd) -> None:
    line = _labd(labd.data_dir)
    assert line.startswith(f"labd: --data-dir {labd.data_dir} is in use by another labd (pid {labd.proc.pid})")  # type: ignore[union-attr]
    assert "stop it or choose another --data-dir" in line
    assert labctl(labd, labd.admin_token, "devices", "list").returncode == 0


def test_port_held_by_another_program(tmp_path: Path, held_port: int) -> None:
    line = _labd(tmp_path / "lab", "--listen", f"127.0.0.1:{held_port}")
    assert f"127.0.0.1:{held_port} is already in use" in line and "choose another --listen" in line


def test_metrics_port_in_use(tmp_path: Path, held_port: int) -> None:
    line = _labd(tmp_path / "lab", "--metrics-listen", f"127.0.0.1:{held_port}")
    assert f"127.0.0.1:{held_port} is already in use" in line and "choose another --metrics-listen" in line


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "lab"
    f.write_text("not a directory\n")
    line = _labd(f)
    assert line == (f"labd: --data-dir {f} is a file, not a directory; choose a directory (labd creates it if missing)")


def test_unwritable_data_dir(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    # root writes anywhere a mode forbids: make the folder immutable instead.
    if os.geteuid() == 0 and (shutil.which("chattr") is None
                              or subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0):
        pytest.skip("running as root where chattr +i does not work: cannot make a folder unwritable")
    try:
        for data_dir in (ro, ro / "lab"):
            line = _labd(data_dir)
            assert line.startswith(f"labd: cannot write to --data-dir {data_dir} (")
            assert line.endswith("); check the path and its permissions, or choose another --data-dir")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(ro)], check=True)
        ro.chmod(0o755)


def test_unreachable_postgresql(tmp_path: Path) -> None:
    line = _labd(tmp_path / "lab", "--db", "postgresql+psycopg://labd:secret@127.0.0.1:1/lab")
    assert line.startswith("labd: cannot open the database postgresql+psycopg://labd:***@127.0.0.1:1/lab (")
    assert "secret" not in line and "Connection refused" in line
    assert "check --db and that the database server is running and reachable" in line


def test_suites_dir_that_is_a_suite(tmp_path: Path) -> None:
    smoke = REPO / "evalsuites" / "smoke"
    line = _labd(tmp_path / "lab", "--suites", str(smoke))
    assert line == (f"labd: --suites {smoke} holds no suite folders (DIR/<suite>/suite.toml); "
                    f"it looks like a suite itself: pass its parent, {REPO / 'evalsuites'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _labd(tmp_path / "lab", "--suites", str(empty))
    assert f"--suites {empty} holds no suite folders (DIR/<suite>/suite.toml)" in line


def _agent(labd: Labd, work_dir: Path) -> str:
    return _run([str(AGENT_BIN), "--lab", labd.addr, "--token", make_token(labd, "agent"), "--name", "second",
                 "--class", "smart-terminal", "--work-dir", str(work_dir)])


def test_agent_work_dir_is_a_file(labd: Labd, tmp_path: Path) -> None:
    f = tmp_path / "work"
    f.write_text("not a directory\n")
    line = _agent(labd, f)
    assert line == (f"lab-agent: --work-dir {f} is a file, not a directory; "
                    "choose a directory (lab-agent creates it if missing)")


def test_agent_work_dir_held_by_a_running_agent(labd: Labd, start_agent: Any) -> None:
    first = start_agent(labd, "dev1")
    line = _agent(labd, first.work_dir)
    assert line == (f"lab-agent: --work-dir {first.work_dir} is in use by another running lab-agent "
                    f"(pid {first.proc.pid}); stop it or give this agent its own --work-dir")
    assert first.proc.poll() is None


def test_agent_refuses_a_name_or_tag_that_could_forge_log_lines(tmp_path: Path) -> None:
    base = [str(AGENT_BIN), "--lab", "127.0.0.1:1", "--token", "x", "--class", "robot", "--work-dir",
            str(tmp_path / "w")]
    line = _run([*base, "--name", "dev\n2026-12-01 INFO labd: forged"])
    assert line.startswith("lab-agent: device name 'dev\\n2026-12-01 INFO ...' has the control character '\\n'")
    line = _run([*base, "--name", "dev", "--tag", "site=\x1b[31mred"])
    assert line == ("lab-agent: tag 'site' has a value with the control character '\\x1b'; "
                    "use at most 128 printable characters")
    assert not (tmp_path / "w").exists()  # refused before anything was written


def test_labd_refuses_a_negative_number_of_worker_threads(tmp_path: Path) -> None:
    line = _labd(tmp_path / "lab", "--threads", "-1")
    assert line == ("labd: --threads -1: give a positive number of worker threads, or 0 for the default")


def test_labd_refuses_heartbeats_a_lease_could_not_outlive(tmp_path: Path) -> None:
    line = _labd(tmp_path / "lab", "--lease-seconds", "30", "--heartbeat-seconds", "12")
    assert line == ("labd: --heartbeat-seconds 12 is out of range: give 0.2 to 10 (at most a third of "
                    "--lease-seconds 30, so that a lease outlives two missed heartbeats, and an hour), or raise "
                    "--lease-seconds")
    assert "give 0.2 to 10 " in _labd(tmp_path / "lab1", "--heartbeat-seconds", "0.1")
    assert "is out of range" in _labd(tmp_path / "lab2", "--lease-seconds", "1e7", "--heartbeat-seconds", "3e6")


def test_a_large_fleet_heartbeats_as_often_as_labd_says(tmp_path: Path) -> None:
    from tests.e2e.test_protocol import RawDevice

    lab = Labd(tmp_path / "lab", extra=["--lease-seconds", "90", "--heartbeat-seconds", "30"]).start()
    try:
        dev = RawDevice(lab.addr, make_token(lab, "agent"), "slow-beat")
        assert dev.welcome.heartbeat_interval_ms == 30_000
        dev.close()
    finally:
        lab.stop()
