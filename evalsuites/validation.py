"""Validating a parsed suite document field by field (keys, types, vocabularies, references to artifacts and
tasks) and turning it into a Suite; parse_suite also runs the cross-reference checks in evalsuites.crossrefs."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalsuites import crossrefs
from evalsuites import schema as s
from evalsuites.settings import check_settings, is_finite_number, normalize_settings
from evalsuites.sources import SourceError, resolve_source

_SEMVER_RE = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")

_TOP_KEYS = ("suite", "artifacts", "tasks", "criteria", "grading")
_SUITE_KEYS = ("id", "version", "title", "description", "device_classes")
_ARTIFACT_KEYS = ("kind", "source", "sha256", "size", "classification", "regions")
_TASK_KEYS = ("name", "model", "dataset", "scenario", "settings", "accuracy", "execution_provider", "golden",
              "conformance")
_ACCURACY_KEYS = ("metric", "output")
_CRITERION_KEYS = ("task", "metric", "op", "threshold", "rule", "description", "id")

_MISSING = object()


def _kind_of(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(
        type(v), type(v).__name__
    )


class _Checker:
    def __init__(self) -> None:
        self.problems: list[s.Problem] = []

    def add(self, field: str, message: str) -> None:
        self.problems.append(s.Problem(field, None, message))

    def unknown_keys(self, table: Mapping[str, Any], known: tuple[str, ...], base: str) -> None:
        for key in table:
            if key not in known:
                self.add(f"{base}.{key}" if base else key, f"unknown key {key!r}; expected one of {', '.join(known)}")

    def string(self, table: Mapping[str, Any], key: str, base: str, *, required: bool, default: str = "") -> str:
        field = f"{base}.{key}"
        v = table.get(key, _MISSING)
        if v is _MISSING or v is None:
            if required:
                self.add(field, "missing required field")
            return default
        if not isinstance(v, str):
            self.add(field, f"must be a string, got {_kind_of(v)}")
            return default
        if required and not v.strip():
            self.add(field, "must not be empty")
        return v

    def choice(self, table: Mapping[str, Any], key: str, base: str, allowed: tuple[str, ...], what: str,
               *, default: str | None = None) -> str:
        v = self.string(table, key, base, required=default is None, default=default or "")
        if v and v not in allowed:
            self.add(f"{base}.{key}", f"unknown {what} {v!r}; use one of {', '.join(allowed)}")
        return v

    def table(self, parent: Mapping[str, Any], key: str, field: str, *, required: bool) -> dict[str, Any] | None:
        v = parent.get(key, _MISSING)
        if v is _MISSING or v is None:
            if required:
                self.add(field, "missing required table")
            return None
        if not isinstance(v, dict):
            self.add(field, f"must be a table, got {_kind_of(v)}")
            return None
        return v

    def array_of_tables(self, data: Mapping[str, Any], key: str, header: str) -> list[dict[str, Any]]:
        v = data.get(key, _MISSING)
        if v is _MISSING or v == []:
            self.add(key, f"no {key}; add at least one [[{header}]] table")
            return []
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            self.add(key, f"must be an array of tables written as [[{header}]]")
            return []
        return v

    def suite(self, data: Mapping[str, Any]) -> dict[str, Any]:
        t = self.table(data, "suite", "suite", required=True) or {}
        self.unknown_keys(t, _SUITE_KEYS, "suite")
        out: dict[str, Any] = {
            "id": self.string(t, "id", "suite", required=True),
            "version": self.string(t, "version", "suite", required=True),
            "title": self.string(t, "title", "suite", required=True),
            "description": self.string(t, "description", "suite", required=False),
        }
        if out["id"] and not _ID_RE.match(out["id"]):
            self.add("suite.id", f"id {out['id']!r} must be lowercase letters, digits and '-' (e.g. 'smoke')")
        if out["version"] and not _SEMVER_RE.match(out["version"]):
            self.add("suite.version", f"version {out['version']!r} is not MAJOR.MINOR.PATCH (e.g. '1.0.0')")
        classes = t.get("device_classes", _MISSING)
        out["device_classes"] = ()
        if classes is _MISSING:
            self.add("suite.device_classes", f"missing required field; list some of {', '.join(s.DEVICE_CLASSES)}")
        elif not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            self.add("suite.device_classes", f"must be a non-empty array of {', '.join(s.DEVICE_CLASSES)}")
        else:
            for c in classes:
                if c not in s.DEVICE_CLASSES:
                    self.add("suite.device_classes", f"unknown device class {c!r}; use {', '.join(s.DEVICE_CLASSES)}")
            if len(set(classes)) != len(classes):
                self.add("suite.device_classes", "lists a device class twice")
            out["device_classes"] = tuple(classes)
        return out

    def regions(self, t: Mapping[str, Any], base: str, default: tuple[str, ...] | None) -> tuple[str, ...]:
        v = t.get("regions", _MISSING)
        if v is _MISSING or v is None:
            if default is None:
                self.add(f"{base}.regions", 'missing; non-public datasets must list allowed regions (or ["*"])')
                return ()
            return default
        ok = isinstance(v, list) and bool(v) and all(
            isinstance(r, str) and r and not any(ch.isspace() for ch in r) for r in v
        )
        if not ok:
            self.add(f"{base}.regions", 'must be a non-empty array of region names, or ["*"] for anywhere')
            return ()
        if s.ANY_REGION in v and len(v) > 1:
            self.add(f"{base}.regions", '"*" means anywhere and must stand alone')
        return tuple(v)

    def artifact(self, name: str, t: Any, root: Path | None, strict: bool) -> s.ArtifactSpec | None:
        base = f"artifacts.{name}"
        if not _NAME_RE.match(name):
            self.add(base, f"artifact name {name!r} must be letters, digits, '.', '_' or '-'")
        if not isinstance(t, dict):
            self.add(base, f"must be a table [{base}], got {_kind_of(t)}")
            return None
        self.unknown_keys(t, _ARTIFACT_KEYS, base)
        before = len(self.problems)
        kind = self.choice(t, "kind", base, s.ARTIFACT_KINDS, "artifact kind")
        sha = self.string(t, "sha256", base, required=True)
        if sha and not _HEX_RE.match(sha):
            self.add(f"{base}.sha256", "must be 64 lowercase hex digits")
        size = t.get("size", _MISSING)
        if size is _MISSING:
            self.add(f"{base}.size", "missing required field")
        elif type(size) is not int or size < 0:
            self.add(f"{base}.size", f"must be a non-negative integer byte count, got {size!r}")
        source = self.string(t, "source", base, required=True)
        path = None
        if source:
            try:
                path = resolve_source(source, root, strict=strict)
            except SourceError as e:
                self.add(f"{base}.source", str(e))
        if kind in ("dataset", "golden"):
            cls = self.choice(t, "classification", base, s.CLASSIFICATIONS, "classification")
            regions = self.regions(t, base, (s.ANY_REGION,) if cls == "public" else None)
        else:
            cls = self.choice(t, "classification", base, ("public",), "model classification", default="public")
            regions = self.regions(t, base, (s.ANY_REGION,))
            if regions and regions != (s.ANY_REGION,):
                self.add(f"{base}.regions", 'models may run anywhere; leave regions out or write ["*"]')
        if len(self.problems) > before:
            return None
        return s.ArtifactSpec(name, kind, sha, size, source, path, cls, regions)

    def settings(self, t: Mapping[str, Any], base: str, scenario: str) -> dict[str, Any]:
        v = self.table(t, "settings", f"{base}.settings", required=False) or {}
        for key, message in check_settings(scenario, v):
            self.add(f"{base}.settings.{key}" if key is not None else f"{base}.settings", message)
        return normalize_settings(scenario, v)

    def conformance(self, t: Mapping[str, Any], base: str) -> dict[str, float] | None:
        """[tasks.conformance]: the tolerances as floats (so 1 and 1.0 digest alike); None when absent."""
        field = f"{base}.conformance"
        table = self.table(t, "conformance", field, required=False)
        if table is None:
            return None
        self.unknown_keys(table, s.CONFORMANCE_TOLERANCES, field)
        if "max_abs_err" not in table:
            self.add(f"{field}.max_abs_err",
                     "missing required field (the largest absolute error allowed, a number >= 0)")
        out: dict[str, float] = {}
        for key in s.CONFORMANCE_TOLERANCES:
            if key not in table:
                continue
            v = table[key]
            if not is_finite_number(v):
                self.add(f"{field}.{key}", f"must be a finite number, got {v!r}")
            elif key == "top1_agreement" and not 0.0 <= v <= 1.0:
                self.add(f"{field}.{key}", f"top1_agreement is a fraction; {v!r} is outside 0..1")
            elif v < 0:
                self.add(f"{field}.{key}", f"must be >= 0, got {v!r}")
            else:
                out[key] = float(v)
        return out

    def task(self, i: int, t: dict[str, Any], artifacts: Mapping[str, Any]) -> s.TaskSpec:
        base = f"tasks[{i}]"
        self.unknown_keys(t, _TASK_KEYS, base)
        name = self.string(t, "name", base, required=True)
        if name and not _NAME_RE.match(name):
            self.add(f"{base}.name", f"task name {name!r} must be letters, digits, '.', '_' or '-'")
        refs: dict[str, str | None] = {}
        for key, required in (("model", True), ("dataset", False), ("golden", False)):
            ref = self.string(t, key, base, required=required) or None
            refs[key] = ref
            if ref is None:
                continue
            if ref not in artifacts:
                known = ", ".join(sorted(artifacts)) or "none"
                self.add(f"{base}.{key}", f"unknown artifact {ref!r}; declared artifacts: {known}")
            elif isinstance(artifacts[ref], dict) and artifacts[ref].get("kind") in s.ARTIFACT_KINDS and \
                    artifacts[ref]["kind"] != key:
                what = "golden artifact" if key == "golden" else key
                self.add(f"{base}.{key}", f"artifact {ref!r} is a {artifacts[ref].get('kind')}, not a {what}")
        scenario = self.choice(t, "scenario", base, s.SCENARIOS, "scenario")
        accuracy = self.table(t, "accuracy", f"{base}.accuracy", required=False)
        if accuracy is not None:
            self.unknown_keys(accuracy, _ACCURACY_KEYS, f"{base}.accuracy")
            self.choice(accuracy, "metric", f"{base}.accuracy", s.ACCURACY_METRICS, "accuracy metric")
            self.string(accuracy, "output", f"{base}.accuracy", required=True)
            if refs["dataset"] is None:
                self.add(f"{base}.accuracy", "accuracy needs a labelled dataset; set dataset = \"<artifact>\"")
            accuracy = dict(accuracy)
        ep = self.string(t, "execution_provider", base, required=False, default=s.DEFAULT_EXECUTION_PROVIDER)
        if not ep.strip():
            self.add(f"{base}.execution_provider", "must not be empty; leave it out for CPUExecutionProvider")
        conformance = self.conformance(t, base)
        task = s.TaskSpec(name, refs["model"] or "", refs["dataset"], scenario, self.settings(t, base, scenario),
                          accuracy, ep, refs["golden"], conformance)
        crossrefs.check_task_golden(base, task, self.add)
        return task

    def criterion(self, j: int, c: dict[str, Any], tasks: Mapping[str, s.TaskSpec]) -> s.Criterion:
        base = f"criteria[{j}]"
        self.unknown_keys(c, _CRITERION_KEYS, base)
        task = self.string(c, "task", base, required=True)
        if task and task not in tasks:
            self.add(f"{base}.task", f"unknown task {task!r}; tasks are {', '.join(tasks) or 'none'}")
        metric = self.choice(c, "metric", base, s.METRICS, "metric")
        op = self.choice(c, "op", base, s.OPS, "op")
        rule = self.choice(c, "rule", base, s.RULES, "rule", default="point")
        threshold = c.get("threshold", _MISSING)
        if threshold is _MISSING:
            self.add(f"{base}.threshold", "missing required field")
            threshold = None
        elif not is_finite_number(threshold):
            self.add(f"{base}.threshold", f"must be a finite number, got {threshold!r}")
            threshold = None
        crossrefs.check_criterion_fit(base, metric, threshold, tasks.get(task), self.add)
        if rule.startswith("ci95") and metric and metric != "accuracy":
            self.add(f"{base}.rule", f"rule {rule!r} applies to accuracy only; use rule = \"point\" for {metric}")
        description = self.string(c, "description", base, required=False)
        cid = self.string(c, "id", base, required=False)
        return s.Criterion(task, metric, op, float(threshold or 0.0), rule, description, cid)


def parse_suite(
    data: Mapping[str, Any], root: Path | None, *, strict: bool = True
) -> tuple[s.Suite | None, list[s.Problem], dict[str, s.ArtifactSpec]]:
    """Validate a parsed suite document: (Suite, [], artifacts) or (None, problems, the artifacts that parsed).

    Problems carry no line numbers; the loader adds them.
    """
    ck = _Checker()
    ck.unknown_keys(data, _TOP_KEYS, "")
    head = ck.suite(data)
    raw_artifacts = ck.table(data, "artifacts", "artifacts", required=True) or {}
    artifacts = {n: a for n, t in raw_artifacts.items() if (a := ck.artifact(n, t, root, strict)) is not None}
    tasks = [ck.task(i, t, raw_artifacts) for i, t in enumerate(ck.array_of_tables(data, "tasks", "tasks"))]
    seen: dict[str, int] = {}
    for i, t in enumerate(tasks):
        if t.name and t.name in seen:
            ck.add(f"tasks[{i}].name", f"duplicate task name {t.name!r} (also tasks[{seen[t.name]}]); rename one")
        seen.setdefault(t.name, i)
    by_name: dict[str, s.TaskSpec] = {}
    for t in tasks:
        if t.name:
            by_name.setdefault(t.name, t)
    criteria = [ck.criterion(j, c, by_name) for j, c in enumerate(ck.array_of_tables(data, "criteria", "criteria"))]
    crossrefs.check_criterion_ids(criteria, ck.add)
    crossrefs.check_tolerances_graded(tasks, criteria, ck.add)
    grading = crossrefs.check_grading(data, criteria, ck.add)
    if ck.problems:
        return None, ck.problems, artifacts
    suite = s.Suite(head["id"], head["version"], head["title"], head["description"], head["device_classes"],
                    artifacts, tuple(tasks), tuple(criteria), "", root, grading)
    return dataclasses.replace(suite, digest=s.suite_digest(suite)), [], artifacts

