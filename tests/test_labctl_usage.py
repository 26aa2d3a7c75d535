"""labctl usage mistakes: a usage line and one line naming the problem on stderr, no traceback, exit 2.

These run the installed `labctl` console script, so they catch what an engineer would see, including
typer versions whose parser errors are not click's (typer 0.29 no longer depends on click).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LABCTL = Path(sys.executable).parent / "labctl"
# An address nothing listens on: no usage mistake may get as far as dialling the lab.
NOWHERE = "127.0.0.1:9"

pytestmark = pytest.mark.skipif(not LABCTL.exists(), reason=f"no labctl console script at {LABCTL}")


def labctl(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_ADDR", "LAB_TOKEN")}
    env.update(LAB_ADDR=NOWHERE, LAB_TOKEN="plt_x", COLUMNS="100", NO_COLOR="1")
    return subprocess.run([str(LABCTL), *args], env=env, text=True, capture_output=True, timeout=60)


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


MISTAKES = [
    # (args, the command whose usage and help are named, words naming the problem)
    (("--bogus",), "labctl", ["--bogus"]),
    (("nosuchcmd",), "labctl", ["nosuchcmd"]),
    (("run", "nosuchcmd"), "labctl run", ["nosuchcmd"]),
    (("run", "submit"), "labctl run submit", ["--suite"]),
    (("run", "submit", "--suite", "smoke", "--device", "d", "--priority", "high"), "labctl run submit",
     ["--priority", "high", "integer"]),
    (("run", "submit", "--suite", "smoke", "--queue-timeout", "soon"), "labctl run submit",
     ["--queue-timeout", "soon"]),
    (("run", "submit", "--suite"), "labctl run submit", ["--suite", "argument"]),
    (("run", "submit", "--suite", "smoke", "--wait=yes"), "labctl run submit", ["--wait"]),
    (("run", "show"), "labctl run show", ["run_id"]),
    (("run", "show", "r1", "r2"), "labctl run show", ["r2"]),
    (("run", "list", "--limit", "many"), "labctl run list", ["--limit", "many"]),
    (("token", "create"), "labctl token create", ["--role"]),
    (("--lab",), "labctl", ["--lab"]),
]


@pytest.mark.parametrize(("args", "command", "words"), MISTAKES, ids=[" ".join(m[0]) for m in MISTAKES])
def test_usage_mistake_is_short_and_exits_2(args: tuple[str, ...], command: str, words: list[str]) -> None:
    p = labctl(*args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    lines = _lines(p.stderr)
    assert 1 <= len(lines) < 6, p.stderr
    assert lines[0].lower().startswith(f"usage: {command} "), p.stderr  # the command's usage line
    problem = lines[-1]
    assert problem.startswith("error: "), p.stderr
    for word in words:
        assert word.lower() in problem.lower(), (word, p.stderr)
    assert problem.endswith(f"try '{command} --help'"), p.stderr
    assert "cannot reach the lab" not in p.stderr


@pytest.mark.parametrize("args", [(), ("run", "submit"), ("run",), ("token", "create"), ("suites", "validate"),
                                  ("report", "verify"), ("devices",), ("lab", "pubkey")])
def test_help_exits_0(args: tuple[str, ...]) -> None:
    p = labctl(*args, "--help")
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert "Usage" in p.stdout and "--help" in p.stdout


def test_bare_group_shows_its_help() -> None:
    p = labctl("run")
    assert p.returncode in (0, 2), p.stderr  # 2 since click 8.2 / typer 0.29; 0 before
    assert "Traceback" not in p.stderr
    assert "submit" in p.stdout + p.stderr


def test_other_errors_keep_their_codes() -> None:
    p = labctl("devices", "list")  # a well-formed command, but no lab at the address
    assert p.returncode == 3, p.stderr
    assert "Traceback" not in p.stderr
    assert _lines(p.stderr) == [f"labctl: cannot reach the lab at {NOWHERE}; check --lab/LAB_ADDR and that labd "
                                "is running"]


def test_main_returns_2_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    from labctl.main import main

    assert main(["run", "submit", "--suite", "smoke", "--priority", "high"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--priority" in err and "high" in err
