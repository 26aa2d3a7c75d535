"""Issue 12: a full data disk, for real. labd's data dir lies on a small tmpfs that the test fills while a run is
measuring: the run ends error with "lab storage full", a submit is refused with one line, the agent's batches are
answered (its session lives on), labd logs the change of state (no traceback), and once the filler is deleted a new run
completes with nothing restarted."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, Agent, Labd, labctl, labctl_json, make_suite, make_token, task_phase, wait_until

DISK = "48m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs, unmounted afterwards; skipped only where mounting is not permitted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mnt)], capture_output=True,
                       text=True)
    if p.returncode != 0:
        why = p.stderr.strip()
        if os.geteuid() != 0 or "permi" in why.lower():
            pytest.skip(f"a full disk is tested on a tmpfs, and mounting one is not permitted here: {why}")
        pytest.fail(f"mount -t tmpfs failed: {why}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


@dataclass
class OffDiskLabd(Labd):
    """A labd whose own log lies off its data disk: a full disk must not silence what labd says about it."""

    log_dir: Path = field(default_factory=Path)

    def start(self) -> Labd:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.log_dir / "labd.log"
        cmd = [str(BIN / "labd"), "serve", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0", *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"))
        addr = self.data_dir / "labd.addr"

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"labd exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            return addr.exists()

        wait_until(ready, 60, "labd to listen")
        self.addr = addr.read_text().strip()
        return self


def fill(disk: Path) -> Path:
    """Write a filler file until the disk has no byte left."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    return filler


def test_a_full_data_disk_ends_the_run_refuses_submits_and_recovers(tmp_path: Path, small_disk: Path,
                                                                   start_agent: Callable[..., Agent]) -> None:
    suites = make_suite(tmp_path / "suites", "slow", min_duration_ms=1000)  # measuring while the disk fills
    make_suite(suites, "quick", min_duration_ms=100)
    lab = OffDiskLabd(small_disk / "lab", extra=["--suites", str(suites)], log_dir=tmp_path).start()
    try:
        agent = start_agent(lab, "dev1")
        eng = make_token(lab, "engineer")
        submit = ["run", "submit", "--suite", "slow", "--device", "dev1"]
        env = {**os.environ, "LAB_ADDR": lab.addr, "LAB_TOKEN": eng}
        waiting = subprocess.Popen([str(BIN / "labctl"), *submit, "--wait", "--json"], env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        run_id = wait_until(lambda: [r["id"] for r in labctl_json(lab, eng, "run", "list")], 30, "the run")[0]
        wait_until(lambda: task_phase(lab, run_id) == "performance", 60, "the run to measure")
        filler = fill(small_disk)

        out, err = waiting.communicate(timeout=60)  # --wait does not hang
        assert waiting.returncode == 3, out + err
        ended = json.loads(out)
        assert ended["status"] == "error" and ended["reason"].startswith("lab storage full"), ended
        assert "free space in the lab's data dir" in ended["reason"]
        refused = labctl(lab, eng, *submit)
        assert refused.returncode != 0 and refused.stderr.count("\n") == 1, refused.stderr
        assert "lab storage full" in refused.stderr and "free space" in refused.stderr
        [dev] = labctl_json(lab, lab.admin_token, "devices", "list")
        assert (dev["state"], dev["infra_errors"]) == ("active", 0)  # the lab's fault, not the device's

        filler.unlink()  # space again: no restart, the next run completes
        again = labctl(lab, eng, "run", "submit", "--suite", "quick", "--device", "dev1", "--wait", "--json")
        assert json.loads(again.stdout)["status"] == "completed", again.stdout + again.stderr
        shown = labctl_json(lab, eng, "run", "show", run_id)
        assert shown["status"] == "error" and shown["reason"].startswith("lab storage full")
        said = agent.log_text()  # read before labd stops: the agent then loses its session, as it should
    finally:
        lab.stop()
    log = lab.log.read_text()
    assert "Traceback" not in log and log.count("lab storage full (") <= 3, log
    assert "lab storage has space again" in log
    assert "lab storage full" in said and "session to" not in said, said  # batches answered; the session lived on
