"""The executor process as the agent sees it: started clean and limited, its events read, killed on a timeout, a
memory overrun or a cancel; how it ended becomes a fault, a refusal, an error or a result."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agents

log = logging.getLogger("agent.sandbox")

# The only variables an executor inherits: what a Python process and an accelerator's runtime need to start.
PASS_ENV = ("PATH", "LANG", "LC_ALL", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
            "ROCR_VISIBLE_DEVICES", "PILOTLAB_TEST_EXECUTOR_SIGNAL")
POLL_S = 0.25  # how often the agent looks at a running executor (cancel, deadline, RSS): rarely, so it stays
#                 out of the timed window's way; events wake it at once


class Cancelled(Exception):
    """The lab cancelled the task; the executor was killed."""


class ExecutorFault(Exception):
    """The model failed (timeout, memory, a crash, an onnxruntime error): reported as a fault, never retried."""


class ExecutorRefused(Exception):
    """The executor would not run the task as asked (reason says why)."""


class ExecutorError(Exception):
    """The executor broke for a reason that is not the model's (an infrastructure error, retried by the lab)."""


def total_memory_mb() -> int:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 20))


@dataclass(frozen=True)
class Limits:
    """What one task's executors may use: wall-clock seconds for the whole task, MiB per process, CPUs."""

    timeout_s: float
    memory_mb: int
    cpus: frozenset[int] | None = None
    rlimit_as: bool = True  # address-space limit; off for accelerator providers, which map large device memory

    @classmethod
    def of(cls, timeout_s: int, memory_mb: int, cap_timeout_s: float = 0, cap_memory_mb: int = 0,
           cpus: frozenset[int] | None = None, rlimit_as: bool = True) -> Limits:
        """The suite's limits, lowered to the agent's caps; memory 0 = the agent's cap (80% of RAM by default)."""
        timeouts = [float(x) for x in (timeout_s, cap_timeout_s) if x > 0]
        memories = [int(x) for x in (memory_mb, cap_memory_mb or int(total_memory_mb() * 0.8)) if x > 0]
        return cls(min(timeouts) if timeouts else float("inf"), min(memories), cpus, rlimit_as)

    def to_dict(self) -> dict[str, Any]:
        return {"timeout_s": self.timeout_s if self.timeout_s != float("inf") else None,
                "memory_mb": self.memory_mb,
                "memory_limit": "RLIMIT_AS and RSS watch" if self.rlimit_as else "RSS watch",
                "cpus": sorted(self.cpus) if self.cpus is not None else None}


def clean_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in PASS_ENV}
    env.update(HOME=str(work), TMPDIR=str(work), PYTHONNOUSERSITE="1", MALLOC_ARENA_MAX="2",
               PYTHONPATH=str(Path(agents.__file__).resolve().parent.parent))
    return env


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


class Executor:
    """One executor process for one repeat: `events()` yields its events until it ends; `go()` releases a gate."""

    def __init__(self, plan: dict[str, Any], work: Path, limits: Limits, deadline: float,
                 cancel: threading.Event, label: str) -> None:
        self.work, self.limits, self.deadline, self.cancel, self.label = work, limits, deadline, cancel, label
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        plan = {**plan, "out_dir": str(work), "memory_mb": limits.memory_mb if limits.rlimit_as else 0,
                "cpus": sorted(limits.cpus) if limits.cpus is not None else None}
        (work / "plan.json").write_text(json.dumps(plan))
        self.stderr = (work / "stderr.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agents.executor", str(work / "plan.json")], cwd=work, env=clean_env(work),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, close_fds=True,
            start_new_session=True, text=True)
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name=f"executor:{label}").start()
        self.peak_rss_mb = 0.0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._q.put(json.loads(line))
            except ValueError:
                log.warning("executor %s wrote a line that is not an event: %.200s", self.label, line)
        self._q.put(None)

    def go(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # it died; events() reports how
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def events(self) -> Iterator[dict[str, Any]]:
        """Events until `done`; raises Cancelled, ExecutorFault, ExecutorRefused or ExecutorError otherwise."""
        last: dict[str, Any] | None = None
        while True:
            try:
                ev = self._q.get(timeout=POLL_S)
            except queue.Empty:
                self._police()
                continue
            if ev is None:
                break
            last = ev
            if ev.get("event") in ("refused", "fault", "done"):
                continue
            yield ev
        code = self.proc.wait()
        self.stderr.close()
        if last is not None and last.get("event") == "done" and code == 0:
            return
        if last is not None and last.get("event") == "refused":
            raise ExecutorRefused(str(last.get("reason")))
        if last is not None and last.get("event") == "fault":
            raise ExecutorFault(str(last.get("reason")))
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (the kernel's out-of-memory killer, or a kill from outside)" if -code == signal.SIGKILL else ""
            raise ExecutorFault(f"the executor was killed by {name}{hint} while running the model")
        raise ExecutorError(f"the executor exited with status {code}: {self.stderr_tail()}")

    def _police(self) -> None:
        if self.cancel.is_set():
            self.kill()
            raise Cancelled()
        if time.monotonic() > self.deadline:
            self.kill()
            raise ExecutorFault(f"timeout: the task ran past its limit of {self.limits.timeout_s:g} s "
                                f"(timeout_s) and its executor was killed")
        rss = _rss_mb(self.proc.pid)
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        if rss > self.limits.memory_mb:
            self.kill()
            raise ExecutorFault(f"memory: the executor used {rss:.0f} MiB, over the limit of "
                                f"{self.limits.memory_mb} MiB (memory_mb), and was killed")

    def stderr_tail(self) -> str:
        try:
            lines = [x for x in (self.work / "stderr.log").read_text(errors="replace").splitlines() if x.strip()]
        except OSError:
            return "no output"
        return lines[-1][:300] if lines else "no output"

    def result(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.work / "result.json").read_text())
        return doc
