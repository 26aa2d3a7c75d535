"""`make demo`: a whole lab on this machine — labd, one lab-agent, the smoke suite, a verified report."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _wait_for(path: Path, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise SystemExit(f"demo: {what} exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {what} not ready after {timeout:.0f}s")
        time.sleep(0.1)


def _labctl(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN / "labctl"), *args], env=env, text=True, stdout=subprocess.PIPE)
    if check and proc.returncode != 0:
        raise SystemExit(f"demo: labctl {' '.join(args)} failed with exit {proc.returncode}")
    return proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("demo-report"))
    ap.add_argument("--suite", default="smoke")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pilotlab-demo-"))
    data, work, logs = tmp / "lab", tmp / "agent", tmp / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        print(f"→ starting labd (SQLite in {data})", flush=True)
        labd = subprocess.Popen([str(BIN / "labd"), "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0"],
                                stdout=subprocess.DEVNULL, stderr=(logs / "labd.log").open("wb"))
        procs.append(labd)
        _wait_for(data / "labd.addr", labd, "labd")
        addr = (data / "labd.addr").read_text().strip()
        env = {**os.environ, "LAB_ADDR": addr, "LAB_TOKEN": (data / "admin.token").read_text().strip()}
        agent_token = _labctl(env, "token", "create", "--role", "agent", "--json").stdout
        print(f"→ labd on {addr}; enrolling lab-agent 'demo-terminal'", flush=True)
        agent = subprocess.Popen([str(BIN / "lab-agent"), "--lab", addr, "--token", json.loads(agent_token)["token"],
                                  "--name", "demo-terminal", "--class", "smart-terminal", "--region", "local",
                                  "--tag", "purpose=demo", "--work-dir", str(work)],
                                 stdout=subprocess.DEVNULL, stderr=(logs / "agent.log").open("wb"))
        procs.append(agent)
        deadline = time.monotonic() + 60
        while True:
            devs = json.loads(_labctl(env, "devices", "list", "--json").stdout)
            if any(d["name"] == "demo-terminal" and d["status"] != "offline" for d in devs):
                break
            if agent.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"demo: the agent did not come online; see {logs / 'agent.log'}")
            time.sleep(0.2)
        print(f"→ running suite {args.suite}", flush=True)
        sub = _labctl(env, "run", "submit", "--suite", args.suite, "--device", "demo-terminal", "--wait", "--json",
                      check=False)
        run = json.loads(sub.stdout)
        if sub.returncode not in (0, 1):
            raise SystemExit(f"demo: run {run['id']} ended {run['status']}: {run.get('reason')}")
        if args.out.exists():
            shutil.rmtree(args.out)
        subprocess.run([str(BIN / "labctl"), "report", "pull", run["id"], "--out", str(args.out)], env=env, check=True)
        (tmp / "lab.pub.pem").write_text(_labctl(env, "lab", "pubkey").stdout)
        subprocess.run([str(BIN / "labctl"), "report", "verify", str(args.out), "--pubkey", str(tmp / "lab.pub.pem")],
                       env=env, check=True)
        print(f"→ verdict {run['verdict']}; open {args.out / 'report.html'}", flush=True)
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
