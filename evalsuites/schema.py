"""The suite data model: frozen dataclasses, the closed vocabularies, problems and the canonical digest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilotlab.domain import DEVICE_CLASSES
from pilotlab.names import one_line

FORMAT_VERSION = 1
SCENARIOS = ("single-stream", "offline", "multi-stream", "server", "periodic", "generative")
ARTIFACT_KINDS = ("model", "dataset", "golden")
CLASSIFICATIONS = ("public", "personal", "important", "sensitive")
METRICS = (
    "accuracy", "latency_ms.p50", "latency_ms.p90", "latency_ms.p99", "latency_ms.mean", "throughput_per_s",
    "conformance.max_abs_err", "conformance.max_rel_err", "conformance.top1_agreement",
    "periodic.deadline_miss_rate", "periodic.release_jitter_us_p99", "periodic.completion_jitter_us_p99",
    "offline.best_throughput_per_s", "server.p99_within_bound", "repeats.spread_p50",
    # generative tasks: latency_ms above is each prompt's end-to-end latency (issue to last token)
    "ttft_ms.p50", "ttft_ms.p90", "ttft_ms.p99", "ttft_ms.mean", "tpot_ms.p50", "tpot_ms.p90", "tpot_ms.p99",
    "tpot_ms.mean", "decode_tokens_per_s", "prefill_tokens_per_s", "model_load_ms", "peak_rss_mb",
    "conformance.token_agreement", "perplexity.value", "perplexity.ratio",
)
# Metrics that are fractions in 0..1 (their thresholds must be too).
FRACTION_METRICS = ("accuracy", "conformance.top1_agreement", "periodic.deadline_miss_rate", "server.p99_within_bound",
                    "conformance.token_agreement")
# Metrics only some tasks produce: metric prefix -> what the task needs ("conformance" or a scenario).
METRIC_NEEDS = {"conformance.": "conformance", "periodic.": "periodic", "offline.": "offline", "server.": "server",
                "ttft_ms.": "generative", "tpot_ms.": "generative", "decode_tokens_per_s": "generative",
                "prefill_tokens_per_s": "generative", "model_load_ms": "generative", "peak_rss_mb": "generative",
                "perplexity.": "generative"}
# Generative quality: greedy-decode conformance needs a golden decode, perplexity its scored windows.
TOKEN_AGREEMENT = "conformance.token_agreement"
CONFORMANCE_TOLERANCES = ("max_abs_err", "max_rel_err", "top1_agreement")
OPS = ("<=", ">=", "<", ">")
RULES = ("point", "ci95_lower", "ci95_upper")
ACCURACY_METRICS = ("top1",)
SOURCE_SCHEMES = ("path", "package", "url")
DEFAULT_EXECUTION_PROVIDER = "CPUExecutionProvider"
ANY_REGION = "*"

__all__ = [
    "ACCURACY_METRICS",
    "ARTIFACT_KINDS",
    "CLASSIFICATIONS",
    "DEVICE_CLASSES",
    "METRICS",
    "OPS",
    "RULES",
    "SCENARIOS",
    "ArtifactSpec",
    "Criterion",
    "Grading",
    "GradingLevel",
    "Problem",
    "Suite",
    "SuiteError",
    "TaskSpec",
    "set_json_reader",
    "suite_digest",
]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a suite, located by dotted field and (when known) suite.toml line."""

    field: str
    line: int | None
    message: str

    def format(self, filename: str = "suite.toml") -> str:
        """Render as `file:line: field: message` (the line part is left out when unknown), on one line: a line break
        that a suite's own keys or names bring into the field or the message is shown escaped."""
        where = f"{filename}:{self.line}" if self.line is not None else filename
        return one_line(f"{where}: {self.field}: {self.message}")

    def __str__(self) -> str:
        return self.format()


class SuiteError(Exception):
    """A suite that cannot be used; `problems` lists everything found, first one first."""

    def __init__(self, problems: list[Problem], path: Path | None = None) -> None:
        if not problems:
            raise ValueError("SuiteError needs at least one problem")
        self.problems = list(problems)
        self.path = path
        super().__init__(self._render())

    def _render(self) -> str:
        first = self.problems[0].format(str(self.path) if self.path is not None else "suite.toml")
        more = len(self.problems) - 1
        return f"{first} (and {more} more)" if more else first

    def __str__(self) -> str:
        return self._render()


@dataclass(frozen=True)
class ArtifactSpec:
    """A model or dataset the suite needs, pinned by sha256 and size."""

    name: str
    kind: str
    sha256: str
    size: int
    source: str
    path: Path | None
    classification: str
    regions: tuple[str, ...]

    def canonical(self) -> dict[str, Any]:
        """The artifact as written (defaults filled in), without the local path."""
        return {
            "kind": self.kind,
            "sha256": self.sha256,
            "size": self.size,
            "source": self.source,
            "classification": self.classification,
            "regions": list(self.regions),
        }


@dataclass(frozen=True)
class TaskSpec:
    """One measurement: a model run under a load scenario, optionally scored on a labelled dataset."""

    name: str
    model: str
    dataset: str | None
    scenario: str
    settings: dict[str, Any]
    accuracy: dict[str, Any] | None
    execution_provider: str = DEFAULT_EXECUTION_PROVIDER
    golden: str | None = None
    conformance: dict[str, Any] | None = None

    def __hash__(self) -> int:
        return hash(_dumps(self.canonical()))

    def canonical(self) -> dict[str, Any]:
        """The task as written, defaults filled in; JSON-able.

        golden and conformance appear only when set, so suites that do not use them keep their digest.
        """
        doc: dict[str, Any] = {
            "name": self.name,
            "model": self.model,
            "dataset": self.dataset,
            "scenario": self.scenario,
            "settings": dict(self.settings),
            "accuracy": dict(self.accuracy) if self.accuracy is not None else None,
            "execution_provider": self.execution_provider,
        }
        if self.golden is not None:
            doc["golden"] = self.golden
        if self.conformance is not None:
            doc["conformance"] = dict(self.conformance)
        return doc


@dataclass(frozen=True)
class Criterion:
    """A pass/fail condition on one metric of one task."""

    task: str
    metric: str
    op: str
    threshold: float
    rule: str
    description: str = ""
    id: str = ""

    def canonical(self) -> dict[str, Any]:
        """The criterion as written, threshold always a float; JSON-able ("id" only when set)."""
        doc: dict[str, Any] = {
            "task": self.task,
            "metric": self.metric,
            "op": self.op,
            "threshold": float(self.threshold),
            "rule": self.rule,
            "description": self.description,
        }
        if self.id:
            doc["id"] = self.id
        return doc


@dataclass(frozen=True)
class GradingLevel:
    """One level of a suite's own grading table: reached when every listed criterion (by id) passes."""

    name: str
    criteria: tuple[str, ...]
    description: str = ""

    def canonical(self) -> dict[str, Any]:
        """The level as written; JSON-able."""
        return {"name": self.name, "criteria": list(self.criteria), "description": self.description}


@dataclass(frozen=True)
class Grading:
    """A suite's own grading scheme: levels ordered from basic to advanced."""

    scheme: str
    levels: tuple[GradingLevel, ...]

    def canonical(self) -> dict[str, Any]:
        """The grading table as written; JSON-able."""
        return {"scheme": self.scheme, "levels": [level.canonical() for level in self.levels]}

    def level_reached(self, passed: Iterable[str]) -> GradingLevel | None:
        """The highest level such that it and every level before it are reached, given the passing criterion ids."""
        ok = set(passed)
        best = None
        for level in self.levels:
            if not all(c in ok for c in level.criteria):
                break
            best = level
        return best


@dataclass(frozen=True)
class Suite:
    """A loaded, validated suite; `digest` identifies its content and every artifact byte."""

    id: str
    version: str
    title: str
    description: str
    device_classes: tuple[str, ...]
    artifacts: dict[str, ArtifactSpec]
    tasks: tuple[TaskSpec, ...]
    criteria: tuple[Criterion, ...]
    digest: str
    root: Path | None
    grading: Grading | None = None

    def __hash__(self) -> int:
        return hash((self.digest, self.root))

    def canonical(self) -> dict[str, Any]:
        """The whole suite as a JSON-able dict: no local paths, no digest; tasks/criteria in file order."""
        return {
            "format": FORMAT_VERSION,
            "suite": {
                "id": self.id,
                "version": self.version,
                "title": self.title,
                "description": self.description,
                "device_classes": list(self.device_classes),
            },
            "artifacts": {name: a.canonical() for name, a in sorted(self.artifacts.items())},
            "tasks": [t.canonical() for t in self.tasks],
            "criteria": [c.canonical() for c in self.criteria],
            **({"grading": self.grading.canonical()} if self.grading is not None else {}),
        }

    def to_json(self) -> str:
        """canonical() plus "digest", as sorted-key JSON; Suite.from_json reads it back."""
        doc = self.canonical()
        doc["digest"] = self.digest
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, root: Path | None = None) -> Suite:
        """Rebuild a suite from to_json() output; raises SuiteError if it is invalid or its digest is off.

        Artifact paths are resolved against `root` (path: sources) or the installed package (package:
        sources) when `root` is given, and are None otherwise. Files are not read. The work is the loader's
        (evalsuites.loader.suite_from_json), which installs itself with set_json_reader when evalsuites is imported.
        """
        if _json_reader is None:
            raise RuntimeError("no suite JSON reader installed; import evalsuites.loader first")
        return _json_reader(text, root)

    def task(self, name: str) -> TaskSpec:
        """The task called `name`; KeyError if there is none."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)

    def criteria_for(self, task: str) -> tuple[Criterion, ...]:
        """The criteria that grade task `task`, in file order."""
        return tuple(c for c in self.criteria if c.task == task)

    def criterion(self, criterion_id: str) -> Criterion:
        """The criterion whose id is `criterion_id`; KeyError if there is none."""
        for c in self.criteria:
            if c.id and c.id == criterion_id:
                return c
        raise KeyError(criterion_id)


JsonReader = Callable[[str, Path | None], Suite]
# What Suite.from_json calls. Reading JSON back means validating it, and the validator imports this module, so the
# data model does not import it: the loader installs its reader here instead.
_json_reader: JsonReader | None = None


def set_json_reader(reader: JsonReader) -> None:
    """Install the function behind Suite.from_json (evalsuites.loader installs suite_from_json on import)."""
    global _json_reader
    _json_reader = reader


def _dumps(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)


def suite_digest(suite: Suite | Mapping[str, Any]) -> str:
    """`sha256:<hex>` over the canonical JSON of a Suite (or of an already-canonical dict)."""
    doc = suite.canonical() if isinstance(suite, Suite) else dict(suite)
    doc.pop("digest", None)
    return "sha256:" + hashlib.sha256(_dumps(doc).encode("utf-8")).hexdigest()
