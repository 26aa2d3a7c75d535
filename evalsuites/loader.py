"""Finding, loading and validating suites from disk, and reading them back from the JSON the lab stores: the entry
points the lab, agent and labctl call."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Iterable
from pathlib import Path

from evalsuites.schema import FORMAT_VERSION, Problem, Suite, SuiteError, set_json_reader, suite_digest
from evalsuites.sources import verify_artifact
from evalsuites.toml_lines import LineIndex, syntax_line
from evalsuites.validation import parse_suite

SUITE_FILE = "suite.toml"

__all__ = ["SUITE_FILE", "builtin_suites_dir", "discover_suites", "load_suite", "suite_digest", "suite_from_json",
           "validate_suite"]


def builtin_suites_dir() -> Path:
    """The evalsuites package directory; each built-in suite lives in evalsuites/<id>/suite.toml."""
    return Path(__file__).resolve().parent


def _toml_path(path: Path | str) -> Path:
    p = Path(path)
    return p / SUITE_FILE if p.is_dir() else p


def _collect(toml_path: Path, deep: bool) -> tuple[Suite | None, list[Problem]]:
    try:
        text = toml_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(SUITE_FILE, None, f"no {SUITE_FILE} at {toml_path}")]
    except (OSError, UnicodeDecodeError) as e:
        return None, [Problem(SUITE_FILE, None, f"cannot read {toml_path}: {e}")]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return None, [Problem("syntax", syntax_line(str(e)), f"TOML syntax error: {e}")]
    except (ValueError, RecursionError) as e:  # an integer of over 4300 digits; arrays or tables nested too deep
        return None, [Problem("syntax", None, f"TOML that cannot be read: {_unreadable(e)}")]
    suite, problems, artifacts = parse_suite(data, toml_path.parent.resolve(), strict=True)
    for artifact in artifacts.values():
        problems += verify_artifact(artifact)
    if deep and suite is not None:
        from evalsuites.model_fit import check_model_fit  # imports numpy; onnxruntime when it runs

        problems += check_model_fit(suite)
    index = LineIndex(text)
    located = [p if p.line is not None else dataclasses.replace(p, line=index.line_for(p.field)) for p in problems]
    return suite, sorted(located, key=lambda p: (p.line is None, p.line or 0))


def _unreadable(e: Exception) -> str:
    return "values nested too deep" if isinstance(e, RecursionError) else str(e).split(";")[0]


def load_suite(path: Path, *, deep: bool = False) -> Suite:
    """Load and validate a suite (its directory or its suite.toml); raises SuiteError listing every problem.

    Always checks each local artifact's size and sha256. deep=True also loads each model in onnxruntime
    and checks each task's dataset against its model's inputs (and outputs, for accuracy).
    """
    toml_path = _toml_path(path)
    suite, problems = _collect(toml_path, deep)
    if problems or suite is None:
        raise SuiteError(problems or [Problem(SUITE_FILE, None, "invalid suite")], path=toml_path)
    return suite


def validate_suite(path: Path, *, deep: bool = True) -> list[Problem]:
    """Every problem with a suite, [] when it is valid; never raises for problems in the suite itself."""
    return _collect(_toml_path(path), deep)[1]


def _semver_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def discover_suites(dirs: Iterable[Path], *, deep: bool = False) -> list[Suite]:
    """Load every <dir>/*/suite.toml, sorted by id then version; raises SuiteError on the first bad one.

    Two suites with the same id and version in the scanned directories are an error too.
    """
    found: dict[tuple[str, str], Path] = {}
    suites: list[Suite] = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise SuiteError([Problem("suites_dir", None, "directory not found")], path=d)
        for toml_path in sorted(d.glob(f"*/{SUITE_FILE}")):
            suite = load_suite(toml_path, deep=deep)
            key = (suite.id, suite.version)
            if key in found:
                msg = f"suite {suite.id} {suite.version} is also defined in {found[key]}; bump one version"
                raise SuiteError([Problem("suite.version", None, msg)], path=toml_path)
            found[key] = toml_path
            suites.append(suite)
    return sorted(suites, key=lambda s: (s.id, _semver_key(s.version)))


def suite_from_json(text: str, root: Path | None = None) -> Suite:
    """Suite.from_json's body: parse, validate like suite.toml, and require the stored digest to match."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise SuiteError([Problem("json", None, f"not valid JSON: {e}")]) from None
    except (ValueError, RecursionError) as e:  # an integer of over 4300 digits; arrays or objects nested too deep
        raise SuiteError([Problem("json", None, f"JSON that cannot be read: {_unreadable(e)}")]) from None
    if not isinstance(doc, dict):
        raise SuiteError([Problem("json", None, "suite JSON must be an object")])
    doc = dict(doc)
    fmt, digest = doc.pop("format", None), doc.pop("digest", None)
    if fmt != FORMAT_VERSION:
        raise SuiteError([Problem("format", None, f"format {fmt!r} is not {FORMAT_VERSION}; upgrade PilotLab")])
    suite, problems, _ = parse_suite(doc, root, strict=False)
    if suite is None:
        raise SuiteError(problems)
    if digest != suite.digest:
        raise SuiteError([Problem("digest", None, f"content digest is {suite.digest}, JSON says {digest!r}")])
    return suite


# The data model cannot validate (the validator imports it), so it asks the loader to read suite JSON back.
set_json_reader(suite_from_json)
