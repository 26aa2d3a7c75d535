"""Fuzzing the suite parser (evalsuites: suite.toml through load_suite and validate_suite, what `labctl suites
validate` and labd run; the suite JSON labd stores, through Suite.from_json) with arbitrary documents, the shipped
suites mutated key by key and value by value, and hostile text. Whatever comes in, the parser returns a valid suite
or raises SuiteError whose message is one line; and a suite it accepts is one the lab can turn into task specs and
effective settings (pilotlab.tasks) and read back from its JSON."""

from __future__ import annotations

import copy
import json
import math
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from evalsuites import METRICS, SCENARIOS, Suite, SuiteError, builtin_suites_dir, load_suite, validate_suite
from evalsuites.loader import suite_from_json
from evalsuites.validation import parse_suite
from labd.scheduler.plan import task_spec
from pilotlab.tasks import TaskSpec, effective
from tests.fuzz.conftest import fuzz_settings
from tests.fuzz.strategies import HOSTILE, hostile_text, one_line

SEEDS = {p.parent.name: p for p in sorted(builtin_suites_dir().glob("*/suite.toml"))}
SEED_DOCS = {name: tomllib.loads(p.read_text()) for name, p in SEEDS.items()}
# Reading a suite.toml hashes every artifact it names: the examples read back as suite.toml start from the suites whose
# files are small (all but terminal-genai's language model); mutated documents start from every suite.
SMALL_SEEDS = sorted(name for name, p in SEEDS.items()
                     if sum(f.stat().st_size for f in p.parent.rglob("*") if f.is_file()) < 20 << 20)
HUGE = 10**400  # an integer no float can hold (TOML and JSON read it all the same)

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from([HUGE, -HUGE, 2**63, -(2**63) - 1]),
              st.floats(), hostile_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)),
    max_leaves=12,
)


# --- mutating a parsed suite ----------------------------------------------------------------------------------------
def _slots(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and index path inside doc (dicts and lists), outermost first."""
    out: list[tuple[Any, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for k, v in items:
        out.append((*path, k))
        out += _slots(v, (*path, k))
    return out


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        doc = doc[k]
    return doc


_TYPE_SWAPS = [None, True, 0, -1, 1.5, math.nan, math.inf, -math.inf, HUGE, "", "x", [], [1, "a"], {}, {"k": 1}]
_VOCABULARY = [*SCENARIOS, *METRICS, "smoke", "model", "dataset", "golden", "public", "personal", "*", ">=", "<=",
               "ci95_lower", "point", "top1", "label", "path:models/x.onnx", "package:evalsuites/smoke/x",
               "package:no_such_pkg.sub/x", "url:https://example.invalid/x", "url:http://x", "path:../x", "path:/etc/x",
               "path:a\\b", "1.0.0", "01.0.0", "robot", "smart-terminal", "batch_sizes", "rate_hz", "target_qps"]


@st.composite
def mutated(draw: st.DrawFn, seed: str | None = None) -> dict[str, Any]:
    """A shipped suite with 1-6 edits: a key dropped, added or renamed, a value of another type or out of range,
    a hostile string, a list entry duplicated or dropped."""
    doc = copy.deepcopy(SEED_DOCS[seed or draw(st.sampled_from(sorted(SEED_DOCS)))])
    for _ in range(draw(st.integers(1, 6))):
        slots = _slots(doc)
        path = draw(st.sampled_from(slots)) if slots else ()
        parent = _at(doc, path[:-1]) if path else doc
        key = path[-1] if path else None
        op = draw(st.sampled_from(["drop", "value", "swap", "text", "number", "add", "rename", "dup", "vocab"]))
        if op == "drop" and key is not None:
            del parent[key]
        elif op == "value" and key is not None:
            parent[key] = draw(json_values)
        elif op == "swap" and key is not None:
            parent[key] = copy.deepcopy(draw(st.sampled_from(_TYPE_SWAPS)))
        elif op == "text" and key is not None:
            parent[key] = draw(hostile_text)
        elif op == "number" and key is not None:
            parent[key] = draw(st.one_of(st.integers(), st.floats(), st.sampled_from([0, -1, 2**63, HUGE, -0.0])))
        elif op == "vocab" and key is not None:
            parent[key] = draw(st.sampled_from(_VOCABULARY))
        elif op == "dup" and isinstance(parent, list) and key is not None:
            parent.insert(key, copy.deepcopy(parent[key]))
        elif isinstance(parent, dict) and op in ("add", "rename"):
            new = draw(st.one_of(st.sampled_from(["suite", "tasks", "criteria", "grading", "settings", "id", "kind",
                                                  "regions", "golden", "conformance", "levels"]), hostile_text))
            if op == "rename" and key is not None:
                parent[new] = parent.pop(key)
            else:
                parent[new] = draw(json_values)
    return doc


# --- writing a document as suite.toml -------------------------------------------------------------------------------
def _toml_str(s: str) -> str:
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    return "{" + ", ".join(f"{_toml_str(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"


def _is_tables(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def to_toml(doc: dict[str, Any], path: tuple[str, ...] = ()) -> str:
    """The document as suite.toml would write it: [tables], [[arrays of tables]] and their keys (JSON null left
    out, since TOML has none); what cannot be a table is written inline."""
    lines = [f"{_toml_str(k)} = {_toml_value(v)}" for k, v in doc.items()
             if v is not None and not (isinstance(v, dict) and v) and not _is_tables(v)]
    for k, v in doc.items():
        header = ".".join(_toml_str(p) for p in (*path, k))
        if isinstance(v, dict) and v:
            lines += ["", f"[{header}]", to_toml(v, (*path, k))]
        elif _is_tables(v):
            for item in v:
                lines += ["", f"[[{header}]]", to_toml(item, (*path, k))]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def suite_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A writable folder per shipped suite that sees that suite's models and data (symlinks)."""
    out = {}
    for name, toml in SEEDS.items():
        d = tmp_path_factory.mktemp(f"suite-{name}")
        for sub in toml.parent.iterdir():
            if sub.is_dir() and sub.name != "__pycache__":
                (d / sub.name).symlink_to(sub)
        out[name] = d
    return out


# --- the properties -------------------------------------------------------------------------------------------------
def _check_error(e: SuiteError) -> None:
    assert e.problems, "a SuiteError without problems"
    assert one_line(str(e)), f"SuiteError not one line: {str(e)!r}"
    for p in e.problems:
        assert one_line(str(p)), f"problem not one line: {str(p)!r}"


def _check_usable(suite: Suite) -> None:
    """A valid suite is one the lab can run: task specs, effective settings, and its JSON read back."""
    assert isinstance(suite, Suite) and suite.digest.startswith("sha256:")
    assert Suite.from_json(suite.to_json()).digest == suite.digest
    for t in suite.tasks:
        spec = task_spec(suite, t.name)
        assert TaskSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
        effective(spec.settings)


def _load(directory: Path, text: str) -> None:
    """load_suite and validate_suite on suite.toml `text`: a Suite or one SuiteError, problems iff refused."""
    (directory / "suite.toml").write_text(text, encoding="utf-8")
    started = time.perf_counter()
    try:
        suite = load_suite(directory)
    except SuiteError as e:
        _check_error(e)
        suite = None
    else:
        _check_usable(suite)
    problems = validate_suite(directory, deep=False)
    assert bool(problems) == (suite is None), problems
    assert all(one_line(str(p)) for p in problems), problems
    elapsed = time.perf_counter() - started
    assert elapsed < 5, f"reading a suite.toml of {len(text)} characters took {elapsed:.1f}s"


def _from_json(text: str) -> None:
    try:
        suite = suite_from_json(text)
    except SuiteError as e:
        _check_error(e)
    else:
        _check_usable(suite)


@fuzz_settings(150)
@given(doc=mutated())
@example(doc={**SEED_DOCS["smoke"], "criteria": [{**SEED_DOCS["smoke"]["criteria"][0], "threshold": HUGE}]})
def test_mutated_suite_documents(doc: dict[str, Any]) -> None:
    """parse_suite (the validator under both readers) and the JSON reader labd uses on mutated suites."""
    for root, strict in ((None, False), (SEEDS["smoke"].parent, True)):
        suite, problems, _ = parse_suite(doc, root, strict=strict)
        assert (suite is None) == bool(problems)
        assert all(one_line(str(p)) for p in problems), problems
        if suite is not None and root is None:
            _check_usable(suite)
    valid = parse_suite(doc, None, strict=False)[0]
    digest = valid.digest if valid is not None else "sha256:" + "0" * 64
    _from_json(json.dumps({"format": 1, **doc, "digest": digest}))


@fuzz_settings(60)
@given(data=st.data())
def test_mutated_suite_toml(suite_dirs: dict[str, Path], data: st.DataObject) -> None:
    """The shipped suites, mutated, written back as suite.toml, read by load_suite and validate_suite."""
    seed = data.draw(st.sampled_from(SMALL_SEEDS))
    _load(suite_dirs[seed], to_toml(data.draw(mutated(seed))))


_SMOKE_TEXT = SEEDS["smoke"].read_text()


@st.composite
def edited_text(draw: st.DrawFn) -> str:
    """The shipped smoke suite.toml edited as text: lines dropped, doubled or swapped, hostile text spliced in."""
    lines = _SMOKE_TEXT.splitlines()
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "splice", "replace", "swap"]))
        if op == "drop" and len(lines) > 1:
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "splice":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(hostile_text) + lines[i][at:]
        elif op == "replace" and "=" in lines[i]:
            lines[i] = lines[i].split("=", 1)[0] + "= " + draw(st.one_of(st.sampled_from(HOSTILE), hostile_text))
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


_DEEP = ["a = " + "[" * 5_000, "a = " + "{b = " * 2_000, "a = " + "1" * 5_000, "[" * 5_000, "a = [" + "[1]," * 10_000]


@fuzz_settings(120)
@given(text=st.one_of(edited_text(), hostile_text, st.text(st.sampled_from('[]{}="., \n#abk0123\'\\'), max_size=80)))
@example(text=_DEEP[0])  # nested too deep: RecursionError escaped once
@example(text=_DEEP[1])
@example(text=_DEEP[2])  # an integer of 5000 digits: ValueError escaped once
@example(text=_SMOKE_TEXT.replace("[[tasks]]", "[[tasks]]\n\"x\\ny\" = 1"))  # a key with a line break
def test_arbitrary_suite_toml(suite_dirs: dict[str, Path], text: str) -> None:
    _load(suite_dirs["smoke"], text)


@fuzz_settings(120)
@given(text=st.one_of(hostile_text, json_values.map(json.dumps), st.sampled_from([
    "[" * 100_000, '{"a":' * 100_000, "1" * 5_000, "NaN", "[]", "{}", '{"format": 1}', '{"format": 1, "digest": 0}'])))
def test_arbitrary_suite_json(text: str) -> None:
    _from_json(text)


def test_shipped_suites_pass_the_properties(suite_dirs: dict[str, Path]) -> None:
    """The seeds themselves: valid, usable, and unchanged by a round trip through to_toml."""
    for name, doc in SEED_DOCS.items():
        assert tomllib.loads(to_toml(doc)) == doc
        _load(suite_dirs[name], to_toml(doc))


def test_a_package_source_runs_no_package_code(suite_dirs: dict[str, Path], tmp_path: Path) -> None:
    """Reading a suite does not import the packages its package: sources name (it imported every parent of a dotted
    name, whose import may do anything and raised whatever it raised)."""
    pkg = tmp_path / "pilotlab_fuzz_bomb"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('imported while reading a suite')\n")
    (pkg / "sub" / "__init__.py").write_text("")
    text = _SMOKE_TEXT.replace("path:models/", "package:pilotlab_fuzz_bomb.sub/")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(SuiteError, match="file not found") as e:
            load_suite(_write(suite_dirs["smoke"], text))
        _check_error(e.value)
        assert "pilotlab_fuzz_bomb" not in sys.modules
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("pilotlab_fuzz_bomb", None)


def _write(directory: Path, text: str) -> Path:
    (directory / "suite.toml").write_text(text, encoding="utf-8")
    return directory
