"""What the lab and an agent say to each other over a session, as domain events; pilotlab.convert alone turns them
into the wire's LabMessage and AgentMessage and back."""

from __future__ import annotations

from dataclasses import dataclass, field

from pilotlab import domain as d

# Protocol features, listed in Hello (what the agent understands) and Welcome (what the lab does); a side uses one
# only when the other lists it, so different versions talk in the single messages both know.
RESULT_BATCHES = "result-batches"  # the lab takes several result batches in one message
ACKS = "acks"  # the agent takes several Acks in one message
LAB_FEATURES = (RESULT_BATCHES,)
AGENT_FEATURES = (ACKS,)
MAX_BATCHES_PER_MESSAGE = 8  # a lab's window of result batches in flight per session
MAX_BYTES_PER_MESSAGE = 4 << 20


# --- lab → agent ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Welcome:
    """The first thing the lab says: who the device is and how often it must heartbeat."""

    device_id: str
    device_name: str
    heartbeat_interval_ms: int
    features: tuple[str, ...] = ()


@dataclass(frozen=True)
class Assign:
    """Run this task (one attempt of it)."""

    assignment: d.Assignment


@dataclass(frozen=True)
class Cancel:
    """Stop this attempt at the next query boundary and report it finished (cancelled)."""

    attempt_id: str
    reason: str


@dataclass(frozen=True)
class Ack:
    """A result batch (seq) or the finish of an attempt (finished) is stored, or the batch was refused (error, and
    it is stored nowhere): either way the agent may forget it."""

    attempt_id: str
    seq: int = 0
    finished: bool = False
    error: str = ""


@dataclass(frozen=True)
class Acks:
    """Several Acks in one message, in order (to an agent whose Hello lists ACKS)."""

    acks: tuple[Ack, ...]


LabEvent = Welcome | Assign | Cancel | Ack | Acks


# --- agent → lab ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hello:
    """The first thing an agent says: what the device can do and which attempts it still runs."""

    capabilities: d.Capabilities
    running: frozenset[str] = field(default_factory=frozenset)
    features: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Heartbeat:
    """The device is alive and runs these attempts."""

    running: tuple[str, ...] = ()
    sent_ms: int = 0


@dataclass(frozen=True)
class Progress:
    """Where an attempt is: its phase and the fraction of it done."""

    attempt_id: str
    phase: str
    fraction: float
    message: str = ""


AgentEvent = Hello | Heartbeat | Progress | d.ResultBatch | d.AttemptFinish
