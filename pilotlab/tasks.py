"""The task contract, typed once: what a suite requests for one task, and what a device effectively runs.

Every layer uses these types: the suite validator checks requested settings against SETTINGS, labd stores and
dispatches a TaskSpec, the agent turns requested settings into EffectiveSettings with one `effective()` step and
reports those with its results, and the lab and the verifier grade with them. Each setting has one default,
defined here. Protobuf never sees these types except in pilotlab/convert.py (as JSON of `to_json()`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCENARIOS = ("single-stream", "offline", "multi-stream", "server", "periodic", "generative")
GRAPH_OPTIMIZATIONS = ("disabled", "basic", "extended", "all")

# What each kind of value must be, as a problem message says it.
KINDS = {
    "count": "a non-negative integer",
    "positive_int": "an integer >= 1",
    "positive": "a number > 0",
    "choice": "one of",
    "positive_int_list": "a non-empty array of distinct integers >= 1",
    "bool": "true or false",
    "fraction": "a number between 0 and 1",
}


@dataclass(frozen=True)
class Setting:
    """One settings key a suite may request: its value kind, its one default, and what the agent does with it.

    `default` None means the effective value is derived (deadline_ms: one period) or the setting is required.
    """

    kind: str
    meaning: str
    default: Any = None
    choices: tuple[str, ...] = ()


COMMON_SETTINGS: dict[str, Setting] = {
    "warmup_queries": Setting("count", "untimed queries run before measuring", 50),
    "min_query_count": Setting("count", "measure at least this many queries (per batch size, for offline)", 300),
    "min_duration_ms": Setting("count", "and for at least this long (per batch size, for offline)", 500),
    "intra_op_threads": Setting("count", "onnxruntime intra-op threads; 0 = onnxruntime's default", 0),
    "inter_op_threads": Setting("count", "onnxruntime inter-op threads; 0 = onnxruntime's default", 0),
    "graph_optimization": Setting("choice", "onnxruntime graph optimization level (default all)", "all",
                                  GRAPH_OPTIMIZATIONS),
    "repeats": Setting("positive_int", "independent repeats of the timed run, each in a fresh executor process "
                       "(default 3); the graded latency is the median repeat by p50", 3),
    "stability_max_spread": Setting("fraction", "repeats whose p50s differ by more than this share of their median "
                                    "mark the run unstable (default 0.10)", 0.10),
    "timeout_s": Setting("count", "wall-clock limit of the task's execution on the device, seconds; past it the task "
                         "ends error (default 1800; the agent may set a lower cap)", 1800),
    "memory_mb": Setting("count", "memory limit of the process that executes the model, MiB; 0 = the agent's cap "
                         "(default 0)", 0),
    "profile": Setting("bool", "record an onnxruntime operator profile after measuring (default false)", False),
    "profile_queries": Setting("positive_int", "queries run under the profiler (default 100)", 100),
}

SCENARIO_SETTINGS: dict[str, dict[str, Setting]] = {
    "single-stream": {},
    "offline": {"batch_sizes": Setting("positive_int_list", "batch sizes swept in order (default [1])", (1,))},
    "multi-stream": {"samples_per_query": Setting("positive_int", "samples sent together in one query", 1)},
    "server": {
        "target_qps": Setting("positive", "mean rate of Poisson-distributed query arrivals, per second"),
        "latency_bound_ms": Setting("positive", "the latency a query must meet; server.p99_within_bound uses it",
                                    0.0),
        "seed": Setting("count", "seed of the arrival schedule, so runs are repeatable (default 0)", 0),
    },
    "periodic": {
        "rate_hz": Setting("positive", "release rate of the periodic loop"),
        "deadline_ms": Setting("positive", "completion deadline after each release (default one period)"),
    },
    # A query is one prompt: prefill, then greedy decoding of exactly max_new_tokens tokens. The common counts keep
    # their meaning with defaults that fit a language model (a prompt takes tenths of a second to seconds).
    "generative": {
        "warmup_queries": Setting("count", "untimed prompts generated before measuring (default 1)", 1),
        "min_query_count": Setting("count", "prompts generated in the timed run, the dataset's in order, wrapping "
                                   "around (default 6)", 6),
        "min_duration_ms": Setting("count", "and for at least this long (default 0)", 0),
        "max_new_tokens": Setting("positive_int", "tokens greedily decoded after each prompt (default 32)", 32),
        "perplexity_windows": Setting("count", "dataset rows scored for perplexity against the golden "
                                      "log_likelihoods, in the first repeat (default 0: none)", 0),
        "perplexity_tokens": Setting("count", "tokens of each window scored, from its start (default 0: the whole "
                                     "window)", 0),
    },
}

REQUIRED_SETTINGS: dict[str, tuple[str, ...]] = {"server": ("target_qps",), "periodic": ("rate_hz",)}


def allowed_settings(scenario: str) -> dict[str, Setting]:
    """Every settings key a task of this scenario accepts (the common ones included); {} for unknown scenarios."""
    if scenario not in SCENARIO_SETTINGS:
        return {}
    return {**COMMON_SETTINGS, **SCENARIO_SETTINGS[scenario]}


# ---------------------------------------------------------------- what a suite requests, per scenario


@dataclass(frozen=True)
class CommonSettings:
    """Settings every scenario accepts, as requested: None = not requested (the default applies)."""

    warmup_queries: int | None = None
    min_query_count: int | None = None
    min_duration_ms: int | None = None
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    graph_optimization: str | None = None
    repeats: int | None = None
    stability_max_spread: float | None = None
    timeout_s: int | None = None
    memory_mb: int | None = None
    profile: bool | None = None
    profile_queries: int | None = None

    @property
    def scenario(self) -> str:
        return SCENARIO_OF[type(self)]

    def to_dict(self) -> dict[str, Any]:
        """Only what was requested, JSON-able (lists for tuples), as a suite.toml writes it."""
        return {f.name: list(v) if isinstance(v, tuple) else v
                for f in fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass(frozen=True)
class SingleStreamSettings(CommonSettings):
    """One query at a time, each issued when the previous one completes (LoadGen's SingleStream)."""


@dataclass(frozen=True)
class OfflineSettings(CommonSettings):
    """Batches swept back to back for throughput (LoadGen's Offline)."""

    batch_sizes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class MultiStreamSettings(CommonSettings):
    """Several samples per query, back to back (LoadGen's MultiStream)."""

    samples_per_query: int | None = None


@dataclass(frozen=True)
class ServerSettings(CommonSettings):
    """Poisson arrivals at a target rate (LoadGen's Server)."""

    target_qps: float | None = None
    latency_bound_ms: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class PeriodicSettings(CommonSettings):
    """Fixed-rate releases with a deadline: a robot's control loop."""

    rate_hz: float | None = None
    deadline_ms: float | None = None


@dataclass(frozen=True)
class GenerativeSettings(CommonSettings):
    """A language model's prompts, each prefilled and then greedily decoded token by token, timed per token."""

    max_new_tokens: int | None = None
    perplexity_windows: int | None = None
    perplexity_tokens: int | None = None


SETTINGS_TYPES: dict[str, type[CommonSettings]] = {
    "single-stream": SingleStreamSettings, "offline": OfflineSettings, "multi-stream": MultiStreamSettings,
    "server": ServerSettings, "periodic": PeriodicSettings, "generative": GenerativeSettings,
}
SCENARIO_OF: dict[type[CommonSettings], str] = {v: k for k, v in SETTINGS_TYPES.items()}


def requested(scenario: str, settings: Mapping[str, Any]) -> CommonSettings:
    """Typed requested settings of a scenario from a mapping (a validated suite's, or one read back from JSON).

    Raises ValueError naming an unknown scenario or key; values are coerced to the field's type.
    """
    if scenario not in SETTINGS_TYPES:
        raise ValueError(f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
    allowed = allowed_settings(scenario)
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r} for scenario {scenario!r}; "
                         f"it accepts {', '.join(sorted(allowed))}")
    values: dict[str, Any] = {}
    for key, value in settings.items():
        kind = allowed[key].kind
        if kind in ("count", "positive_int"):
            values[key] = int(value)
        elif kind in ("positive", "fraction"):
            values[key] = float(value)
        elif kind == "positive_int_list":
            values[key] = tuple(int(x) for x in value)
        elif kind == "bool":
            values[key] = bool(value)
        else:
            values[key] = str(value)
    return SETTINGS_TYPES[scenario](**values)


# ---------------------------------------------------------------- what a device effectively runs

# Harness policy, not settings a suite requests: recorded with the effective settings of every run.
WARMUP_MIN_MS = 0            # warm-up: at least warmup_queries (and this long), then until the median of
#                              the last 32 queries settles within 5% (agents/harness/warmup.py, at most 10 s)
MAX_QUERY_COUNT = 1_000_000  # a ceiling on one timed run, whatever min_duration_ms asks
AUDIT_QUERIES = 100          # queries of each audit (TEST01 outputs, TEST04 caching)


@dataclass(frozen=True)
class EffectiveSettings:
    """The settings a device ran with: every default filled in, every value normalised. Sent with the results,
    stored beside them, shown in reports; the lab and the verifier compute metrics with them."""

    scenario: str
    warmup_queries: int = COMMON_SETTINGS["warmup_queries"].default
    warmup_min_ms: int = WARMUP_MIN_MS
    min_query_count: int = COMMON_SETTINGS["min_query_count"].default
    min_duration_ms: int = COMMON_SETTINGS["min_duration_ms"].default
    max_query_count: int = MAX_QUERY_COUNT
    intra_op_threads: int = COMMON_SETTINGS["intra_op_threads"].default
    inter_op_threads: int = COMMON_SETTINGS["inter_op_threads"].default
    graph_optimization: str = COMMON_SETTINGS["graph_optimization"].default
    repeats: int = COMMON_SETTINGS["repeats"].default
    stability_max_spread: float = COMMON_SETTINGS["stability_max_spread"].default
    timeout_s: int = COMMON_SETTINGS["timeout_s"].default
    memory_mb: int = COMMON_SETTINGS["memory_mb"].default
    profile: bool = COMMON_SETTINGS["profile"].default
    profile_queries: int = COMMON_SETTINGS["profile_queries"].default
    batch_sizes: tuple[int, ...] = SCENARIO_SETTINGS["offline"]["batch_sizes"].default
    samples_per_query: int = SCENARIO_SETTINGS["multi-stream"]["samples_per_query"].default
    target_qps: float = 0.0
    latency_bound_ms: float = SCENARIO_SETTINGS["server"]["latency_bound_ms"].default
    seed: int = SCENARIO_SETTINGS["server"]["seed"].default
    rate_hz: float = 0.0
    deadline_ms: float = 0.0
    max_new_tokens: int = 0  # generative only (its default is in SCENARIO_SETTINGS); 0 elsewhere
    perplexity_windows: int = 0
    perplexity_tokens: int = 0
    audit: bool = True
    audit_queries: int = AUDIT_QUERIES

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["batch_sizes"] = list(self.batch_sizes)
        return out


def _default(key: str, scenario: str) -> Any:
    return allowed_settings(scenario)[key].default


def effective(req: CommonSettings) -> EffectiveSettings:
    """Requested settings normalised into the effective ones: defaults filled, batch sizes sorted and unique,
    the query ceiling at least the floor, a periodic deadline of one period when none was requested."""
    scenario = req.scenario
    got = {f.name: getattr(req, f.name) for f in fields(req)}

    def value(key: str) -> Any:
        v = got.get(key)
        return _default(key, scenario) if v is None else v

    out: dict[str, Any] = {k: value(k) for k in COMMON_SETTINGS}
    out["repeats"] = max(1, int(out["repeats"]))
    for key in SCENARIO_SETTINGS[scenario]:
        out[key] = value(key)
    if "batch_sizes" in out:
        out["batch_sizes"] = tuple(sorted({int(b) for b in out["batch_sizes"]})) or (1,)
    if scenario == "periodic":
        rate = float(out["rate_hz"])
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"periodic tasks need rate_hz > 0, got {rate!r}")
        out["deadline_ms"] = float(out["deadline_ms"]) if out.get("deadline_ms") is not None else 1000.0 / rate
    if scenario == "server" and out.get("target_qps") is None:
        raise ValueError("server tasks need target_qps")
    return EffectiveSettings(scenario=scenario, warmup_min_ms=WARMUP_MIN_MS,
                             max_query_count=max(MAX_QUERY_COUNT, int(out["min_query_count"])), **out)


# ---------------------------------------------------------------- the task as the lab stores and dispatches it


@dataclass(frozen=True)
class ArtifactRef:
    """An artifact a task needs, by content: what the device fetches and checks, and where its data may go."""

    name: str
    kind: str
    sha256: str
    size: int
    classification: str = "public"
    regions: tuple[str, ...] = ("*",)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "sha256": self.sha256, "size": self.size,
                "classification": self.classification, "regions": list(self.regions)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> ArtifactRef | None:
        if not doc:
            return None
        return cls(name=str(doc["name"]), kind=str(doc.get("kind", "")), sha256=str(doc["sha256"]),
                   size=int(doc["size"]), classification=str(doc.get("classification", "public")),
                   regions=tuple(doc.get("regions") or ("*",)))


@dataclass(frozen=True)
class Criterion:
    """One pass rule of a task, as the lab grades it; `required` is False for criteria that only decide a grade."""

    task: str
    metric: str
    op: str
    threshold: float
    rule: str = "point"
    id: str | None = None
    description: str = ""
    required: bool = True

    def to_dict(self) -> dict[str, Any]:
        out = {"task": self.task, "metric": self.metric, "op": self.op, "threshold": self.threshold,
               "rule": self.rule, "description": self.description, "required": self.required}
        if self.id is not None:
            out["id"] = self.id
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Criterion:
        return cls(task=str(doc["task"]), metric=str(doc["metric"]), op=str(doc["op"]),
                   threshold=float(doc["threshold"]), rule=str(doc.get("rule", "point")), id=doc.get("id"),
                   description=str(doc.get("description", "")), required=bool(doc.get("required", True)))


@dataclass(frozen=True)
class TaskSpec:
    """Everything a device needs to run one task, and the criteria the lab grades it with."""

    name: str
    scenario: str
    model: ArtifactRef
    dataset: ArtifactRef | None
    settings: CommonSettings
    execution_provider: str = "CPUExecutionProvider"
    accuracy: Mapping[str, Any] | None = None
    golden: ArtifactRef | None = None
    conformance: Mapping[str, float] | None = None
    criteria: tuple[Criterion, ...] = field(default=())

    def data_refs(self) -> list[tuple[str, ArtifactRef]]:
        """The task's data artifacts (dataset, golden) by role: what data zones apply to."""
        return [(role, ref) for role, ref in (("dataset", self.dataset), ("golden", self.golden)) if ref is not None]

    @property
    def device_golden(self) -> ArtifactRef | None:
        """The golden the device gets: none for a generative task, whose reference decode and log-likelihoods the
        lab joins itself (a device that never sees the reference cannot echo it)."""
        return None if self.scenario == "generative" else self.golden

    def device_refs(self) -> list[tuple[str, ArtifactRef]]:
        """What the device downloads, by role: the model, the dataset, and the golden when it gets one."""
        refs = [("model", self.model), ("dataset", self.dataset), ("golden", self.device_golden)]
        return [(role, ref) for role, ref in refs if ref is not None]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able document; from_json(to_json()) == self. The layout the lab has always stored."""
        return {
            "name": self.name, "model": self.model.to_dict(),
            "dataset": self.dataset.to_dict() if self.dataset else None, "scenario": self.scenario,
            "settings": self.settings.to_dict(), "execution_provider": self.execution_provider,
            "accuracy": dict(self.accuracy) if self.accuracy else None,
            "golden": self.golden.to_dict() if self.golden else None,
            "conformance": dict(self.conformance) if self.conformance else None,
            "criteria": [c.to_dict() for c in self.criteria],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TaskSpec:
        model = ArtifactRef.from_dict(doc["model"])
        if model is None:
            raise ValueError("a task spec needs a model")
        scenario = str(doc["scenario"])
        return cls(name=str(doc["name"]), scenario=scenario, model=model,
                   dataset=ArtifactRef.from_dict(doc.get("dataset")),
                   settings=requested(scenario, doc.get("settings") or {}),
                   execution_provider=str(doc.get("execution_provider") or "CPUExecutionProvider"),
                   accuracy=dict(doc["accuracy"]) if doc.get("accuracy") else None,
                   golden=ArtifactRef.from_dict(doc.get("golden")),
                   conformance={k: float(v) for k, v in doc["conformance"].items()} if doc.get("conformance")
                   else None,
                   criteria=tuple(Criterion.from_dict(c) for c in doc.get("criteria") or ()))
