"""Session events (pilotlab.messages) ↔ LabMessage / AgentMessage round trips through pilotlab.convert."""

from __future__ import annotations

import pytest

from pilotlab import convert as cv
from pilotlab import domain as d
from pilotlab import messages as msg
from pilotlab.v1 import agent_pb2

MODEL = d.ArtifactRecord(sha256="ab" * 32, size=10, name="m", kind="model", path="")
ASSIGNMENT = d.Assignment(attempt_id="att-1", task_id="task-1", run_id="run-1", task_name="t", model=MODEL,
                          dataset=None, scenario="offline", settings={"batch_sizes": [1, 8]},
                          execution_provider="CPUExecutionProvider", accuracy=None, golden=None, conformance=None)


@pytest.mark.parametrize("event", [
    msg.Welcome(device_id="dev-1", device_name="r1", heartbeat_interval_ms=5000),
    msg.Welcome(device_id="dev-1", device_name="r1", heartbeat_interval_ms=5000, features=msg.LAB_FEATURES),
    msg.Assign(ASSIGNMENT),
    msg.Cancel(attempt_id="att-1", reason="cancelled by a user"),
    msg.Ack(attempt_id="att-1", seq=7),
    msg.Ack(attempt_id="att-1", finished=True),
    msg.Acks(acks=(msg.Ack(attempt_id="att-1", seq=7), msg.Ack(attempt_id="att-1", seq=8, error="late"))),
], ids=lambda e: type(e).__name__)
def test_lab_events_round_trip(event: msg.LabEvent) -> None:
    assert cv.lab_event_from_pb(cv.lab_event_to_pb(event)) == event


def test_lab_events_fill_the_wires_oneof() -> None:
    assert cv.lab_event_to_pb(msg.Cancel("att-1", "stop")) == agent_pb2.LabMessage(
        cancel=agent_pb2.Cancel(attempt_id="att-1", reason="stop"))
    assert cv.lab_event_to_pb(msg.Ack("att-1", seq=3)).WhichOneof("msg") == "ack"
    assert cv.lab_event_from_pb(agent_pb2.LabMessage()) is None


@pytest.mark.parametrize("event", [
    msg.Hello(capabilities=d.Capabilities(os="Linux", slots=2), running=frozenset({"att-1", "att-2"})),
    msg.Hello(capabilities=d.Capabilities(os="Linux", slots=1), features=frozenset(msg.AGENT_FEATURES)),
    msg.Heartbeat(running=("att-1",), sent_ms=1_700_000_000_000),
    msg.Progress(attempt_id="att-1", phase="warmup", fraction=0.25, message="50 queries"),
    d.ResultBatch(attempt_id="att-1", seq=0, kind="latency", index=[0, 1], sample_index=[3, 4], t_ns=[1, 2],
                  value=[10, 20], signature=b"sig"),
    d.AttemptFinish(attempt_id="att-1", outcome=d.Outcome.OK, batches=1),
], ids=lambda e: type(e).__name__)
def test_agent_events_round_trip(event: msg.AgentEvent) -> None:
    assert cv.agent_event_from_pb(cv.agent_event_to_pb(event)) == event


def test_an_empty_agent_message_is_no_event() -> None:
    assert cv.agent_event_from_pb(agent_pb2.AgentMessage()) is None
