"""Fuzzing AgentService.Session, the one long-lived stream, on one real labd: a device (sometimes not one) opens it
with a random hello or none, gets its welcome and often an assignment, then sends random AgentMessage sequences
(heartbeats, progress, result batches of garbage, out-of-order and out-of-window seqs, finishes of any outcome with
JSON fields of any shape, for its own attempt and others) and closes. The stream must end with an expected status
and a one-line reason, labd must log no traceback and must close the session with its stream, and what it stored
before stays as it was."""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from labd.handlers.agents import MAX_BATCH_SEQ, SAMPLE_KINDS
from pilotlab.v1 import agent_pb2, common_pb2, lab_pb2
from tests.fuzz.conftest import FuzzedLab, fuzz_settings
from tests.fuzz.strategies import hostile_text, message
from tests.fuzz.wire import (
    TIMEOUT_S,
    Outcome,
    Seeded,
    bearer,
    enrol,
    path_of,
    seed,
    submit,
)

SESSION = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].methods_by_name["Session"]
_devices = itertools.count()


def fresh_device(s: Seeded) -> tuple[str, str]:
    """A device of its own for each example (name, credential): a session that dies holding an attempt counts
    against its device's health, and a quarantined device would get no more assignments."""
    name = f"sess-{next(_devices)}"
    return name, enrol(s, name)


class RawStream:
    """A Session stream whose every message the test chooses; next() returns LabMessages, then how it ended."""

    def __init__(self, channel: grpc.Channel, metadata: list[tuple[str, str]]) -> None:
        self.out: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        self.inbox: queue.Queue[agent_pb2.LabMessage | Outcome] = queue.Queue()
        self.ended: Outcome | None = None
        stream = channel.stream_stream(path_of(SESSION), request_serializer=agent_pb2.AgentMessage.SerializeToString,
                                       response_deserializer=agent_pb2.LabMessage.FromString)
        self.call = stream(self._requests(), metadata=metadata, timeout=TIMEOUT_S)
        threading.Thread(target=self._read, daemon=True).start()

    def _requests(self) -> Iterator[agent_pb2.AgentMessage]:
        while (m := self.out.get()) is not None:
            yield m

    def _read(self) -> None:
        try:
            for msg in self.call:
                self.inbox.put(msg)
            self.inbox.put(Outcome(grpc.StatusCode.OK, ""))
        except grpc.RpcError as e:
            self.inbox.put(Outcome(e.code(), e.details() or ""))

    def next(self, timeout: float) -> agent_pb2.LabMessage | Outcome | None:
        """The next LabMessage, how the stream ended, or None when nothing came within timeout."""
        if self.ended is not None:
            return self.ended
        try:
            item = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, Outcome):
            self.ended = item
        return item

    def send(self, msg: agent_pb2.AgentMessage) -> None:
        self.out.put(msg)

    def finish(self) -> Outcome:
        """Half-close and read to the end: how the stream ended."""
        self.out.put(None)
        while not isinstance(item := self.next(TIMEOUT_S + 5), Outcome):
            assert item is not None, "the session did not end after the device closed its side"
        return item


@pytest.fixture(scope="module")
def lab(fuzz_lab: FuzzedLab) -> Seeded:
    s = seed(fuzz_lab)
    s.lab.new_log()
    return s


json_text: SearchStrategy[str] = st.one_of(
    hostile_text, st.just(""), st.sampled_from(["{}", "[]", "null", "1", '"x"', "[1, 2]", '{"windows": 5}',
                                                '{"session_options": [1]}', '{"system": [1, 2]}', "{" * 5_000,
                                                '{"a": ' + "1" * 5_000 + "}", "NaN", '{"x": Infinity}']),
    st.dictionaries(hostile_text, st.one_of(st.integers(), st.floats(), hostile_text, st.lists(st.integers())),
                    max_size=4).map(json.dumps),
)


def _ids(attempt: str | None) -> SearchStrategy[str]:
    known = [attempt] if attempt else []
    return st.one_of(st.sampled_from([*known, *known, "att-000000000000", ""]), hostile_text)


def agent_messages(attempt: str | None) -> SearchStrategy[agent_pb2.AgentMessage]:
    """Any AgentMessage, most of them about the device's own attempt (so they get past the ownership check)."""
    ids = _ids(attempt)
    hints: dict[str, SearchStrategy[Any]] = {
        "attempt_id": ids, "running_attempt_ids": ids, "kind": st.sampled_from([*SAMPLE_KINDS, "latency;repeat=1",
                                                                                "latency;repeat=x", "bogus", ""]),
        "seq": st.sampled_from([0, 1, 2, -1, MAX_BATCH_SEQ, MAX_BATCH_SEQ + 1, 2**63 - 1]),
        "effective_settings_json": json_text, "environment_json": json_text, "phases_json": json_text,
        "observations_json": json_text,
    }
    n = st.integers(0, 40)
    batch = st.builds(
        lambda aid, seq, kind, rows, v: agent_pb2.AgentMessage(results=agent_pb2.ResultBatch(
            attempt_id=aid, seq=seq, kind=kind, index=list(range(rows)), sample_index=list(range(rows)),
            t_ns=[v * i for i in range(rows)], value=[v] * rows)),
        ids, hints["seq"], hints["kind"], n, st.integers(-(2**40), 2**40))
    finish = st.builds(
        lambda aid, outcome, batches, settings, observations, reason: agent_pb2.AgentMessage(
            finished=agent_pb2.TaskFinished(attempt_id=aid, outcome=outcome, batches=batches,
                                            effective_settings_json=settings, observations_json=observations,
                                            reason=reason)),
        ids, st.one_of(st.sampled_from(list(agent_pb2.Outcome.values())), st.integers(-(2**31), 2**31 - 1)),
        st.sampled_from([0, 1, 2, -1, 2**63 - 1]), json_text, json_text, hostile_text)
    return st.one_of(message(agent_pb2.AgentMessage.DESCRIPTOR, hints), batch, finish)


_HELLO = agent_pb2.AgentMessage(hello=agent_pb2.Hello(capabilities=common_pb2.Capabilities(slots=1)))
_random_hello = message(agent_pb2.Hello.DESCRIPTOR, {"running_attempt_ids": st.sampled_from(["att-000000000000", ""])})
# The first message: half the time the hello a real agent sends (so that work gets assigned), else anything.
hellos: SearchStrategy[agent_pb2.AgentMessage | None] = st.integers(0, 7).flatmap(
    lambda i: st.just(_HELLO) if i < 4 else _random_hello.map(lambda h: agent_pb2.AgentMessage(hello=h)) if i < 6
    else message(agent_pb2.AgentMessage.DESCRIPTOR) if i < 7 else st.none())
CREDENTIALS = ["own"] * 8 + ["agent", "admin", "revoked", "device-of-another", "none"]


@fuzz_settings(50)
@given(data=st.data())
def test_session_with_random_messages(lab: Seeded, data: st.DataObject) -> None:
    lab.lab.new_log()
    device, credential = fresh_device(lab)
    who = data.draw(st.sampled_from(CREDENTIALS), label="credential")
    token = {"none": None, "own": credential, "device-of-another": lab.tokens["device"]}.get(who, lab.tokens.get(who))
    queued = data.draw(st.integers(0, 3), label="with a queued run") > 0
    if queued:
        submit(lab, device)
    first = data.draw(hellos, label="first message")
    stream = RawStream(lab.channel, bearer(token) if token else [])
    try:
        attempt = None
        if first is not None:  # without a first message the lab waits for one: close at once
            stream.send(first)
            got = stream.next(timeout=10)
            while queued and isinstance(got, agent_pb2.LabMessage):
                if got.HasField("assignment"):
                    attempt = got.assignment.attempt_id
                    break
                got = stream.next(timeout=1)
        event("assigned" if attempt else "no assignment")
        sent = data.draw(st.lists(agent_messages(attempt), max_size=8), label="messages")
        for m in sent:
            stream.send(m)
    finally:  # the stream ends with the example, also when hypothesis stops drawing half-way
        outcome = stream.finish()
    event(outcome.code.name)
    what = (who, str(first)[:200], [str(m)[:200] for m in sent], outcome)
    outcome.check(what)
    assert_offline(lab, device, what)
    lab.lab.assert_log_clean(what)


def assert_offline(s: Seeded, device: str, what: object) -> None:
    """Once its stream has ended, the lab has closed the device's session (no session lives on without its stream)."""
    deadline = time.monotonic() + 5
    while (status := _status(s, device)) != "offline":
        assert time.monotonic() < deadline, f"{what!r}: the stream ended, the lab still shows {device} {status}"
        time.sleep(0.05)


def _status(s: Seeded, device: str) -> str:
    return next(d.status for d in s.stub_call("ListDevices", lab_pb2.ListDevicesRequest()).devices if d.name == device)


_JSON_FIELDS = ("effective_settings_json", "environment_json", "phases_json", "observations_json")


@pytest.mark.parametrize(("field", "text"), [
    ("effective_settings_json", "not json"), ("observations_json", "not json"), ("environment_json", "not json"),
    ("effective_settings_json", "[1, 2]"),  # IndexError in pilotlab/compliance.py _settings, grading the finish
    ("observations_json", "[1, 2]"),  # AttributeError in domain.Observations.from_dict
    ("observations_json", '{"windows": 5, "system": [1]}'),  # TypeError there
])
def test_finish_with_malformed_json_is_refused_in_one_line(lab: Seeded, field: str, text: str) -> None:
    lab.lab.new_log()
    device, credential = fresh_device(lab)
    submit(lab, device)
    stream = RawStream(lab.channel, bearer(credential))
    stream.send(agent_pb2.AgentMessage(hello=agent_pb2.Hello(capabilities=common_pb2.Capabilities(slots=1))))
    while not isinstance(got := stream.next(timeout=10), agent_pb2.LabMessage) or not got.HasField("assignment"):
        assert isinstance(got, agent_pb2.LabMessage), f"no assignment came: {got}"
    finished = agent_pb2.TaskFinished(attempt_id=got.assignment.attempt_id, outcome=agent_pb2.OUTCOME_OK,
                                      **{field: text})
    stream.send(agent_pb2.AgentMessage(finished=finished))
    outcome = stream.finish()
    log = lab.lab.new_log()
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome
    assert "Traceback" not in log, log


def test_huge_capabilities_are_refused(lab: Seeded) -> None:
    lab.lab.new_log()
    _, credential = fresh_device(lab)
    caps = common_pb2.Capabilities(slots=1, providers=["P" * 1000] * 2000, cpu_flags=["f" * 1000] * 2000)
    stream = RawStream(lab.channel, bearer(credential))
    stream.send(agent_pb2.AgentMessage(hello=agent_pb2.Hello(capabilities=caps)))
    outcome = stream.finish()
    lab.lab.new_log()
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome


def test_lab_still_serves_and_kept_what_it_stored(lab: Seeded) -> None:
    """Last in this module: after all the sessions above, the lab serves, what it stored before is unchanged, and no
    session outlived its stream."""
    lab.assert_intact()
    online = [d.name for d in lab.stub_call("ListDevices", lab_pb2.ListDevicesRequest()).devices
              if d.status != "offline"]
    assert not online, f"sessions live on without their streams: {online}"
