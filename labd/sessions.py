"""Live agent sessions: one per connected device, each with an outbound queue of domain events (pilotlab.messages)
that the session's servicer turns into wire messages."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pilotlab.messages import LabEvent


@dataclass(eq=False)
class AgentSession:
    device_id: str
    device_name: str
    slots: int
    public_key: bytes = b""
    outbox: asyncio.Queue[LabEvent | None] = field(default_factory=asyncio.Queue)
    running: set[str] = field(default_factory=set)

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.running)

    def send(self, event: LabEvent) -> None:
        """Queue an event for the agent; call it on the event loop's thread (asyncio queues are not thread-safe)."""
        self.outbox.put_nowait(event)

    def close(self) -> None:
        self.outbox.put_nowait(None)


class SessionRegistry:
    """Which devices are connected to this labd; a new session for a device supersedes its old one."""

    def __init__(self) -> None:
        self._by_device: dict[str, AgentSession] = {}

    def open(self, session: AgentSession) -> AgentSession | None:
        old = self._by_device.get(session.device_id)
        self._by_device[session.device_id] = session
        if old is not None:
            old.close()
        return old

    def close(self, session: AgentSession) -> bool:
        """Forget the session; False when a newer one had already replaced it."""
        if self._by_device.get(session.device_id) is session:
            del self._by_device[session.device_id]
            return True
        return False

    def get(self, device_id: str) -> AgentSession | None:
        return self._by_device.get(device_id)

    def all(self) -> list[AgentSession]:
        return list(self._by_device.values())

    def __len__(self) -> int:
        return len(self._by_device)
