"""The fuzzed lab's wire: every RPC of AgentService, ArtifactService and LabService by descriptor, called typed or as
raw bytes with any token; a device session spoken by hand; and the lab seeded with what the fuzzing must leave as it
was (a finished run, a queued one, tokens, a device), with a snapshot of it to compare after."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pilotlab.v1 import agent_pb2, artifact_pb2, common_pb2, lab_pb2
from tests.fuzz.conftest import FuzzedLab
from tests.fuzz.strategies import one_line

SERVICES = [agent_pb2.DESCRIPTOR.services_by_name["AgentService"],
            artifact_pb2.DESCRIPTOR.services_by_name["ArtifactService"],
            lab_pb2.DESCRIPTOR.services_by_name["LabService"]]
# Every RPC a client calls with one request (the Session stream is fuzzed on its own).
METHODS = {m.name: m for svc in SERVICES for m in svc.methods if not m.client_streaming}
# What a call may end with. UNKNOWN or INTERNAL mean a handler raised something it did not handle; a deadline
# means a hang.
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED,
           grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
           grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE}
TIMEOUT_S = 20.0
ROLES = ("agent", "engineer", "certifier", "admin", "device", "revoked")


def path_of(m: MethodDescriptor) -> str:
    return f"/{m.containing_service.full_name}/{m.name}"


def request_class(m: MethodDescriptor) -> type[Message]:
    return GetMessageClass(m.input_type)


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    responses: int = 0

    def check(self, what: object) -> None:
        """The call ended with an expected status and, when refused, a one-line reason."""
        assert self.code in ALLOWED, f"{what!r} ended {self.code.name}: {self.details!r}"
        assert one_line(self.details), f"{what!r}: details are not one line: {self.details!r}"
        assert "metadata size" not in self.details, f"{what!r}: the status was too big to deliver: {self.details!r}"


def call(channel: grpc.Channel, m: MethodDescriptor, request: Message | bytes, metadata: list[tuple[str, str]],
         max_responses: int = 64) -> Outcome:
    """Call one RPC and say how it ended; a server stream is read for max_responses messages, then cancelled (a
    watch of a run that goes on would not end by itself)."""
    raw = isinstance(request, bytes)
    serializer = None if raw else request_class(m).SerializeToString
    deserializer = None if raw else GetMessageClass(m.output_type).FromString
    try:
        if not m.server_streaming:
            channel.unary_unary(path_of(m), request_serializer=serializer, response_deserializer=deserializer)(
                request, metadata=metadata, timeout=TIMEOUT_S)
            return Outcome(grpc.StatusCode.OK, "", 1)
        stream = channel.unary_stream(path_of(m), request_serializer=serializer, response_deserializer=deserializer)(
            request, metadata=metadata, timeout=TIMEOUT_S)
        if m.name == "WatchRun":  # a watch of a run that goes on ends when the run does
            max_responses = 1
        n = 0
        for _ in stream:
            n += 1
            if n >= max_responses:
                stream.cancel()
                return Outcome(grpc.StatusCode.OK, "", n)
        return Outcome(grpc.StatusCode.OK, "", n)
    except grpc.RpcError as e:
        return Outcome(e.code(), e.details() or "")


class DeviceSession:
    """One device's Session stream spoken by hand: send() AgentMessages, next() the LabMessages; a thread sends a
    heartbeat naming the attempts it holds every second, so its leases last while the fuzzing runs."""

    def __init__(self, channel: grpc.Channel, credential: str, heartbeat: bool = True) -> None:
        self.out: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        self.inbox: queue.Queue[agent_pb2.LabMessage | grpc.RpcError | None] = queue.Queue()
        self.running: set[str] = set()
        self.out.put(agent_pb2.AgentMessage(hello=agent_pb2.Hello(capabilities=common_pb2.Capabilities(slots=1))))
        stream = channel.stream_stream(path_of(agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
                                               .methods_by_name["Session"]),
                                       request_serializer=agent_pb2.AgentMessage.SerializeToString,
                                       response_deserializer=agent_pb2.LabMessage.FromString)
        self.call = stream(self._requests(), metadata=[("authorization", f"Bearer {credential}")])
        self._stop = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if heartbeat:
            threading.Thread(target=self._beat, daemon=True).start()
        assert self.next().HasField("welcome")

    def _requests(self) -> Iterator[agent_pb2.AgentMessage]:
        while (m := self.out.get()) is not None:
            yield m

    def _read(self) -> None:
        try:
            for msg in self.call:
                self.inbox.put(msg)
        except grpc.RpcError as e:
            self.inbox.put(e)
        self.inbox.put(None)

    def _beat(self) -> None:
        while not self._stop.wait(1.0):
            self.out.put(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(
                sent_unix_ms=int(time.time() * 1000), running_attempt_ids=sorted(self.running))))

    def next(self, timeout: float = 30) -> agent_pb2.LabMessage:
        item = self.inbox.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            raise item
        assert item is not None, "the session ended"
        return item

    def assignment(self) -> agent_pb2.Assignment:
        while not (msg := self.next()).HasField("assignment"):
            pass
        self.running.add(msg.assignment.attempt_id)
        return msg.assignment

    def send(self, msg: agent_pb2.AgentMessage) -> None:
        self.out.put(msg)

    def close(self) -> None:
        self._stop.set()
        self.out.put(None)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@dataclass
class Seeded:
    """A lab with something to lose: a finished run and a queued one on device keep-dev, tokens of every role (and a
    revoked one), and spare things the fuzzing may change (sacrificial tokens, device target-dev)."""

    lab: FuzzedLab
    channel: grpc.Channel
    tokens: dict[str, str]
    finished_run: str
    queued_run: str
    spare_token_ids: list[str]
    sha256s: list[str]
    kept_token_ids: list[str] = field(default_factory=list)
    snapshot: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Seeded(labd at {self.lab.addr}, log {self.lab.log})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # how hypothesis shows the fixture in a failing example
        p.text(repr(self))

    def stub_call(self, name: str, request: Message, role: str = "admin") -> Any:
        m = METHODS[name]
        fn = self.channel.unary_unary(path_of(m), request_serializer=request_class(m).SerializeToString,
                                      response_deserializer=GetMessageClass(m.output_type).FromString)
        return fn(request, metadata=bearer(self.tokens[role]), timeout=TIMEOUT_S)

    def take_snapshot(self) -> dict[str, Any]:
        """What must not change: the two runs, the kept tokens (less their use count), device keep-dev, the suites."""
        runs = {rid: self.stub_call("GetRun", lab_pb2.GetRunRequest(id=rid)) for rid in
                (self.finished_run, self.queued_run)}
        tokens = {}
        for t in self.stub_call("ListTokens", lab_pb2.ListTokensRequest()).tokens:
            if t.id in self.kept_token_ids:
                t.uses = 0
                tokens[t.id] = t
        devices = {}
        for dev in self.stub_call("ListDevices", lab_pb2.ListDevicesRequest()).devices:
            if dev.name == "keep-dev":
                dev.last_seen_unix_ms = 0
                devices[dev.name] = dev
        suites = self.stub_call("ListSuites", lab_pb2.ListSuitesRequest())
        return {"runs": runs, "tokens": tokens, "devices": devices, "suites": suites}

    def assert_intact(self) -> None:
        """The lab serves (health, a listing, its identity) and holds what the snapshot holds, as it was."""
        health = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert self.stub_call("GetLabInfo", lab_pb2.GetLabInfoRequest(), role="certifier").public_key_pem
        runs = {r.id for r in self.stub_call("ListRuns", lab_pb2.ListRunsRequest(limit=1000), role="engineer").runs}
        assert {self.finished_run, self.queued_run} <= runs
        after = self.take_snapshot()
        for part, before in self.snapshot.items():
            assert after[part] == before, f"the fuzzing changed stored {part}:\nbefore {before}\nafter {after[part]}"
        self.lab.assert_log_clean("the checks after the fuzzing")


def _token(s: Seeded, role: str) -> tuple[str, str]:
    resp = s.stub_call("CreateToken", lab_pb2.CreateTokenRequest(role=role))
    return resp.token, resp.id


def enrol(s: Seeded, name: str, device_class: str = "smart-terminal", region: str = "eu") -> str:
    resp = s.stub_call("Enrol", agent_pb2.EnrolRequest(name=name, device_class=device_class, region=region,
                                                       tags={"site": "fuzz"},
                                                       capabilities=common_pb2.Capabilities(slots=1, cpu_cores=4)),
                       role="agent")
    return str(resp.device_token)


def submit(s: Seeded, device: str) -> str:
    run = s.stub_call("SubmitRun", lab_pb2.SubmitRunRequest(suite_id="smoke", device=device), role="engineer")
    return str(run.id)


def seed(lab: FuzzedLab) -> Seeded:
    """Seed the lab through its own RPCs (a finished run: its task refused by the device, as an agent may)."""
    # Listings may outgrow gRPC's default 4 MiB on the way back (see test_huge_capabilities_are_refused).
    channel = grpc.insecure_channel(lab.addr, options=[("grpc.max_receive_message_length", 64 << 20)])
    s = Seeded(lab, channel, {"admin": lab.admin_token}, "", "", [], [])
    for role in ("agent", "engineer", "certifier"):
        s.tokens[role], tid = _token(s, role)
        s.kept_token_ids.append(tid)
    s.tokens["revoked"], revoked = _token(s, "engineer")
    s.stub_call("RevokeToken", lab_pb2.RevokeTokenRequest(id=revoked))
    s.kept_token_ids.append(revoked)
    s.spare_token_ids = [_token(s, role)[1] for role in ("agent", "engineer", "certifier")]

    keep = DeviceSession(channel, enrol(s, "keep-dev"))
    s.finished_run = submit(s, "keep-dev")
    attempt = keep.assignment()
    s.sha256s = sorted({attempt.model.sha256, attempt.dataset.sha256} - {""})
    keep.send(agent_pb2.AgentMessage(finished=agent_pb2.TaskFinished(
        attempt_id=attempt.attempt_id, outcome=agent_pb2.OUTCOME_REFUSED, reason="kept as it is for the fuzzing")))
    while not (msg := keep.next()).HasField("ack") or not msg.ack.finished:
        pass
    keep.close()
    deadline = time.monotonic() + 30
    while any(d.name == "keep-dev" and d.status != "offline" for d in
              s.stub_call("ListDevices", lab_pb2.ListDevicesRequest()).devices):
        assert time.monotonic() < deadline, "keep-dev stayed online"
        time.sleep(0.05)
    s.queued_run = submit(s, "keep-dev")  # keep-dev is offline: queued for as long as the lab runs
    s.tokens["device"] = enrol(s, "fuzz-dev")
    enrol(s, "target-dev", device_class="robot", region="")
    lab.assert_log_clean("seeding the lab")
    s.snapshot = s.take_snapshot()
    return s
