"""Deterministically regenerates every built-in suite's generated artifacts and keeps each suite.toml's pins honest."""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path

from evalsuites.gen import SuiteBuilder, builders
from evalsuites.gen.common import BuildError, npz_bytes, record_toolchain, tool_versions, toolchain_differences
from evalsuites.gen.smoke import DATA_REL, GENERATED, MODEL_REL, build_smoke, digits_split
from evalsuites.loader import SUITE_FILE, builtin_suites_dir, load_suite
from evalsuites.schema import Suite, SuiteError
from evalsuites.sources import file_sha256
from evalsuites.toml_lines import LineIndex

__all__ = [
    "DATA_REL", "GENERATED", "MODEL_REL", "SMOKE_DIR", "BuildError", "build_smoke", "builder_for", "check",
    "digits_split", "main", "npz_bytes", "read_pins", "rebuild", "rewrite_pins", "tool_versions",
]

SMOKE_DIR = builtin_suites_dir() / "smoke"


def builder_for(suite_dir: Path) -> SuiteBuilder:
    """The builder of the suite in suite_dir, chosen by the id in its suite.toml; BuildError if it has none."""
    toml_path = Path(suite_dir) / SUITE_FILE
    try:
        suite_id = tomllib.loads(toml_path.read_text(encoding="utf-8"))["suite"]["id"]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as e:
        raise BuildError(f"{toml_path}: cannot read [suite] id ({e})") from None
    known = builders()
    if suite_id not in known:
        raise BuildError(f"{toml_path}: suite {suite_id!r} has no generated artifacts; builders: {', '.join(known)}")
    return known[suite_id]


def read_pins(toml_path: Path, names: Sequence[str] = tuple(GENERATED)) -> dict[str, tuple[str, int]]:
    """artifact name -> (sha256, size) as pinned in a suite.toml, for the named artifacts."""
    artifacts = tomllib.loads(toml_path.read_text(encoding="utf-8")).get("artifacts", {})
    return {n: (str(artifacts.get(n, {}).get("sha256", "")), int(artifacts.get(n, {}).get("size", -1)))
            for n in names}


def rewrite_pins(toml_path: Path, pins: dict[str, tuple[str, int]]) -> bool:
    """Rewrite the sha256/size values of the named artifacts in place, keeping everything else; True if changed."""
    from evalsuites.gen.common import write_file

    text = toml_path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    index = LineIndex(text)
    for name, (sha, size) in pins.items():
        for key, pattern, value in (("sha256", r'=\s*"[^"]*"', f'= "{sha}"'), ("size", r"=\s*[0-9_]+", f"= {size}")):
            number = index.exact(f"artifacts.{name}.{key}")
            if number is None:
                raise BuildError(f"{toml_path}: no 'artifacts.{name}.{key} = ...' line to rewrite; add one")
            new, count = re.subn(pattern, value, lines[number - 1], count=1)
            if not count:
                raise BuildError(f"{toml_path}:{number}: cannot rewrite the value of artifacts.{name}.{key}")
            lines[number - 1] = new
    new_text = "".join(lines)
    if new_text == text:
        return False
    write_file(toml_path, new_text.encode("utf-8"))
    return True


def check(suite_dir: Path) -> list[str]:
    """Rebuild into a temporary directory; one message per generated artifact whose bytes differ from its pin."""
    builder = builder_for(suite_dir)
    pins = read_pins(Path(suite_dir) / SUITE_FILE, tuple(builder.generated))
    with tempfile.TemporaryDirectory(prefix="evalsuites-build-") as tmp:
        built = builder.build(Path(tmp))
        mismatches = []
        for name, path in built.items():
            digest, size = file_sha256(path), path.stat().st_size
            if (digest, size) != pins[name]:
                mismatches.append(f"{name}: rebuilt {builder.generated[name]} is sha256 {digest} ({size} bytes), "
                                  f"suite pins {pins[name][0] or 'nothing'} ({pins[name][1]} bytes)")
    return mismatches


def rebuild(suite_dir: Path) -> tuple[dict[str, tuple[str, int]], bool, Suite]:
    """Regenerate a suite's artifacts in place and repin them: (pins, whether suite.toml changed, the suite)."""
    built = builder_for(suite_dir).build(Path(suite_dir))
    pins = {name: (file_sha256(p), p.stat().st_size) for name, p in built.items()}
    changed = rewrite_pins(Path(suite_dir) / SUITE_FILE, pins)
    return pins, changed, load_suite(suite_dir, deep=True)


def _targets(suite_dirs: list[Path] | None, ids: list[str] | None) -> list[Path]:
    if suite_dirs:
        return suite_dirs
    known = builders()
    for suite_id in ids or []:
        if suite_id not in known:
            raise BuildError(f"no built-in suite {suite_id!r} with generated artifacts; use one of {', '.join(known)}")
    return [builtin_suites_dir() / suite_id for suite_id in (ids or sorted(known))]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit status (0 ok, 1 --check mismatch, 2 build error)."""
    parser = argparse.ArgumentParser(prog="python -m evalsuites.build", description=(__doc__ or "").strip())
    parser.add_argument("--check", action="store_true", help="rebuild into a temp dir and compare with the pins")
    parser.add_argument("--suite", action="append", metavar="ID", help="only this built-in suite (repeatable)")
    parser.add_argument("--suite-dir", action="append", type=Path, metavar="DIR",
                        help="a suite directory to build instead of the built-in ones (repeatable)")
    args = parser.parse_args(argv)
    failed = False
    try:
        for suite_dir in _targets(args.suite_dir, args.suite):
            toml_path = suite_dir / SUITE_FILE
            if args.check:
                mismatches = check(suite_dir)
                for line in mismatches:
                    print(f"MISMATCH {line}", file=sys.stderr)
                if mismatches:
                    failed = True
                else:
                    names = ", ".join(builder_for(suite_dir).generated)
                    print(f"ok: {names} match their pins in {toml_path}")
                continue
            pins, changed, suite = rebuild(suite_dir)
            if not args.suite_dir:
                record_toolchain()
            for name, (sha, size) in pins.items():
                print(f"{name}: sha256 {sha} size {size}")
            print(f"{'repinned' if changed else 'pins unchanged'}: {suite.id} {suite.version} digest {suite.digest}")
    except (BuildError, SuiteError) as e:
        for problem in e.problems if isinstance(e, SuiteError) else [e]:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    if failed:
        differ = toolchain_differences()
        if differ:
            print("the installed toolchain differs from the locked one the pins were built with: "
                  + "; ".join(differ) + " (install from requirements/lock.txt: make install)", file=sys.stderr)
        print(f"built with {tool_versions()}; run python -m evalsuites.build to repin", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
