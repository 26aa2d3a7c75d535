"""Domain types shared by labd, the agent and labctl; protobuf never leaks past pilotlab.convert."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from pilotlab.tasks import TaskSpec

DEVICE_CLASSES = ("smart-terminal", "robot", "accelerator-board")


class Role(enum.StrEnum):
    """Who a token speaks for. DEVICE is the credential an agent receives at enrolment."""

    AGENT = "agent"
    ENGINEER = "engineer"
    CERTIFIER = "certifier"
    ADMIN = "admin"
    DEVICE = "device"


USER_ROLES = (Role.AGENT, Role.ENGINEER, Role.CERTIFIER, Role.ADMIN)


class Status(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ERROR = "error"

    @property
    def terminal(self) -> bool:
        return self in (Status.COMPLETED, Status.CANCELLED, Status.ERROR)


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"


class Outcome(enum.StrEnum):
    """How an attempt ended on the device: a refusal is an outcome with a reason, not an exception."""

    OK = "ok"
    REFUSED = "refused"
    ERROR = "error"
    CANCELLED = "cancelled"
    FAULT = "fault"  # the model failed (timeout, memory, crash): the task ends error, never retried


@dataclass(frozen=True)
class Principal:
    role: Role
    token_id: str
    device_id: str | None = None


@dataclass
class EnergySensor:
    kind: str
    name: str
    path: str
    readable: bool


@dataclass
class Capabilities:
    os: str = ""
    os_release: str = ""
    arch: str = ""
    cpu_model: str = ""
    cpu_cores: int = 0
    memory_bytes: int = 0
    onnxruntime_version: str = ""
    providers: list[str] = field(default_factory=list)
    energy_sensors: list[EnergySensor] = field(default_factory=list)
    agent_version: str = ""
    hostname: str = ""
    slots: int = 1
    python_version: str = ""
    cpu_flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Capabilities:
        d = dict(d)
        d["energy_sensors"] = [EnergySensor(**s) for s in d.get("energy_sensors", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Device:
    id: str
    name: str
    device_class: str
    region: str
    tags: dict[str, str]
    capabilities: Capabilities
    status: str = "offline"
    last_seen_ms: int = 0
    public_key: bytes = b""
    state: str = "active"
    infra_errors: int = 0


@dataclass
class ArtifactRecord:
    sha256: str
    size: int
    name: str
    kind: str
    path: str


@dataclass
class SuiteRecord:
    id: str
    version: str
    title: str
    digest: str
    suite_json: str


@dataclass
class ReportRecord:
    id: str
    run_id: str
    digest: str
    issued_ms: int
    replaces: str | None
    log_index: int
    bundle: bytes


@dataclass(frozen=True)
class Observations:
    """What a device observed about a run beside its raw samples: how onnxruntime and the executor were
    configured, where each timed run began and ended, the machine's state during them, and how energy was
    sampled. Measurements, never settings: they travel and are stored apart from the effective settings."""

    session_options: dict[str, Any] = field(default_factory=dict)  # resolved intra/inter-op threads, spinning
    energy: dict[str, Any] = field(default_factory=dict)  # meter, idle baseline, sampler errors, CPU-time estimate
    # One per latency sample kind ("latency;repeat=1"): {"kind", "start_ns", "end_ns"} on the harness clock.
    windows: list[dict[str, Any]] = field(default_factory=list)
    executor: dict[str, Any] = field(default_factory=dict)  # affinity, limits, processes, peak RSS
    system: list[dict[str, Any]] = field(default_factory=list)  # per repeat: steal, iowait, load, frequency, thermal

    def to_dict(self) -> dict[str, Any]:
        return {"session_options": dict(self.session_options), "energy": dict(self.energy),
                "windows": [dict(w) for w in self.windows], "executor": dict(self.executor),
                "system": [dict(x) for x in self.system]}

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> Observations:
        doc = doc or {}
        return cls(session_options=dict(doc.get("session_options") or {}), energy=dict(doc.get("energy") or {}),
                   windows=[dict(w) for w in doc.get("windows") or []], executor=dict(doc.get("executor") or {}),
                   system=[dict(x) for x in doc.get("system") or []])


@dataclass
class Attempt:
    id: str
    task_id: str
    number: int
    device_id: str
    device_name: str
    status: Status
    outcome: str = ""
    reason: str = ""
    started_ms: int = 0
    finished_ms: int = 0
    lease_expires_ms: int = 0
    batches_expected: int = -1
    effective_settings: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    execution_provider: str = ""
    providers_used: list[str] = field(default_factory=list)
    phases: dict[str, Any] = field(default_factory=dict)
    observations: Observations = field(default_factory=Observations)


@dataclass
class Task:
    id: str
    run_id: str
    name: str
    device_id: str
    device_name: str
    status: Status
    spec: TaskSpec | None  # what the lab dispatches and grades; None in views of a task read over the wire
    verdict: Verdict | None = None
    attempts: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    phase: str = ""
    progress: float = 0.0
    queued_ms: int = 0
    history: list[Attempt] = field(default_factory=list)


@dataclass
class Run:
    id: str
    suite_id: str
    suite_version: str
    suite_digest: str
    status: Status
    priority: int = 0
    verdict: Verdict | None = None
    submitted_ms: int = 0
    finished_ms: int = 0
    reason: str = ""
    submitted_by: str = ""
    tasks: list[Task] = field(default_factory=list)
    kind: str = "test"
    select: str = ""
    any_device: bool = False
    queue_timeout_ms: int = 0


@dataclass
class ResultBatch:
    """Raw measurements: parallel arrays, numbered per attempt from 0."""

    attempt_id: str
    seq: int
    kind: str  # latency | prediction
    index: list[int]
    sample_index: list[int]
    t_ns: list[int]
    value: list[int]
    signature: bytes = b""
    aux: list[int] = field(default_factory=list)
    fvalue: list[float] = field(default_factory=list)


@dataclass
class AttemptFinish:
    attempt_id: str
    outcome: Outcome
    reason: str = ""
    batches: int = 0
    effective_settings: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    execution_provider: str = ""
    providers_used: list[str] = field(default_factory=list)
    phases: dict[str, Any] = field(default_factory=dict)
    observations: Observations = field(default_factory=Observations)


@dataclass
class Assignment:
    attempt_id: str
    task_id: str
    run_id: str
    task_name: str
    model: ArtifactRecord
    dataset: ArtifactRecord | None
    scenario: str
    settings: dict[str, Any]  # as the suite requests them (pilotlab.tasks.requested types them on the device)
    execution_provider: str
    accuracy: dict[str, Any] | None
    golden: ArtifactRecord | None = None
    conformance: dict[str, Any] | None = None


class LabError(Exception):
    """A domain error with a message fit for one line on a user's terminal."""


class NotFound(LabError):
    pass


class Invalid(LabError):
    pass


class Denied(LabError):
    pass


class Conflict(LabError):
    pass


class Unauthenticated(LabError):
    pass


class LabFault(LabError):
    """A fault of the lab's own (an artifact in its store is corrupt or missing): the task ends in error with the
    reason, is never retried elsewhere, and never counts against the device."""


class StorageFull(LabFault):
    """The lab's storage (its data dir or database) is full: nothing new is accepted until space is freed."""
