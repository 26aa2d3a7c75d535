"""Real processes for end-to-end tests: labd and lab-agent as subprocesses on 127.0.0.1, labctl as a command."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
# The lab-agent the e2e tests start: this venv's, or one a device would bring (`make test-agent-oldest` points it at
# the venv with the oldest onnxruntime the agent supports).
AGENT_BIN = Path(os.environ.get("PILOTLAB_AGENT_BIN") or BIN / "lab-agent")
PG_BASE = os.environ.get("PILOTLAB_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def wait_until(pred: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> int:
    """Signal a started process (unless it already ended) and return its exit status."""
    assert proc is not None
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=30)


@dataclass
class Labd:
    data_dir: Path
    port: int = 0
    db: str = ""
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    addr: str = ""
    log: Path = field(default_factory=Path)

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def start(self) -> Labd:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "labd.addr").unlink(missing_ok=True)
        self.log = self.data_dir / f"labd-{time.monotonic_ns()}.log"
        cmd = [str(BIN / "labd"), "serve", "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}",
               "--metrics-listen", "127.0.0.1:0"]
        if self.db:
            cmd += ["--db", self.db]
        cmd += self.extra
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"))
        addr_file = self.data_dir / "labd.addr"

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"labd exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            return addr_file.exists()

        wait_until(ready, 60, "labd to listen")
        self.addr = addr_file.read_text().strip()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        return stop_process(self.proc, sig)

    def metrics(self) -> str:
        import urllib.request

        addr = (self.data_dir / "metrics.addr").read_text().strip()
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
            return str(r.read().decode())


@dataclass
class Agent:
    lab: Labd
    name: str
    work_dir: Path
    token: str
    device_class: str = "smart-terminal"
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)

    def start(self) -> Agent:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.work_dir.parent / f"{self.name}-{time.monotonic_ns()}.log"
        cmd = [str(AGENT_BIN), "--lab", self.lab.addr, "--token", self.token, "--name", self.name,
               "--class", self.device_class, "--work-dir", str(self.work_dir), *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"))
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        return stop_process(self.proc, sig)

    def log_text(self) -> str:
        return self.log.read_text()


def labctl(lab: Labd | str, token: str | None, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_ADDR", "LAB_TOKEN")}
    env["LAB_ADDR"] = lab.addr if isinstance(lab, Labd) else lab
    if token is not None:
        env["LAB_TOKEN"] = token
    return subprocess.run([str(BIN / "labctl"), *args], env=env, text=True, capture_output=True, timeout=timeout)


def labctl_json(lab: Labd, token: str, *args: str) -> Any:
    p = labctl(lab, token, *args, "--json")
    assert p.returncode == 0, f"labctl {' '.join(args)} exited {p.returncode}: {p.stderr}"
    return json.loads(p.stdout)


def make_token(lab: Labd, role: str) -> str:
    return str(labctl_json(lab, lab.admin_token, "token", "create", "--role", role)["token"])


def device_online(lab: Labd, name: str) -> bool:
    devs = labctl_json(lab, lab.admin_token, "devices", "list")
    return any(d["name"] == name and d["status"] in ("online", "busy") for d in devs)


@pytest.fixture
def labd(tmp_path: Path) -> Iterator[Labd]:
    lab = Labd(tmp_path / "lab").start()
    yield lab
    lab.stop()


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    agents: list[Agent] = []

    def start(lab: Labd, name: str = "dev1", token: str | None = None, wait: bool = True, **kw: Any) -> Agent:
        a = Agent(lab, name, tmp_path / f"agent-{name}", token or make_token(lab, "agent"), **kw).start()
        agents.append(a)
        if wait:
            wait_until(lambda: device_online(lab, name) or (a.proc is not None and a.proc.poll() is not None),
                       60, f"agent {name} online")
            assert a.proc is not None and a.proc.poll() is None, a.log_text()
        return a

    yield start
    for a in agents:
        if a.proc is not None and a.proc.poll() is None:
            a.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for one labd; the test fails (not skips) when the server is missing."""
    import psycopg

    if os.environ.get("PILOTLAB_SKIP_POSTGRES") == "1":
        pytest.skip("PILOTLAB_SKIP_POSTGRES=1")
    schema = f"e2e_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(PG_BASE, autocommit=True, connect_timeout=5) as c:
            c.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL at {PG_BASE} is not reachable ({e}); start it or set PILOTLAB_PG_URL",
                    pytrace=False)
    yield PG_BASE.replace("postgresql://", "postgresql+psycopg://") + f"?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_BASE, autocommit=True) as c:
        c.execute(f"DROP SCHEMA {schema} CASCADE")


def make_suite(root: Path, suite_id: str, min_duration_ms: int = 500, regions: list[str] | None = None,
               classification: str = "public", own_dataset: bool = False, repeats: int | None = 1) -> Path:
    """A variant of the smoke suite (same artifacts) under root/suite_id: longer runs, restricted data; one timed
    run (repeats = 1) unless asked, since these suites test the lab's handling, not the repeats."""
    import re
    import shutil as sh

    dest = root / suite_id
    sh.copytree(Path(__file__).resolve().parents[2] / "evalsuites" / "smoke", dest)
    toml = (dest / "suite.toml").read_text()
    toml = toml.replace('id = "smoke"', f'id = "{suite_id}"', 1)
    toml = re.sub(r"min_duration_ms = \d+", f"min_duration_ms = {min_duration_ms}"
                  + (f"\nrepeats = {repeats}" if repeats is not None else ""), toml)
    if regions is not None:
        toml = toml.replace('classification = "public"\nregions = ["*"]',
                            f'classification = "{classification}"\nregions = {json.dumps(regions)}')
    if own_dataset:  # same samples, other bytes: an artifact this suite alone uses
        import hashlib

        import numpy as np

        path = dest / "data" / "digits_test.npz"
        old = hashlib.sha256(path.read_bytes()).hexdigest()
        old_size = path.stat().st_size
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        np.savez_compressed(path, **arrays)
        toml = toml.replace(old, hashlib.sha256(path.read_bytes()).hexdigest())
        toml = toml.replace(f"size = {old_size}", f"size = {path.stat().st_size}")
    (dest / "suite.toml").write_text(toml)
    return root


def task_phase(lab: Labd, run_id: str) -> str:
    """The first task's live phase, asked in-process: a labctl process per poll can take longer on a loaded machine
    than a phase lasts, and a wait for that phase would then never see it."""
    import grpc

    from pilotlab.v1 import lab_pb2, lab_pb2_grpc

    with grpc.insecure_channel(lab.addr) as ch:
        run = lab_pb2_grpc.LabServiceStub(ch).GetRun(lab_pb2.GetRunRequest(id=run_id), timeout=30,
                                                     metadata=[("authorization", f"Bearer {lab.admin_token}")])
    return str(run.tasks[0].phase)


class TcpProxy:
    """A loopback TCP proxy the test controls: cut() drops every connection and refuses new ones."""

    def __init__(self, target: str) -> None:
        import threading

        self.target = target.rsplit(":", 1)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        import threading

        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv: socket.socket) -> None:
        import threading

        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            if self._server is not srv:
                client.close()
                return
            upstream = socket.create_connection((self.target[0], int(self.target[1])))
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            self._server.close()
            self._server = None
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def close(self) -> None:
        self.cut()
