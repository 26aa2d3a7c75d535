"""The agent's only door to the lab: channel, token, enrolment, artifact download, session; retries live here."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from pilotlab.tls import ClientTls, explain_unreachable
from pilotlab.v1 import agent_pb2, agent_pb2_grpc, artifact_pb2, artifact_pb2_grpc

log = logging.getLogger("agent.client")

T = TypeVar("T")
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # The channel's own reconnect backoff (1s growing to 120s by default) fails calls fast with the last error
    # until it dials again, hiding a lab that is back; capped so a restarted lab is seen within about a second.
    ("grpc.max_reconnect_backoff_ms", 1_000),
    # The mirror of labd's limits (labd/server.py): send no more than labd receives, receive what labd may send.
    ("grpc.max_send_message_length", 8 << 20),
    ("grpc.max_receive_message_length", 16 << 20),
]
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
             grpc.StatusCode.ABORTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


class Backoff:
    """Exponential backoff with full jitter, reset after success."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0) -> None:
        self.initial, self.max, self.attempt = initial_s, max_s, 0

    def next_delay(self) -> float:
        cap = min(self.max, self.initial * (2 ** min(self.attempt, 64)))
        self.attempt += 1
        return random.uniform(cap / 2, cap)

    def reset(self) -> None:
        self.attempt = 0


def is_transient(e: grpc.RpcError) -> bool:
    return e.code() in TRANSIENT


class LabClient:
    def __init__(self, address: str, backoff: Backoff | None = None, tls: ClientTls | None = None) -> None:
        self.address = address
        self.tls = tls or ClientTls()
        # TLS when --ca is given; plaintext only to a loopback lab or with --insecure (checked at start-up).
        self.channel = self.tls.channel(address, CHANNEL_OPTIONS)
        # The generated gRPC stubs are untyped; the messages they carry are (agent_pb2.pyi).
        self.agents = agent_pb2_grpc.AgentServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.artifacts = artifact_pb2_grpc.ArtifactServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.backoff = backoff or Backoff()
        self.token = ""

    def close(self) -> None:
        self.channel.close()

    def _md(self, token: str | None = None) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {token or self.token}")]

    def retry(self, what: str, fn: Callable[[], T], attempts: int = 8) -> T:
        """Call fn, retrying transient gRPC failures with backoff; other failures raise at once."""
        b = Backoff(self.backoff.initial, self.backoff.max)
        for i in range(attempts):
            try:
                return fn()
            except grpc.RpcError as e:
                if not is_transient(e) or i == attempts - 1:
                    raise
                delay = b.next_delay()
                hint = explain_unreachable(e.details() or "", self.tls.enabled)
                log.warning("%s failed (%s: %s)%s; retrying in %.1fs", what, e.code().name, e.details(),
                            f"; {hint}" if hint else "", delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def enrol(self, enrolment_token: str, request: agent_pb2.EnrolRequest) -> agent_pb2.EnrolResponse:
        response: agent_pb2.EnrolResponse = self.retry(
            "enrol", lambda: self.agents.Enrol(request, metadata=self._md(enrolment_token), timeout=30))
        return response

    def session(self, requests: Iterator[agent_pb2.AgentMessage]) -> Iterator[agent_pb2.LabMessage]:
        return self.agents.Session(requests, metadata=self._md())  # type: ignore[no-any-return]

    def artifact_chunks(self, sha256: str, offset: int) -> Iterator[artifact_pb2.ArtifactChunk]:
        req = artifact_pb2.GetArtifactRequest(sha256=sha256, offset=offset)
        return self.artifacts.Get(req, metadata=self._md(), timeout=600)  # type: ignore[no-any-return]
