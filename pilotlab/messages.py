"""What the lab and an agent say to each other over a session, as domain events; pilotlab.convert alone turns them
into the wire's LabMessage and AgentMessage and back."""

from __future__ import annotations

from dataclasses import dataclass, field

from pilotlab import domain as d


# --- lab → agent ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Welcome:
    """The first thing the lab says: who the device is and how often it must heartbeat."""

    device_id: str
    device_name: str
    heartbeat_interval_ms: int


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


LabEvent = Welcome | Assign | Cancel | Ack


# --- agent → lab ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hello:
    """The first thing an agent says: what the device can do and which attempts it still runs."""

    capabilities: d.Capabilities
    running: frozenset[str] = field(default_factory=frozenset)


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
