"""The one place where protobuf messages become domain objects and back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pilotlab import domain as d
from pilotlab import messages as msg
from pilotlab.v1 import agent_pb2, artifact_pb2, common_pb2, lab_pb2

_STATUS_TO_PB = {
    d.Status.QUEUED: common_pb2.STATUS_QUEUED,
    d.Status.RUNNING: common_pb2.STATUS_RUNNING,
    d.Status.COMPLETED: common_pb2.STATUS_COMPLETED,
    d.Status.CANCELLED: common_pb2.STATUS_CANCELLED,
    d.Status.ERROR: common_pb2.STATUS_ERROR,
}
_STATUS_FROM_PB: dict[int, d.Status] = {int(v): k for k, v in _STATUS_TO_PB.items()}
_VERDICT_TO_PB = {None: common_pb2.VERDICT_UNSPECIFIED, d.Verdict.PASS: common_pb2.VERDICT_PASS,
                  d.Verdict.FAIL: common_pb2.VERDICT_FAIL}
_VERDICT_FROM_PB: dict[int, d.Verdict | None] = {int(v): k for k, v in _VERDICT_TO_PB.items()}
_OUTCOME_TO_PB = {
    d.Outcome.OK: agent_pb2.OUTCOME_OK,
    d.Outcome.REFUSED: agent_pb2.OUTCOME_REFUSED,
    d.Outcome.ERROR: agent_pb2.OUTCOME_ERROR,
    d.Outcome.CANCELLED: agent_pb2.OUTCOME_CANCELLED,
    d.Outcome.FAULT: agent_pb2.OUTCOME_FAULT,
}
_OUTCOME_FROM_PB = {v: k for k, v in _OUTCOME_TO_PB.items()}


def _loads(text: str) -> dict[str, Any]:
    return json.loads(text) if text else {}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")) if obj else ""


def status_to_pb(s: d.Status) -> common_pb2.Status:
    return _STATUS_TO_PB[s]


def status_from_pb(v: int) -> d.Status:
    return _STATUS_FROM_PB[int(v)]


def verdict_to_pb(v: d.Verdict | None) -> common_pb2.Verdict:
    return _VERDICT_TO_PB[v]


def verdict_from_pb(v: int) -> d.Verdict | None:
    return _VERDICT_FROM_PB[int(v)]


def capabilities_to_pb(c: d.Capabilities) -> common_pb2.Capabilities:
    return common_pb2.Capabilities(
        os=c.os, os_release=c.os_release, arch=c.arch, cpu_model=c.cpu_model, cpu_cores=c.cpu_cores,
        memory_bytes=c.memory_bytes, onnxruntime_version=c.onnxruntime_version, providers=c.providers,
        energy_sensors=[common_pb2.EnergySensor(kind=s.kind, name=s.name, path=s.path, readable=s.readable)
                        for s in c.energy_sensors],
        agent_version=c.agent_version, hostname=c.hostname, slots=c.slots, python_version=c.python_version,
        cpu_flags=c.cpu_flags,
    )


def capabilities_from_pb(m: common_pb2.Capabilities) -> d.Capabilities:
    return d.Capabilities(
        os=m.os, os_release=m.os_release, arch=m.arch, cpu_model=m.cpu_model, cpu_cores=m.cpu_cores,
        memory_bytes=m.memory_bytes, onnxruntime_version=m.onnxruntime_version, providers=list(m.providers),
        energy_sensors=[d.EnergySensor(kind=s.kind, name=s.name, path=s.path, readable=s.readable)
                        for s in m.energy_sensors],
        agent_version=m.agent_version, hostname=m.hostname, slots=m.slots or 1, python_version=m.python_version,
        cpu_flags=list(m.cpu_flags),
    )


def device_to_pb(dev: d.Device) -> lab_pb2.Device:
    return lab_pb2.Device(
        id=dev.id, name=dev.name, device_class=dev.device_class, status=dev.status, region=dev.region,
        tags=dev.tags, capabilities=capabilities_to_pb(dev.capabilities), last_seen_unix_ms=dev.last_seen_ms,
        state=dev.state, infra_errors=dev.infra_errors,
    )


def device_from_pb(m: lab_pb2.Device) -> d.Device:
    return d.Device(
        id=m.id, name=m.name, device_class=m.device_class, region=m.region, tags=dict(m.tags),
        capabilities=capabilities_from_pb(m.capabilities), status=m.status, last_seen_ms=m.last_seen_unix_ms,
        state=m.state or "active", infra_errors=m.infra_errors,
    )


def attempt_to_pb(a: d.Attempt) -> lab_pb2.Attempt:
    return lab_pb2.Attempt(
        id=a.id, number=a.number, device=a.device_name, status=status_to_pb(a.status), outcome=a.outcome,
        reason=a.reason, started_unix_ms=a.started_ms, finished_unix_ms=a.finished_ms,
    )


def attempt_from_pb(m: lab_pb2.Attempt, task_id: str = "") -> d.Attempt:
    return d.Attempt(
        id=m.id, task_id=task_id, number=m.number, device_id="", device_name=m.device,
        status=status_from_pb(m.status), outcome=m.outcome, reason=m.reason, started_ms=m.started_unix_ms,
        finished_ms=m.finished_unix_ms,
    )


def task_to_pb(t: d.Task) -> lab_pb2.Task:
    return lab_pb2.Task(
        id=t.id, name=t.name, status=status_to_pb(t.status), verdict=verdict_to_pb(t.verdict),
        device=t.device_name, attempts=t.attempts, phase=t.phase, progress=t.progress,
        metrics_json=_dumps(t.metrics), reason=t.reason, attempt_history=[attempt_to_pb(a) for a in t.history],
    )


def task_from_pb(m: lab_pb2.Task, run_id: str = "") -> d.Task:
    return d.Task(
        id=m.id, run_id=run_id, name=m.name, device_id="", device_name=m.device, status=status_from_pb(m.status),
        spec=None, verdict=verdict_from_pb(m.verdict), attempts=m.attempts, metrics=_loads(m.metrics_json),
        reason=m.reason, phase=m.phase, progress=m.progress,
        history=[attempt_from_pb(a, m.id) for a in m.attempt_history],
    )


def run_to_pb(r: d.Run) -> lab_pb2.Run:
    return lab_pb2.Run(
        id=r.id, suite_id=r.suite_id, suite_version=r.suite_version, suite_digest=r.suite_digest,
        status=status_to_pb(r.status), verdict=verdict_to_pb(r.verdict), priority=r.priority,
        submitted_unix_ms=r.submitted_ms, finished_unix_ms=r.finished_ms, tasks=[task_to_pb(t) for t in r.tasks],
        reason=r.reason, submitted_by=r.submitted_by, kind=r.kind,
    )


def run_from_pb(m: lab_pb2.Run) -> d.Run:
    return d.Run(
        id=m.id, suite_id=m.suite_id, suite_version=m.suite_version, suite_digest=m.suite_digest,
        status=status_from_pb(m.status), priority=m.priority, verdict=verdict_from_pb(m.verdict),
        submitted_ms=m.submitted_unix_ms, finished_ms=m.finished_unix_ms, reason=m.reason,
        submitted_by=m.submitted_by, tasks=[task_from_pb(t, m.id) for t in m.tasks], kind=m.kind or "test",
    )


def result_batch_to_pb(b: d.ResultBatch) -> agent_pb2.ResultBatch:
    return agent_pb2.ResultBatch(
        attempt_id=b.attempt_id, seq=b.seq, kind=b.kind, index=b.index, sample_index=b.sample_index,
        t_ns=b.t_ns, value=b.value, signature=b.signature, aux=b.aux, fvalue=b.fvalue,
    )


def result_batch_from_pb(m: agent_pb2.ResultBatch) -> d.ResultBatch:
    return d.ResultBatch(
        attempt_id=m.attempt_id, seq=m.seq, kind=m.kind, index=list(m.index), sample_index=list(m.sample_index),
        t_ns=list(m.t_ns), value=list(m.value), signature=m.signature, aux=list(m.aux), fvalue=list(m.fvalue),
    )


def finish_to_pb(f: d.AttemptFinish) -> agent_pb2.TaskFinished:
    return agent_pb2.TaskFinished(
        attempt_id=f.attempt_id, outcome=_OUTCOME_TO_PB[f.outcome], reason=f.reason, batches=f.batches,
        effective_settings_json=_dumps(f.effective_settings), environment_json=_dumps(f.environment),
        execution_provider=f.execution_provider, providers_used=f.providers_used, phases_json=_dumps(f.phases),
        observations_json=_dumps(f.observations.to_dict()),
    )


def _object(text: str, field: str) -> dict[str, Any]:
    """A JSON object field of a device's message; Invalid, saying which field, when it is anything else."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise d.Invalid(f"TaskFinished.{field} is not valid JSON; send a JSON object") from None
    if not isinstance(doc, dict):
        raise d.Invalid(f"TaskFinished.{field} must be a JSON object, not a JSON {type(doc).__name__}")
    return doc


def finish_from_pb(m: agent_pb2.TaskFinished) -> d.AttemptFinish:
    """A device's TaskFinished; Invalid when one of its JSON fields is not a JSON object of the expected shape."""
    try:
        observations = d.Observations.from_dict(_object(m.observations_json, "observations_json"))
    except (TypeError, ValueError, AttributeError) as e:
        raise d.Invalid(f"TaskFinished.observations_json has the wrong shape ({type(e).__name__}: {e}); send "
                        "session_options, energy and executor as objects, windows and system as lists of "
                        "objects") from None
    return d.AttemptFinish(
        attempt_id=m.attempt_id, outcome=_OUTCOME_FROM_PB.get(m.outcome, d.Outcome.ERROR), reason=m.reason,
        batches=m.batches, effective_settings=_object(m.effective_settings_json, "effective_settings_json"),
        environment=_object(m.environment_json, "environment_json"), execution_provider=m.execution_provider,
        providers_used=list(m.providers_used), phases=_object(m.phases_json, "phases_json"),
        observations=observations,
    )


def artifact_ref_to_pb(a: d.ArtifactRecord | None) -> common_pb2.ArtifactRef:
    if a is None:
        return common_pb2.ArtifactRef()
    return common_pb2.ArtifactRef(name=a.name, kind=a.kind, sha256=a.sha256, size=a.size)


def artifact_ref_from_pb(m: common_pb2.ArtifactRef) -> d.ArtifactRecord | None:
    if not m.sha256:
        return None
    return d.ArtifactRecord(sha256=m.sha256, size=m.size, name=m.name, kind=m.kind, path="")


def assignment_to_pb(a: d.Assignment) -> agent_pb2.Assignment:
    return agent_pb2.Assignment(
        attempt_id=a.attempt_id, task_id=a.task_id, run_id=a.run_id, task_name=a.task_name,
        model=artifact_ref_to_pb(a.model), dataset=artifact_ref_to_pb(a.dataset), scenario=a.scenario,
        settings_json=_dumps(a.settings), execution_provider=a.execution_provider,
        accuracy_json=_dumps(a.accuracy), golden=artifact_ref_to_pb(a.golden),
        conformance_json=_dumps(a.conformance),
    )


def assignment_from_pb(m: agent_pb2.Assignment) -> d.Assignment:
    model = artifact_ref_from_pb(m.model)
    if model is None:
        raise d.Invalid(f"assignment {m.attempt_id} names no model")
    return d.Assignment(
        attempt_id=m.attempt_id, task_id=m.task_id, run_id=m.run_id, task_name=m.task_name, model=model,
        dataset=artifact_ref_from_pb(m.dataset), scenario=m.scenario, settings=_loads(m.settings_json),
        execution_provider=m.execution_provider, accuracy=_loads(m.accuracy_json) or None,
        golden=artifact_ref_from_pb(m.golden), conformance=_loads(m.conformance_json) or None,
    )


def suite_info_to_pb(s: d.SuiteRecord, with_json: bool = False) -> lab_pb2.SuiteInfo:
    return lab_pb2.SuiteInfo(id=s.id, version=s.version, title=s.title, digest=s.digest,
                             suite_json=s.suite_json if with_json else "")


def artifact_info_to_pb(a: d.ArtifactRecord) -> artifact_pb2.ArtifactInfo:
    return artifact_pb2.ArtifactInfo(sha256=a.sha256, size=a.size, name=a.name, kind=a.kind)


def lab_event_to_pb(e: msg.LabEvent) -> agent_pb2.LabMessage:
    """What the lab says on a session (pilotlab.messages) as the LabMessage that carries it."""
    if isinstance(e, msg.Assign):
        return agent_pb2.LabMessage(assignment=assignment_to_pb(e.assignment))
    if isinstance(e, msg.Ack):
        return agent_pb2.LabMessage(ack=agent_pb2.Ack(attempt_id=e.attempt_id, seq=e.seq, finished=e.finished,
                                                      error=e.error))
    if isinstance(e, msg.Acks):
        return agent_pb2.LabMessage(acks=agent_pb2.Acks(acks=[
            agent_pb2.Ack(attempt_id=a.attempt_id, seq=a.seq, finished=a.finished, error=a.error) for a in e.acks]))
    if isinstance(e, msg.Cancel):
        return agent_pb2.LabMessage(cancel=agent_pb2.Cancel(attempt_id=e.attempt_id, reason=e.reason))
    return agent_pb2.LabMessage(welcome=agent_pb2.Welcome(
        device_id=e.device_id, device_name=e.device_name, heartbeat_interval_ms=e.heartbeat_interval_ms,
        features=list(e.features)))


def lab_event_from_pb(m: agent_pb2.LabMessage) -> msg.LabEvent | None:
    """None for an empty message or one this version does not know."""
    kind = m.WhichOneof("msg")
    if kind == "assignment":
        return msg.Assign(assignment_from_pb(m.assignment))
    if kind == "ack":
        return msg.Ack(attempt_id=m.ack.attempt_id, seq=m.ack.seq, finished=m.ack.finished, error=m.ack.error)
    if kind == "acks":
        return msg.Acks(acks=tuple(msg.Ack(attempt_id=a.attempt_id, seq=a.seq, finished=a.finished, error=a.error)
                                   for a in m.acks.acks))
    if kind == "cancel":
        return msg.Cancel(attempt_id=m.cancel.attempt_id, reason=m.cancel.reason)
    if kind == "welcome":
        w = m.welcome
        return msg.Welcome(device_id=w.device_id, device_name=w.device_name,
                           heartbeat_interval_ms=w.heartbeat_interval_ms, features=tuple(w.features))
    return None


def agent_event_to_pb(e: msg.AgentEvent) -> agent_pb2.AgentMessage:
    """What an agent says on a session (pilotlab.messages, a result batch or a finish) as its AgentMessage."""
    if isinstance(e, d.ResultBatch):
        return agent_pb2.AgentMessage(results=result_batch_to_pb(e))
    if isinstance(e, d.AttemptFinish):
        return agent_pb2.AgentMessage(finished=finish_to_pb(e))
    if isinstance(e, msg.Heartbeat):
        return agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(sent_unix_ms=e.sent_ms,
                                                                    running_attempt_ids=list(e.running)))
    if isinstance(e, msg.Progress):
        return agent_pb2.AgentMessage(progress=agent_pb2.TaskProgress(
            attempt_id=e.attempt_id, phase=e.phase, fraction=e.fraction, message=e.message))
    return agent_pb2.AgentMessage(hello=agent_pb2.Hello(capabilities=capabilities_to_pb(e.capabilities),
                                                        running_attempt_ids=sorted(e.running),
                                                        features=sorted(e.features)))


def agent_event_from_pb(m: agent_pb2.AgentMessage) -> msg.AgentEvent | None:
    """None for an empty message or one this version does not know."""
    kind = m.WhichOneof("msg")
    if kind == "heartbeat":
        return msg.Heartbeat(running=tuple(m.heartbeat.running_attempt_ids), sent_ms=m.heartbeat.sent_unix_ms)
    if kind == "progress":
        p = m.progress
        return msg.Progress(attempt_id=p.attempt_id, phase=p.phase, fraction=p.fraction, message=p.message)
    if kind == "results":
        return result_batch_from_pb(m.results)
    if kind == "finished":
        return finish_from_pb(m.finished)
    if kind == "hello":
        return msg.Hello(capabilities=capabilities_from_pb(m.hello.capabilities),
                         running=frozenset(m.hello.running_attempt_ids), features=frozenset(m.hello.features))
    return None


def result_batches_message(first: agent_pb2.AgentMessage, waiting: Callable[[], bool],
                           take: Callable[[], agent_pb2.AgentMessage | None],
                           held: list[agent_pb2.AgentMessage | None]) -> agent_pb2.AgentMessage:
    """first (a result batch's message) and the result batches queued right behind it (take() the next while
    waiting()) as one ResultBatches message, at most MAX_BATCHES_PER_MESSAGE and MAX_BYTES_PER_MESSAGE; first itself
    when none follows. The message taken that ended the run goes to held, to be sent next. For an agent whose lab
    takes them (its Welcome lists RESULT_BATCHES): agents/worker.py, and bench/fleet.py's simulated agents."""
    batches, size = [first.results], first.ByteSize()
    while len(batches) < msg.MAX_BATCHES_PER_MESSAGE and waiting():
        nxt = take()
        if nxt is None or nxt.WhichOneof("msg") != "results" or size + nxt.ByteSize() > msg.MAX_BYTES_PER_MESSAGE:
            held.append(nxt)
            break
        batches.append(nxt.results)
        size += nxt.ByteSize()
    if len(batches) == 1:
        return first
    return agent_pb2.AgentMessage(result_batches=agent_pb2.ResultBatches(batches=batches))
