#!/usr/bin/env python3
"""Certifier tools at scale: time `labctl report pull` and `labctl report verify` on bundles of 10k to 10M samples.

Everything the bench times is the product's own command line, as a certifier runs it; the bench knows nothing of
the bundle's format (it only counts files and bytes), so the same script measures the code before and after a
format change. One `labd serve` runs as a subprocess (temp data dir, 127.0.0.1, ephemeral ports, one suite
directory per size). For each size N:

  build   a copy of the smoke suite, `verify-N`, whose single-stream task asks min_query_count = N // repeats
          (the default 3 repeats; min_duration_ms stays 500), so that a correct agent's timed runs hold N latency
          samples in all; `labctl run submit --suite verify-N --device DEV --json` queues a run, and a raw
          device in this process speaks the real agent protocol (AgentService.Enrol with a real Ed25519 device
          key, AgentService.Session, heartbeats at Welcome.heartbeat_interval_ms) to run it: per assigned repeat
          one `latency;repeat=R` set (plausible: t_ns increasing, each query ~1.2 ms, lognormal, a fresh executor
          between repeats), the TEST04 and TEST01 audits and the accuracy run (the dataset's own labels), in
          signed ResultBatch messages of 4096 samples (the agent's batch size, signed with
          `pilotlab.samples.batch_signing_bytes` as agents/worker.py does), then TaskFinished(OK) with the exact
          effective settings, the assigned provider and one observations window per latency set. The lab grades
          the run (it must be completed and valid).
  issue   the first `labctl report pull` issues the report in labd (timed apart: it is the lab's one-off work)
  rounds  R times, interleaved: `labctl report pull RUN --out DIR`, then `labctl report verify DIR --pubkey
          lab.pem` (the key from `labctl lab pubkey`). Each is a subprocess reaped with os.wait4, whose rusage
          gives that child's own peak RSS (ru_maxrss) and CPU time; wall time from spawn to reap.

Also measured: `labctl --help` start-up (median of 5, after one untimed run), the bundle's size on disk, its
largest raw-sample file (the largest file under samples/), labd's peak RSS (VmHWM). Each command's window also
records the CPU time other processes used (all CPUs' busy time from /proc/stat minus the child's and labd's),
so a measurement disturbed by someone else's work shows as such. A command is killed past --cmd-timeout or when
the machine's MemAvailable drops below --min-free-mb; a size whose rounds would run past --size-budget-s stops
after the rounds it has (at least one).

Which code runs: labd and labctl are started as `PYTHON -m labd.cli` / `PYTHON -m labctl.main` with
PYTHONPATH=CODE_ROOT and cwd CODE_ROOT (default: the checkout holding this script), and this process imports the
protocol and domain modules from CODE_ROOT too, so measuring another checkout (say, a clone at an older commit)
needs no install. The JSON names the modules each side imported.

    .venv/bin/python bench/verify.py                                  # 10k, 100k, 1M, 10M: bench/results/verify.*
    .venv/bin/python bench/verify.py --sizes 10000,1000000 --rounds 5
    .venv/bin/python bench/verify.py --quick --json /tmp/v.json       # 2,000 samples, 1 round: smoke test only

MB in the tables is 10^6 bytes, for files and for RSS alike.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import queue
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _code_root_from_argv(argv: Sequence[str]) -> Path:
    """--code-root, read before the project's modules are imported (they are imported from there)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--code-root", type=Path, default=REPO)
    known, _ = p.parse_known_args(argv)
    return Path(known.code_root).resolve()


CODE_ROOT = _code_root_from_argv(sys.argv[1:])
if str(CODE_ROOT) not in sys.path:
    sys.path.insert(0, str(CODE_ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402

from pilotlab import convert  # noqa: E402
from pilotlab import domain as d  # noqa: E402
from pilotlab.compliance import Assigned, latency_kinds, required_sets  # noqa: E402
from pilotlab.samples import batch_signing_bytes  # noqa: E402
from pilotlab.tasks import effective, requested  # noqa: E402
from pilotlab.v1 import agent_pb2, agent_pb2_grpc, common_pb2, lab_pb2, lab_pb2_grpc  # noqa: E402

DEFAULT_SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (2_000,)
BATCH = 4096  # raw samples per ResultBatch: the agent's default (agents/config.py batch_size)
WINDOW = 32  # batches in flight before the raw device waits for an ack
DEVICE = "verify-bench"
BASE_SUITE = "smoke"
MB = 1e6
LAT_MEDIAN_NS = 1_200_000  # each query ~1.2 ms: N // repeats queries outlast min_duration_ms = 500 from N = 1,250
HARNESS_GAP_NS = 3_000  # between one query's end and the next one's issue
REPEAT_GAP_NS = 50_000_000  # a fresh executor between timed runs
SEED = 17


# ------------------------------------------------------------------------------------------------ helpers


def median_min_max(xs: Sequence[float]) -> dict[str, float | None]:
    if not xs:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4), "max": round(max(xs), 4)}


def cpu_jiffies() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of all CPUs from /proc/stat (busy: user, nice, system, irq, softirq)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                v = [int(x) for x in line.split()[1:9]]
                return v[0] + v[1] + v[2] + v[5] + v[6], v[7], sum(v)
    return 0, 0, 0


QUIET_BUSY = 0.10  # the machine counts as quiet below this busy share of all CPUs over one second


def wait_quiet(max_s: float, threshold: float = QUIET_BUSY, window_s: float = 1.0) -> dict[str, Any]:
    """Before a measured command: wait (at most max_s) for a window_s in which all CPUs together were busy less
    than threshold of the time. labd and this process are idle then, so what is busy is someone else's work."""
    t0 = time.monotonic()
    busy = None
    while max_s > 0:
        j0 = cpu_jiffies()
        time.sleep(window_s)
        j1 = cpu_jiffies()
        busy = (j1[0] - j0[0]) / max(1, j1[2] - j0[2])
        if busy < threshold or time.monotonic() - t0 >= max_s:
            break
    return {"waited_s": round(time.monotonic() - t0, 1), "busy_share": None if busy is None else round(busy, 3)}


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def mem_available_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / MB
    return float("inf")


def other_processes(patterns: Sequence[str]) -> list[str]:
    """Command lines of running processes (not this one) that contain any of the patterns."""
    found = []
    me = os.getpid()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == me:
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmd and any(pat in cmd for pat in patterns):
            found.append(f"{p.name} {cmd}")
    return found


def wait_for_others(patterns: Sequence[str], max_s: float) -> dict[str, Any]:
    """Wait (at most max_s) until no process matching the patterns runs: another bench sharing the machine."""
    t0 = time.monotonic()
    seen = other_processes(patterns)
    first = list(seen)
    while seen and time.monotonic() - t0 < max_s:
        time.sleep(5)
        seen = other_processes(patterns)
    return {"patterns": list(patterns), "seen_at_start": first, "waited_s": round(time.monotonic() - t0, 1),
            "still_running": seen}


def _run_text(cmd: list[str], **kw: Any) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, **kw).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def dir_bytes(path: Path) -> tuple[int, int]:
    """(bytes, files) of every regular file under path."""
    total = files = 0
    for p in path.rglob("*"):
        if p.is_file():
            total += p.stat().st_size
            files += 1
    return total, files


def largest_sample_file(bundle: Path) -> tuple[str, int, int]:
    """(relative path, bytes, count) of the largest raw-sample file: the bundle's files under samples/."""
    files = [p for p in (bundle / "samples").rglob("*") if p.is_file()] if (bundle / "samples").is_dir() else []
    if not files:
        return "", 0, 0
    big = max(files, key=lambda p: p.stat().st_size)
    return str(big.relative_to(bundle)), big.stat().st_size, len(files)


# ------------------------------------------------------------------------------ subprocesses of CODE_ROOT


class Code:
    """How to run the product's commands from one checkout, and the environment they get."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if k not in ("LAB_ADDR", "LAB_TOKEN", "PYTHONPATH")}
        self.env["PYTHONPATH"] = str(root)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env.setdefault("COLUMNS", "160")

    def labd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "labd.cli", *args]

    def labctl(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "labctl.main", *args]

    def with_lab(self, addr: str, token: str | None) -> dict[str, str]:
        env = dict(self.env)
        env["LAB_ADDR"] = addr
        if token is not None:
            env["LAB_TOKEN"] = token
        return env

    def imports(self) -> dict[str, str]:
        """Where a subprocess started like labd and labctl imports the product's packages from."""
        code = ("import json, labd.cli, labctl.main, labctl.verify, pilotlab.samples; "
                "print(json.dumps({m: __import__('sys').modules[m].__file__ for m in "
                "('labd.cli', 'labctl.main', 'labctl.verify', 'pilotlab.samples')}))")
        out = _run_text([sys.executable, "-c", code], env=self.env, cwd=self.root)
        try:
            return dict(json.loads(out))
        except ValueError:
            return {"error": out[-500:]}

    def git(self) -> dict[str, Any]:
        commit = _run_text(["git", "-C", str(self.root), "rev-parse", "HEAD"]).strip() or None
        dirty = [ln[3:] for ln in _run_text(["git", "-C", str(self.root), "status", "--short", "--", "labd",
                                              "labctl", "pilotlab", "agents", "evalsuites"]).splitlines()
                 if ln.strip()]
        return {"root": str(self.root), "commit": commit, "dirty_product_files": dirty}


def measured(cmd: list[str], env: dict[str, str], cwd: Path, timeout_s: float, min_free_mb: float,
             log_dir: Path, name: str, labd_pid: int | None = None, quiet_max_s: float = 0) -> dict[str, Any]:
    """Run one command to completion (after waiting up to quiet_max_s for a quiet machine); wall time, the child's
    own peak RSS and CPU (os.wait4's rusage), and the CPU other processes used meanwhile. Killed past timeout_s or
    when MemAvailable < min_free_mb."""
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    quiet = wait_quiet(quiet_max_s)
    labd0 = proc_cpu_s(labd_pid) if labd_pid else 0.0
    j0 = cpu_jiffies()
    with out_path.open("wb") as fo, err_path.open("wb") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env, cwd=cwd)
        done = threading.Event()
        killed: list[str] = []
        min_avail = [mem_available_mb()]

        def guard() -> None:
            while not done.wait(0.1):
                avail = mem_available_mb()
                min_avail[0] = min(min_avail[0], avail)
                why = ""
                if time.perf_counter() - t0 > timeout_s:
                    why = f"killed after {timeout_s:.0f} s (--cmd-timeout)"
                elif avail < min_free_mb:
                    why = f"killed: MemAvailable fell to {avail:.0f} MB (< --min-free-mb {min_free_mb:.0f})"
                if why and not done.is_set():
                    killed.append(why)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, signal.SIGKILL)
                    return

        th = threading.Thread(target=guard, daemon=True)
        th.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    th.join()
    j1 = cpu_jiffies()
    labd_cpu = (proc_cpu_s(labd_pid) - labd0) if labd_pid else 0.0
    child_cpu = ru.ru_utime + ru.ru_stime
    machine_cpu = (j1[0] - j0[0]) / CLK_TCK
    return {
        "wall_s": round(wall, 4), "rss_mb": round(ru.ru_maxrss * 1024 / MB, 1), "cpu_s": round(child_cpu, 3),
        "rc": p.returncode, "killed": killed[0] if killed else None,
        "labd_cpu_s": round(labd_cpu, 3), "other_cpu_s": round(max(0.0, machine_cpu - child_cpu - labd_cpu), 3),
        "steal_s": round((j1[1] - j0[1]) / CLK_TCK, 3),
        "min_mem_available_mb": round(min_avail[0]), "quiet_before": quiet,
        "stdout_tail": out_path.read_text(errors="replace")[-1500:],
        "stderr_tail": err_path.read_text(errors="replace")[-1500:],
    }


class Labd:
    def __init__(self, code: Code, data_dir: Path, suites: Path) -> None:
        self.code, self.data_dir, self.suites = code, data_dir, suites
        self.proc: subprocess.Popen[bytes] | None = None
        self.addr = ""
        self.log = data_dir / "labd.log"

    def start(self) -> Labd:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = self.code.labd("serve", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0",
                             "--metrics-listen", "127.0.0.1:0", "--suites", str(self.suites))
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"), env=self.code.env,
                                     cwd=self.code.root)
        addr_file = self.data_dir / "labd.addr"
        while not addr_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"labd exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if time.monotonic() - t0 > 120:
                raise RuntimeError("labd did not listen within 120 s")
            time.sleep(0.05)
        self.addr = addr_file.read_text().strip()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def hwm_mb(self) -> float:
        return round(proc_status_kib(self.pid, "VmHWM") * 1024 / MB, 1)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"labd exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def labctl_json(code: Code, lab: Labd, token: str, *args: str, timeout: float = 300) -> Any:
    p = subprocess.run(code.labctl(*args, "--json"), env=code.with_lab(lab.addr, token), cwd=code.root, text=True,
                       capture_output=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"labctl {' '.join(args)} exited {p.returncode}: {p.stderr[-2000:]}")
    return json.loads(p.stdout)


# ------------------------------------------------------------------------------------------ the raw device


class RawDevice:
    """One device speaking the agent protocol by hand, as tests/e2e/test_protocol.py's RawDevice, plus what a real
    agent adds for long tasks: heartbeats at the interval the lab asks, and batches pipelined under a window."""

    def __init__(self, addr: str, agent_token: str, name: str, key: Ed25519PrivateKey) -> None:
        self.key = key
        self.channel = grpc.insecure_channel(addr, options=[("grpc.max_send_message_length", 64 << 20),
                                                            ("grpc.max_receive_message_length", 64 << 20)])
        stub = agent_pb2_grpc.AgentServiceStub(self.channel)
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        resp = stub.Enrol(agent_pb2.EnrolRequest(name=name, device_class="smart-terminal",
                                                 capabilities=common_pb2.Capabilities(slots=1), public_key=public),
                          metadata=[("authorization", f"Bearer {agent_token}")], timeout=30)
        self.md = [("authorization", f"Bearer {resp.device_token}")]
        self.out: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        self.out.put(agent_pb2.AgentMessage(hello=agent_pb2.Hello(capabilities=common_pb2.Capabilities(slots=1))))
        self.inbox: queue.Queue[agent_pb2.LabMessage | grpc.RpcError] = queue.Queue()
        self.call = stub.Session(self._requests(), metadata=self.md)
        threading.Thread(target=self._read, daemon=True).start()
        welcome = self.next()
        if not welcome.HasField("welcome"):
            raise RuntimeError(f"expected a Welcome, got {welcome}")
        self.interval_s = max(0.2, welcome.welcome.heartbeat_interval_ms / 1000)
        self.running: list[str] = []
        self._stop = threading.Event()
        threading.Thread(target=self._heartbeat, daemon=True).start()

    def _requests(self) -> Iterator[agent_pb2.AgentMessage]:
        while (m := self.out.get()) is not None:
            yield m

    def _read(self) -> None:
        try:
            for msg in self.call:
                self.inbox.put(msg)
        except grpc.RpcError as e:
            self.inbox.put(e)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.out.put(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(
                sent_unix_ms=int(time.time() * 1000), running_attempt_ids=list(self.running))))

    def next(self, timeout: float = 60) -> agent_pb2.LabMessage:
        item = self.inbox.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            raise RuntimeError(f"session ended: {item.code()} {item.details()}")
        return item

    def assignment(self, timeout: float = 120) -> d.Assignment:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next(max(1.0, deadline - time.monotonic()))
            if msg.HasField("assignment"):
                return convert.assignment_from_pb(msg.assignment)

    def send(self, msg: agent_pb2.AgentMessage) -> None:
        self.out.put(msg)

    def close(self) -> None:
        self._stop.set()
        self.out.put(None)
        self.channel.close()


def plan_latency(n: int, kinds: list[str]) -> list[int]:
    """n latency samples spread over the timed runs: the first n % k runs one more."""
    k = len(kinds)
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def quiet_machine(repeat: int, elapsed_s: float) -> dict[str, Any]:
    """One timed run's machine state as the agent records it (agents/job_runner.py Around.record): a quiet
    2-CPU machine without a thermal sensor or cpufreq."""
    return {"repeat": repeat, "thermal": {"available": False, "reason": "no thermal sensor in sysfs"},
            "elapsed_s": round(elapsed_s, 6), "n_cpus": 2, "online_cpus": 2, "steal_share": 0.0, "iowait_share": 0.0,
            "busy_share": 0.5, "other_processes_cpu_share": 0.0, "load_1m_before": 1.0, "load_1m_after": 1.0,
            "freq_mhz_before": None, "freq_mhz_after": None, "governor_before": None, "governor_after": None,
            "throttle_events": None, "procs_running_after": 1,
            "notes": ["no cpufreq in sysfs: frequency not recorded"]}


def run_task(dev: RawDevice, a: d.Assignment, n: int, labels: np.ndarray, rng: np.random.Generator
             ) -> dict[str, Any]:
    """What a correct agent sends for the assignment, with n latency samples over its timed runs."""
    assigned = Assigned(a.scenario, effective(requested(a.scenario, a.settings)).to_dict(), a.execution_provider,
                        str((a.accuracy or {}).get("metric", "top1")) if a.accuracy else None, a.golden is not None)
    kinds = latency_kinds(assigned.scenario, assigned.settings)
    counts = plan_latency(n, kinds)
    min_q = int(assigned.settings["min_query_count"])
    if min(counts) < min_q:
        raise SystemExit(f"{n} samples over {len(kinds)} timed runs is fewer than min_query_count {min_q} each")
    dev.running = [a.attempt_id]
    t0 = time.perf_counter()
    seq = 0
    outstanding: set[int] = set()
    acked = 0

    def drain(block: bool) -> None:
        nonlocal acked
        while outstanding:
            try:
                msg = dev.next(120) if block else dev.inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(msg, grpc.RpcError):
                raise RuntimeError(f"session ended: {msg.code()} {msg.details()}")
            if msg.HasField("ack") and not msg.ack.finished:
                outstanding.discard(msg.ack.seq)
                acked += 1
            if block:
                return

    def emit(kind: str, arrs: dict[str, np.ndarray]) -> None:
        nonlocal seq
        size = arrs["index"].size
        for lo in range(0, max(size, 1), BATCH):
            part = {k: v[lo:lo + BATCH] for k, v in arrs.items()}
            sig = dev.key.sign(batch_signing_bytes(a.attempt_id, seq, kind, {**part, "fvalue": None}))
            lists = {k: v.tolist() for k, v in part.items()}
            dev.send(agent_pb2.AgentMessage(results=agent_pb2.ResultBatch(
                attempt_id=a.attempt_id, seq=seq, kind=kind, signature=sig, **lists)))
            outstanding.add(seq)
            seq += 1
            drain(block=False)
            while len(outstanding) >= WINDOW:
                drain(block=True)

    def one_set(t: np.ndarray, value: np.ndarray, sample_index: np.ndarray) -> dict[str, np.ndarray]:
        return {"index": np.arange(t.size, dtype=np.int64), "sample_index": sample_index.astype(np.int64),
                "t_ns": t.astype(np.int64), "value": value.astype(np.int64), "aux": np.zeros(t.size, dtype=np.int64)}

    t_next = 9_000_000_000_000  # a perf_counter reading
    windows: list[dict[str, Any]] = []
    system: list[dict[str, Any]] = []
    for kind, count in zip(kinds, counts, strict=True):
        lat = (LAT_MEDIAN_NS * rng.lognormal(0.0, 0.12, size=count)).astype(np.int64) + 1
        t = t_next + np.concatenate([[0], np.cumsum(lat[:-1] + HARNESS_GAP_NS)]).astype(np.int64)
        windows.append({"kind": kind, "start_ns": int(t[0]), "end_ns": int(t[-1] + lat[-1])})
        system.append(quiet_machine(len(system), (windows[-1]["end_ns"] - windows[-1]["start_ns"]) / 1e9))
        emit(kind, one_set(t, lat, np.arange(count, dtype=np.int64) % labels.size))
        t_next = int(t[-1] + lat[-1]) + REPEAT_GAP_NS
        del lat, t
    q = int(assigned.settings["audit_queries"])
    lat = (LAT_MEDIAN_NS * rng.lognormal(0.0, 0.12, size=2 * q)).astype(np.int64) + 1
    t = t_next + np.arange(2 * q, dtype=np.int64) * (2 * LAT_MEDIAN_NS)
    varied = rng.integers(0, labels.size, size=q, dtype=np.int64)
    every = np.arange(labels.size, dtype=np.int64)
    extra = {"audit-same": (t[0::2], lat[0::2], np.zeros(q, dtype=np.int64)),  # interleaved with audit-varied
             "audit-varied": (t[1::2], lat[1::2], varied),
             "perf-prediction": (t[1::2], labels[varied], varied),
             "prediction": (np.zeros(labels.size, dtype=np.int64), labels[every], every)}
    other = 0
    for kind in required_sets(assigned):
        if kind in extra:
            emit(kind, one_set(*extra[kind]))
            other += extra[kind][0].size
        elif kind not in kinds:
            raise SystemExit(f"the verify bench cannot send result set {kind!r} that the suite assigns")
    while outstanding:
        drain(block=True)
    sent_s = time.perf_counter() - t0
    fin = d.AttemptFinish(a.attempt_id, d.Outcome.OK, batches=seq, effective_settings=dict(assigned.settings),
                          execution_provider=assigned.execution_provider,
                          observations=d.Observations(windows=windows, system=system))
    dev.send(agent_pb2.AgentMessage(finished=convert.finish_to_pb(fin)))
    while True:
        msg = dev.next(600)
        if msg.HasField("ack") and msg.ack.finished:
            break
        if msg.HasField("ack"):
            acked += 1
    dev.running = []
    return {"latency_sets": kinds, "latency_per_set": counts, "other_samples": other, "batches": seq,
            "acked_batches": acked, "send_s": round(sent_s, 3), "finished_s": round(time.perf_counter() - t0, 3),
            "samples_per_s": round((n + other) / max(sent_s, 1e-9))}


# ------------------------------------------------------------------------------------------------- suites


def repeats_of(suite_dir: Path) -> int:
    task = tomllib.loads((suite_dir / "suite.toml").read_text())["tasks"][0]
    return int(effective(requested(task["scenario"], task.get("settings") or {})).repeats)


def make_suite(code: Code, root: Path, n: int) -> tuple[str, dict[str, Any]]:
    """A copy of the smoke suite, `verify-N`, whose timed runs hold n latency samples in all."""
    src = code.root / "evalsuites" / BASE_SUITE
    suite_id = f"verify-{n}"
    dest = root / suite_id
    shutil.copytree(src, dest)
    text = (dest / "suite.toml").read_text()
    doc = tomllib.loads(text)
    task = doc["tasks"][0]
    if len(doc["tasks"]) != 1 or task["scenario"] != "single-stream":
        raise SystemExit(f"suite {BASE_SUITE} no longer has one single-stream task; the bench needs one")
    reps = repeats_of(src)
    base_q = int(effective(requested(task["scenario"], task.get("settings") or {})).min_query_count)
    min_q = max(base_q, n // reps)
    text = text.replace(f'id = "{BASE_SUITE}"', f'id = "{suite_id}"', 1)
    text, k = re.subn(r"min_query_count = \d+", f"min_query_count = {min_q}", text, count=1)
    if k != 1:
        raise SystemExit(f"suite {BASE_SUITE}'s task sets no min_query_count; the bench cannot raise it")
    (dest / "suite.toml").write_text(text)
    settings = tomllib.loads(text)["tasks"][0].get("settings") or {}
    return suite_id, {"suite": suite_id, "settings": settings, "repeats": reps}


def run_status(lab: Labd, token: str, run_id: str) -> d.Run:
    with grpc.insecure_channel(lab.addr) as ch:
        r = lab_pb2_grpc.LabServiceStub(ch).GetRun(lab_pb2.GetRunRequest(id=run_id), timeout=60,
                                                   metadata=[("authorization", f"Bearer {token}")])
    return convert.run_from_pb(r)


def wait_run(lab: Labd, token: str, run_id: str, timeout: float) -> d.Run:
    deadline = time.monotonic() + timeout
    while True:
        run = run_status(lab, token, run_id)
        if run.status.terminal:
            return run
        lab.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} still {run.status.value} after {timeout:.0f} s")
        time.sleep(0.2)


# -------------------------------------------------------------------------------------------------- bench


def one_size(args: argparse.Namespace, code: Code, lab: Labd, tokens: dict[str, str], dev: RawDevice, n: int,
             labels: np.ndarray, work: Path, pem: Path, suite: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {"size": n, "samples": n, "suite": suite}
    rng = np.random.default_rng(SEED + n)
    logs = work / f"logs-{n}"
    logs.mkdir()
    run = labctl_json(code, lab, tokens["engineer"], "run", "submit", "--suite", suite["suite"], "--device", DEVICE)
    res["run_id"] = run["id"]
    t0 = time.perf_counter()
    a = dev.assignment()
    res["ingest"] = run_task(dev, a, n, labels, rng)
    done = wait_run(lab, tokens["engineer"], run["id"], args.cmd_timeout)
    res["ingest"]["graded_s"] = round(time.perf_counter() - t0, 3)
    task = done.tasks[0] if done.tasks else None
    validity = ((task.metrics or {}).get("validity") if task is not None else None) or {}
    res["run"] = {"status": done.status.value, "verdict": done.verdict.value if done.verdict else None,
                  "valid": validity.get("valid"), "reasons": validity.get("reasons")}
    if done.status.value != "completed" or validity.get("valid") is not True:
        raise RuntimeError(f"run {run['id']} of {n} samples ended {res['run']}: the bench built a bundle the lab "
                           "does not grade as a correct agent's")

    def pull(name: str) -> tuple[dict[str, Any], Path]:
        out = work / f"bundle-{n}-{name}"
        m = measured(code.labctl("report", "pull", run["id"], "--out", str(out)),
                     code.with_lab(lab.addr, tokens["certifier"]), code.root, args.cmd_timeout, args.min_free_mb,
                     logs, f"pull-{name}", lab.pid, args.quiet_max_s)
        return m, out

    def verify(bundle: Path, name: str) -> dict[str, Any]:
        m = measured(code.labctl("report", "verify", str(bundle), "--pubkey", str(pem)), code.env, code.root,
                     args.cmd_timeout, args.min_free_mb, logs, f"verify-{name}", lab.pid, args.quiet_max_s)
        m["intact"] = m["rc"] == 0 and "intact" in m["stdout_tail"]
        return m

    issue, first = pull("issue")
    res["issue"] = {k: issue[k] for k in ("wall_s", "rss_mb", "cpu_s", "rc", "killed", "labd_cpu_s", "other_cpu_s")}
    res["labd_hwm_mb_after_issue"] = lab.hwm_mb()
    if issue["rc"] != 0:
        res["note"] = f"the first pull (issuing the report) failed: {issue['killed'] or issue['stderr_tail'][-400:]}"
        return res
    size, files = dir_bytes(first)
    rel, big, n_sample_files = largest_sample_file(first)
    res["bundle"] = {"bytes": size, "mb": round(size / MB, 3), "files": files, "sample_files": n_sample_files,
                     "largest_sample_file": rel, "largest_sample_bytes": big, "largest_sample_mb": round(big / MB, 3)}
    shutil.rmtree(first)

    pulls: list[dict[str, Any]] = []
    verifies: list[dict[str, Any]] = []
    started = time.monotonic()
    note = ""
    for r in range(args.rounds):
        if r and args.size_budget_s:
            spent = time.monotonic() - started
            pair = pulls[-1]["wall_s"] + verifies[-1]["wall_s"]
            if spent + pair > args.size_budget_s:
                note = (f"{r} of {args.rounds} rounds: another pull and verify ({pair:.0f} s) would pass "
                        f"--size-budget-s {args.size_budget_s:.0f} (spent {spent:.0f} s)")
                break
        p, bundle = pull(f"r{r}")
        pulls.append(p)
        if p["rc"] != 0:
            note = f"pull round {r} failed: {p['killed'] or p['stderr_tail'][-400:]}"
            break
        v = verify(bundle, f"r{r}")
        verifies.append(v)
        shutil.rmtree(bundle)
        if not v["intact"]:
            note = f"verify round {r} did not report the bundle intact: {v['killed'] or v['stderr_tail'][-400:]}"
            break
    res["rounds_done"] = len(verifies)
    res["pull"] = {"runs": pulls, "wall_s": median_min_max([p["wall_s"] for p in pulls if p["rc"] == 0]),
                   "rss_mb_max": max((p["rss_mb"] for p in pulls), default=None)}
    good = [v for v in verifies if v["intact"]]
    res["verify"] = {"runs": verifies, "wall_s": median_min_max([v["wall_s"] for v in good]),
                     "rss_mb_max": max((v["rss_mb"] for v in verifies), default=None),
                     "intact": bool(verifies) and all(v["intact"] for v in verifies),
                     "rc": [v["rc"] for v in verifies],
                     "notes": sorted({ln[len("note: "):] for v in verifies for ln in v["stderr_tail"].splitlines()
                                      if ln.startswith("note: ")})}
    med_v, med_p = res["verify"]["wall_s"]["median"], res["pull"]["wall_s"]["median"]
    res["verify_s_per_million"] = round(med_v / (n / 1e6), 3) if med_v is not None else None
    res["pull_s_per_million"] = round(med_p / (n / 1e6), 3) if med_p is not None else None
    res["targets"] = {
        "verify_limit_s": round(0.5 + n / 1e6, 3),
        "verify_met": None if med_v is None else med_v < 0.5 + n / 1e6,
        "pull_limit_s": round(n / 1e6, 3),
        "pull_met": None if med_p is None else med_p < n / 1e6,
        "verify_rss_limit_mb": round(3 * res["bundle"]["largest_sample_mb"], 1),
        "verify_rss_met": None if res["verify"]["rss_mb_max"] is None
        else res["verify"]["rss_mb_max"] < 3 * res["bundle"]["largest_sample_mb"],
    }
    res["labd_hwm_mb"] = lab.hwm_mb()
    if note:
        res["note"] = note
    return res


def startup(code: Code, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    logs = work / "logs-startup"
    logs.mkdir()
    subprocess.run(code.labctl("--help"), env=code.env, cwd=code.root, capture_output=True, timeout=120)  # untimed
    runs = [measured(code.labctl("--help"), code.env, code.root, 120, args.min_free_mb, logs, f"help-{i}",
                     quiet_max_s=args.quiet_max_s) for i in range(5)]
    return {"labctl_help": {"wall_s": median_min_max([r["wall_s"] for r in runs if r["rc"] == 0]),
                            "rss_mb_max": max(r["rss_mb"] for r in runs), "rc": [r["rc"] for r in runs]}}


def machine_info() -> dict[str, Any]:
    lscpu = _run_text(["lscpu"]).splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu if ln.startswith("Model name:")), platform.processor())
    with open("/proc/meminfo") as f:
        total = int(f.readline().split()[1]) * 1024
    return {"cpu_model": model, "lscpu_head": lscpu[:20], "logical_cpus": os.cpu_count(),
            "memory_gb": round(total / 1e9, 1), "os": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "grpcio": grpc.__version__}


def command_line() -> str:
    exe = os.path.relpath(sys.executable, Path.cwd())
    me = os.path.relpath(Path(__file__).resolve(), Path.cwd())
    return shlex.join([exe if not exe.startswith("..") else sys.executable, me, *sys.argv[1:]])


def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


def spread(s: dict[str, Any]) -> str:
    if s.get("median") is None:
        return "—"
    return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


HEADERS = ["size", "samples", "bundle MB", "largest sample file MB", "pull s", "pull MB RSS", "verify s",
           "verify MB RSS", "verify s per million", "verify < 0.5 s + 1 s/M", "rounds"]


def rows(doc: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in doc["results"]:
        if "error" in r:
            out.append([fmt(r["size"]), fmt(r["size"]), "—", "—", "—", "—", "—", "—", "—", "—",
                        f"not run: {r['error']}"])
            continue
        b = r.get("bundle") or {}
        pull, ver = r.get("pull") or {}, r.get("verify") or {}
        tg = r.get("targets") or {}
        out.append([fmt(r["size"]), fmt(r["samples"]), fmt(b.get("mb")), fmt(b.get("largest_sample_mb")),
                    spread(pull.get("wall_s") or {}), fmt(pull.get("rss_mb_max"), 0), spread(ver.get("wall_s") or {}),
                    fmt(ver.get("rss_mb_max"), 0), fmt(r.get("verify_s_per_million")),
                    "—" if tg.get("verify_met") is None else ("met" if tg["verify_met"] else "not met"),
                    str(r.get("rounds_done", 0)) + (" (cut short)" if r.get("note") else "")])
    return out


def build_rows(doc: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in doc["results"]:
        if "error" in r:
            continue
        ing, iss = r.get("ingest") or {}, r.get("issue") or {}
        out.append([fmt(r["size"]), str(len(ing.get("latency_sets", []))), fmt(ing.get("batches")),
                    fmt(ing.get("send_s")), fmt(ing.get("samples_per_s")), fmt(ing.get("graded_s")),
                    fmt(iss.get("wall_s")), fmt(iss.get("rss_mb"), 0), fmt(r.get("labd_hwm_mb"), 0)])
    return out


BUILD_HEADERS = ["size", "timed runs", "batches", "send s", "samples/s sent", "submit → graded s",
                 "first pull (issues the report) s", "its MB RSS", "labd peak MB RSS"]


def print_table(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    t = Table(title=f"pull and verify ({doc['label']}; median (min–max) of the rounds)")
    for h in HEADERS:
        t.add_column(h, justify="left" if h == "rounds" else "right")
    for row in rows(doc):
        t.add_row(*row)
    console.print(t)
    b = Table(title="building each bundle (once per size)")
    for h in BUILD_HEADERS:
        b.add_column(h, justify="right")
    for row in build_rows(doc):
        b.add_row(*row)
    console.print(b)
    h = doc["startup"]["labctl_help"]
    console.print(f"labctl --help: {spread(h['wall_s'])} s, {fmt(h['rss_mb_max'], 0)} MB RSS")
    for r in doc["results"]:
        if r.get("note"):
            console.print(f"{fmt(r['size'])}: {r['note']}")


def markdown(doc: dict[str, Any]) -> str:
    def table(headers: list[str], body: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|",
                *("| " + " | ".join(row) + " |" for row in body)]

    m, c, h = doc["machine"], doc["code"], doc["startup"]["labctl_help"]
    other = next((fmt(r["ingest"]["other_samples"]) for r in doc["results"] if "ingest" in r), "some")
    lines = [f"# Pull and verify a report bundle: {doc['label']}", "",
             f"Date: {doc['date']}  ", f"Command: `{doc['command']}`  ",
             f"Code measured: `{c['root']}` at commit `{c['commit']}`"
             + (f", uncommitted changes in {', '.join(c['dirty_product_files'])}" if c["dirty_product_files"]
                else ", no uncommitted changes in labd/, labctl/, pilotlab/, agents/, evalsuites/") + "  ",
             f"Machine: {m['cpu_model']}, {m['logical_cpus']} CPUs, {m['memory_gb']} GB; Python {m['python']}, "
             f"numpy {m['numpy']}, grpcio {m['grpcio']}", "",
             "Median (min–max) over the rounds; each round is `labctl report pull RUN --out DIR`, then "
             "`labctl report verify DIR --pubkey lab.pem`, each a fresh process; RSS is that process's own peak "
             "(ru_maxrss from os.wait4). MB = 10^6 bytes. Samples are latency samples (the task's timed runs); "
             f"each bundle also holds {other} audit and accuracy samples. The targets of issue 17: verify < 0.5 s + "
             "1 s per million samples; pull < 1 s per million; verify's RSS < 3x the largest sample file.", ""]
    lines += table(HEADERS, rows(doc))
    lines += ["", f"`labctl --help`: {spread(h['wall_s'])} s (5 runs), {fmt(h['rss_mb_max'], 0)} MB RSS.", ""]
    lines += ["Per size, once: the raw device's upload through the real agent protocol, the lab's grading, and the "
              "first pull, which issues the report in labd (later pulls send the kept bundle):", ""]
    lines += table(BUILD_HEADERS, build_rows(doc))
    notes = [f"- {fmt(r['size'])}: {r.get('note') or r.get('error')}" for r in doc["results"]
             if r.get("note") or r.get("error")]
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += ["", "Per size, the pull and verify rounds in order (wall s / MB RSS / other processes' CPU s in the "
              "same window); before each, the bench waited up to --quiet-max-s for one second in which all CPUs "
              f"were less than {QUIET_BUSY:.0%} busy:", ""]
    for r in doc["results"]:
        if "pull" not in r:
            continue
        pr = ", ".join(f"{p['wall_s']:.2f}/{p['rss_mb']:.0f}/{p['other_cpu_s']:.2f}" for p in r["pull"]["runs"])
        vr = ", ".join(f"{v['wall_s']:.2f}/{v['rss_mb']:.0f}/{v['other_cpu_s']:.2f}" for v in r["verify"]["runs"])
        lines.append(f"- {fmt(r['size'])}: pull {pr}; verify {vr}; largest sample file "
                     f"`{r['bundle']['largest_sample_file']}`; verify notes: {r['verify']['notes'] or 'none'}")
    w = doc.get("waited_for_others") or {}
    lines += ["", f"Before measuring the bench waited {w.get('waited_s', 0)} s for other benches "
              f"({', '.join(w.get('patterns', []))}) to finish; still running at the start: "
              f"{len(w.get('still_running') or [])}.", "", "`lscpu | head -20`:", "", "```", *m["lscpu_head"], "```",
              ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES),
                    help="latency samples per bundle, comma-separated (default 10000,100000,1000000,10000000)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved pull/verify rounds per size (default 3)")
    ap.add_argument("--quick", action="store_true", help="2,000 samples, 1 round: a smoke test of the bench")
    ap.add_argument("--json", type=Path, default=None, help="write the results here (default "
                    "bench/results/verify.json; none with --quick)")
    ap.add_argument("--md", type=Path, default=None, help="write the tables here (default bench/results/verify.md; "
                    "none with --quick)")
    ap.add_argument("--label", default="", help="what is measured, for the tables' title (default: the commit)")
    ap.add_argument("--code-root", type=Path, default=REPO,
                    help="the checkout whose labd and labctl to run (PYTHONPATH and cwd); default this one")
    ap.add_argument("--cmd-timeout", type=float, default=1200, help="kill one pull or verify after this long (s)")
    ap.add_argument("--size-budget-s", type=float, default=0,
                    help="no further round of a size once its rounds would pass this (s); 0 = no limit")
    ap.add_argument("--min-free-mb", type=float, default=1500,
                    help="kill a measured command when the machine's MemAvailable falls below this (MB)")
    ap.add_argument("--wait-for", action="append", default=None,
                    help="wait until no process whose command line holds this runs (repeatable; default "
                    "bench/lab_vs_raw.py)")
    ap.add_argument("--wait-max-s", type=float, default=3600, help="wait for those at most this long")
    ap.add_argument("--quiet-max-s", type=float, default=120,
                    help="before each measured command, wait up to this long for a second in which the CPUs are "
                    f"less than {QUIET_BUSY:.0%} busy (0: no wait; --quick does not wait)")
    ap.add_argument("--keep", type=Path, default=None, help="keep labd's data dir and the logs here")
    args = ap.parse_args(argv)
    if args.quick:
        sizes, args.rounds, args.quiet_max_s = list(QUICK_SIZES), 1, 0
    else:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
        args.json = args.json or REPO / "bench" / "results" / "verify.json"
        args.md = args.md or REPO / "bench" / "results" / "verify.md"
    code = Code(Path(args.code_root).resolve())
    if code.root != CODE_ROOT:
        raise SystemExit(f"--code-root {code.root} was not read before the imports ({CODE_ROOT})")

    patterns = args.wait_for if args.wait_for is not None else ["bench/lab_vs_raw.py"]
    waited = wait_for_others(patterns, 0 if args.quick else args.wait_max_s) if patterns else {}
    git = code.git()
    doc: dict[str, Any] = {
        "bench": "verify", "label": args.label or f"commit {(git['commit'] or '?')[:12]}"
        + (" with uncommitted changes" if git["dirty_product_files"] else ""),
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(), "command": command_line(),
        "code": git | {"imports_subprocess": code.imports(),
                       "imports_bench": {m: sys.modules[m].__file__ for m in ("pilotlab.samples", "pilotlab.convert")}},
        "machine": machine_info(),
        "params": {"sizes": sizes, "rounds": args.rounds, "quick": args.quick, "batch": BATCH,
                   "cmd_timeout_s": args.cmd_timeout, "size_budget_s": args.size_budget_s,
                   "min_free_mb": args.min_free_mb, "quiet_max_s": args.quiet_max_s, "base_suite": BASE_SUITE},
        "waited_for_others": waited, "results": [],
    }
    imported = doc["code"]["imports_subprocess"]
    wrong = [f"{m}: {f}" for m, f in imported.items() if not str(f).startswith(str(code.root) + os.sep)]
    if wrong:
        raise SystemExit(f"subprocesses import the product from outside {code.root}: {wrong}")
    subprocess.run([sys.executable, "-m", "compileall", "-q", "labd", "labctl", "pilotlab", "evalsuites"],
                   cwd=code.root, env=code.env, capture_output=True, timeout=600)  # no compile inside a timing

    work = Path(tempfile.mkdtemp(prefix="verify-bench-"))
    lab: Labd | None = None
    dev: RawDevice | None = None
    try:
        doc["startup"] = startup(code, args, work)
        suites = work / "suites"
        suites.mkdir()
        made = {n: make_suite(code, suites, n)[1] for n in sizes}
        with np.load(code.root / "evalsuites" / BASE_SUITE / "data" / "digits_test.npz") as z:
            labels = np.asarray(z["labels"], dtype=np.int64)
        lab = Labd(code, work / "lab", suites).start()
        tokens = {role: labctl_json(code, lab, lab.admin_token, "token", "create", "--role", role)["token"]
                  for role in ("agent", "engineer", "certifier")}
        pem = work / "lab.pem"
        pem.write_bytes(subprocess.run(code.labctl("lab", "pubkey"), env=code.with_lab(lab.addr, tokens["certifier"]),
                                       cwd=code.root, capture_output=True, check=True, timeout=120).stdout)
        dev = RawDevice(lab.addr, tokens["agent"], DEVICE, Ed25519PrivateKey.generate())
        for n in sizes:
            print(f"[verify bench] {n:,} samples ...", file=sys.stderr, flush=True)
            try:
                r = one_size(args, code, lab, tokens, dev, n, labels, work, pem, made[n])
            except (RuntimeError, OSError, subprocess.SubprocessError, grpc.RpcError, queue.Empty) as e:
                lab.check_alive()
                r = {"size": n, "samples": n, "error": f"{type(e).__name__}: {e}"[:1000]}
            doc["results"].append(r)
            brief = {k: r.get(k) for k in ("rounds_done", "verify_s_per_million", "note", "error")}
            print(f"[verify bench] {n:,}: {brief}", file=sys.stderr, flush=True)
            if args.json:  # partial results survive a later size's failure
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(doc, indent=1) + "\n")
    finally:
        if dev is not None:
            dev.close()
        if lab is not None:
            lab.stop()
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)

    print_table(doc)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(markdown(doc))
    failed = [r for r in doc["results"] if "error" in r or not (r.get("verify") or {}).get("intact")]
    return 1 if failed and args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
