"""`labctl run watch` into a pipe (a CI log, `| tee`): one line per change as it happens, while the run is still
running, and the exit codes of `run submit --wait` (0 pass, 3 cancelled)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pilotlab import convert
from pilotlab.v1 import lab_pb2, lab_pb2_grpc
from tests.e2e.conftest import BIN, Labd, labctl_json, make_suite, make_token


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Labd]:
    suites = make_suite(tmp_path / "suites", "long", min_duration_ms=2000)
    lab = Labd(tmp_path / "lab", extra=["--suites", str(suites)]).start()
    yield lab
    lab.stop()


def _status(lab: Labd, run_id: str) -> str:
    """The run's status asked in-process, at the moment a line arrives."""
    with grpc.insecure_channel(lab.addr) as ch:
        run = lab_pb2_grpc.LabServiceStub(ch).GetRun(lab_pb2.GetRunRequest(id=run_id), timeout=30,
                                                     metadata=[("authorization", f"Bearer {lab.admin_token}")])
    return convert.run_from_pb(run).status.value


def _watch(lab: Labd, token: str, run_id: str) -> subprocess.Popen[str]:
    env = {**os.environ, "LAB_ADDR": lab.addr, "LAB_TOKEN": token}
    env.pop("FORCE_COLOR", None)
    return subprocess.Popen([str(BIN / "labctl"), "run", "watch", run_id], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_watch_into_a_pipe_prints_each_change_as_it_happens(lab, start_agent) -> None:  # type: ignore[no-untyped-def]
    start_agent(lab, "dev1")
    eng = make_token(lab, "engineer")
    run = labctl_json(lab, eng, "run", "submit", "--suite", "long", "--device", "dev1")
    watch = _watch(lab, eng, run["id"])
    assert watch.stdout is not None
    lines: list[tuple[str, str]] = []  # (line, the run's status when it arrived)
    for line in watch.stdout:  # read as each line comes through the pipe
        lines.append((line.rstrip("\n"), _status(lab, run["id"]) if " phase " in line else ""))
    assert watch.wait(timeout=60) == 0, watch.stderr.read() if watch.stderr else ""
    during = [text for text, status in lines if status == "running"]
    assert any("task digits-single-stream on dev1: running, phase performance" in t for t in during), lines
    assert lines[-1][0].endswith(f"run {run['id']} (long@1.0.0): completed, verdict pass"), lines
    assert all(t[:4].isdigit() and t[19:21] == "Z " for t, _ in lines)  # each stamped 2026-01-01T00:00:00Z

    # A cancelled run: exit 3, as `run submit --wait` gives.
    run = labctl_json(lab, eng, "run", "submit", "--suite", "long", "--device", "dev1")
    watch = _watch(lab, eng, run["id"])
    assert watch.stdout is not None
    # The state the run was in when the watch began comes at once: its tasks' lines, then the run's.
    while f"run {run['id']} " not in (line := watch.stdout.readline()):
        assert line, "the watch ended before the run's first line"
    labctl_json(lab, eng, "run", "cancel", run["id"])
    rest = watch.stdout.read()
    assert watch.wait(timeout=60) == 3 and f"run {run['id']} (long@1.0.0): cancelled" in rest, rest
