"""Before/after measurements of one labd code path, alternating in fresh processes: this tree, and this tree with the
path's files as they are at a git commit (`--compare REF`). Shared by bench/finish_cost.py and
bench/submit_claim_cost.py; imports nothing of labd or pilotlab, so a child can still put a snapshot first on its path.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def setup_path(src: str) -> None:
    """In a child: this tree on the path, and before it the snapshot src (its labd and pilotlab; evalsuites and bench
    from here), if given."""
    sys.path.insert(0, str(ROOT))
    if src:
        sys.path.insert(0, str(Path(src).resolve()))


def pct(xs: list[float], q: float) -> float:
    """The q-th percentile, nearest rank."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


def stats(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "p90": pct(xs, 90), "mean": statistics.fmean(xs), "min": min(xs)}


def trim_profile(text: str) -> str:
    """pstats' output from two lines above its column header (the totals), without the preamble."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "ncalls" in line:
            return "\n".join(lines[i - 2 if i >= 2 else 0:]).rstrip()
    return text.rstrip()


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            cpu = line.split(":", 1)[1].strip()
    return {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def command_line(script: str, argv: Sequence[str] | None) -> str:
    exe = Path(sys.executable)
    python = os.path.relpath(exe, ROOT) if exe.is_relative_to(ROOT) else str(exe)
    return f"{python} {script}" + "".join(f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))


def snapshot(ref: str, into: Path, files: Sequence[str]) -> list[str]:
    """This tree's labd and pilotlab copied into `into`, with `files` as they are at the git commit ref (read with
    `git show`, nothing in the repository changed). Returns the files that differ."""
    for pkg in ("labd", "pilotlab"):
        shutil.copytree(ROOT / pkg, into / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    changed = []
    for f in files:
        old = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:{f}"], capture_output=True, check=True).stdout
        if old != (ROOT / f).read_bytes():
            changed.append(f)
            (into / f).write_bytes(old)
    return changed


@dataclass
class Alternated:
    """What alternate() measured: each label's results in order, and the circumstances."""

    compare: str
    labels: list[str]
    runs: dict[str, list[dict[str, Any]]]
    changed: list[str] = field(default_factory=list)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    wall_s: float = 0.0
    commit: str = ""

    def code_line(self) -> str:
        return (f"Code: commit `{self.commit[:12]}`"
                + (f"; before = this tree with {', '.join(self.changed) or 'nothing'} as at `{self.compare}`, after = "
                   "this working tree" if self.compare else "") + "  ")

    def machine_line(self, m: dict[str, Any]) -> str:
        return (f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['platform']}, Python {m['python']}; load average "
                f"{self.load_before[0]:.2f} before, {self.load_after[0]:.2f} after; {self.wall_s:.0f} s in all")

    def runs_without_profiles(self) -> dict[str, list[dict[str, Any]]]:
        return {lb: [{k: v for k, v in r.items() if k != "profile"} for r in rs] for lb, rs in self.runs.items()}


def alternate(script: str, child_args: list[str], compare: str, src: str, rounds: int,
              files: Sequence[str]) -> Alternated:
    """Run `script --child CHILD_ARGS` in fresh processes, each printing its result as a JSON last line: once on this
    tree (or on src), or with compare, `rounds` times each of before (files as at compare) and after, alternating."""
    labels = ["before", "after"] if compare else ["this tree"]
    alt = Alternated(compare, labels, {lb: [] for lb in labels})
    t0 = time.perf_counter()
    alt.load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pilotlab-bench-src-") as base:
        if compare:
            alt.changed = snapshot(compare, Path(base), files)
        srcs = {"before": base, "after": src, "this tree": src}
        for _ in range(rounds if compare else 1):
            for lb in labels:
                cmd = [sys.executable, str(ROOT / script), "--child", *child_args]
                cmd += ["--src", srcs[lb]] if srcs[lb] else []
                done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
                if done.returncode:
                    sys.exit(f"{script}: a measurement failed:\n{done.stderr[-4000:]}")
                alt.runs[lb].append(json.loads(done.stdout.strip().splitlines()[-1]))
    alt.load_after = os.getloadavg()
    alt.wall_s = time.perf_counter() - t0
    alt.commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    return alt


def write(out: str, text: str, doc: dict[str, Any]) -> None:
    """OUT.md and OUT.json (OUT may hold a dot: submit_claim_cost.postgresql)."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{out}.md").write_text(text)
        Path(f"{out}.json").write_text(json.dumps(doc, indent=1) + "\n")
