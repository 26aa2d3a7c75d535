"""What happens when an agent enrols, connects, heartbeats, uploads results and finishes an attempt."""

from __future__ import annotations

import logging

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from labd.auth import hash_token, new_token
from labd.handlers.health import after_attempt, health_run_ended
from labd.handlers.runs import pick_one
from labd.lab import Lab
from labd.results.grade import attempt_metrics, grade
from labd.scheduler.select import select_devices
from labd.state.rows import now_ms
from pilotlab import domain as d
from pilotlab.samples import batch_signing_bytes
from pilotlab.scenarios import parse_kind

SAMPLE_KINDS = ("latency", "prediction", "perf-prediction", "audit-same", "audit-varied", "conformance",
                "conformance-peak", "power")

log = logging.getLogger("labd.agents")


def enrol(lab: Lab, name: str, device_class: str, region: str, tags: dict[str, str],
          caps: d.Capabilities, public_key: bytes) -> tuple[d.Device, str]:
    if not name:
        raise d.Invalid("the device needs a --name")
    if device_class not in d.DEVICE_CLASSES:
        raise d.Invalid(f"unknown device class {device_class!r}; use one of {', '.join(d.DEVICE_CLASSES)}")
    dev = lab.store.enrol_device(name, device_class, region, tags, caps, public_key, now_ms())
    token = new_token(d.Role.DEVICE)
    lab.store.create_token(d.Role.DEVICE, hash_token(token), device_id=dev.id)
    return dev, token


def own_attempt(lab: Lab, device_id: str, attempt_id: str) -> d.Attempt:
    """The attempt, when it belongs to this device; an agent can only act as its own device."""
    att = lab.store.get_attempt(attempt_id)
    if att.device_id != device_id:
        raise d.Denied(f"attempt {attempt_id} was not assigned to this device")
    return att


def session_opened(lab: Lab, device_id: str, caps: d.Capabilities, still_running: set[str]) -> list[str]:
    """Mark the device online; attempts the lab thinks run there but the agent no longer has are requeued.
    Returns the run ids that changed."""
    lab.store.update_device(device_id, status="online", now_ms=now_ms(), capabilities=caps)
    changed = []
    for att in lab.store.running_attempts(device_id):
        if att.id not in still_running:
            run = fail_attempt(lab, att, "the agent restarted without this attempt (agent lost)", device_lost=True)
            changed.append(run.id)
    return changed


def session_closed(lab: Lab, device_id: str) -> None:
    lab.store.update_device(device_id, status="offline", now_ms=now_ms())


def heartbeat(lab: Lab, device_id: str, running: list[str]) -> None:
    """Renew the leases of what the device runs; its last-seen time is written in batches by the dispatcher."""
    if running:
        lab.store.renew_leases(device_id, running, now_ms() + lab.config.lease_ms)


def check_signature(public_key: bytes, batch: d.ResultBatch) -> None:
    """A device that registered a key must sign every batch with it; a forged batch is refused."""
    if not public_key:
        return
    arrays = {"index": batch.index, "sample_index": batch.sample_index, "t_ns": batch.t_ns, "value": batch.value,
              "aux": batch.aux, "fvalue": batch.fvalue}
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            batch.signature, batch_signing_bytes(batch.attempt_id, batch.seq, batch.kind, arrays))
    except (InvalidSignature, ValueError):
        raise d.Denied(f"result batch {batch.seq} of attempt {batch.attempt_id} does not carry this device's "
                       "signature") from None


def ingest(lab: Lab, device_id: str, batch: d.ResultBatch, public_key: bytes = b"") -> bool:
    own_attempt(lab, device_id, batch.attempt_id)
    check_signature(public_key, batch)
    if parse_kind(batch.kind)[0] not in SAMPLE_KINDS:
        raise d.Invalid(f"result batch kind {batch.kind!r} is not one of {', '.join(SAMPLE_KINDS)}")
    stored = lab.store.add_result_batch(batch, now_ms())
    if stored:
        lab.m.results_ingested.labels(parse_kind(batch.kind)[0]).inc(len(batch.value))
    else:
        lab.m.batches_duplicate.inc()
    return stored


def fail_attempt(lab: Lab, att: d.Attempt, reason: str, fin: d.AttemptFinish | None = None,
                 device_lost: bool = False) -> d.Run:
    """An infrastructure failure: requeue the task while attempts remain (to another matching device when the
    run allows it and the device was lost), else end it in error. Counts toward the device's health."""
    task = lab.store.get_task(att.task_id)
    requeue = task.attempts < lab.config.max_attempts
    why = reason if requeue else f"{reason}; gave up after {task.attempts} attempts"
    run = lab.store.finish_attempt(fin or d.AttemptFinish(att.id, d.Outcome.ERROR, reason=reason),
                                   task_status=d.Status.ERROR, verdict=None, metrics={}, reason=why,
                                   now_ms=now_ms(), requeue=requeue)
    if requeue:
        lab.m.requeues.inc()
        if device_lost and run.any_device and run.select:
            other = pick_one(lab, select_devices(lab.store.list_devices(), run.select), exclude=att.device_id)
            if other is not None and other.device_class == lab.store.get_device(att.device_id).device_class:
                lab.store.move_task(task.id, other.id)
                log.info("task %s moves from a lost device to %s", task.id, other.name)
                run = lab.store.get_run(run.id)
    health_run_ended(lab, run)
    after_attempt(lab, att.device_id, infra_error=True)
    return run


def finish(lab: Lab, device_id: str, fin: d.AttemptFinish) -> tuple[d.Run | None, bool]:
    """Close an attempt. Returns (changed run or None, whether to acknowledge). Not acknowledged while
    result batches are missing: the agent's outbox sends them again."""
    att = own_attempt(lab, device_id, fin.attempt_id)
    if att.status != d.Status.RUNNING:
        return None, True
    if fin.outcome == d.Outcome.OK:
        missing = set(range(fin.batches)) - lab.store.batch_seqs(att.id)
        if missing:
            log.warning("attempt %s finished with %d result batches missing; waiting", att.id, len(missing))
            return None, False
        task = lab.store.get_task(att.task_id)
        assert task.spec is not None, "a stored task always has its spec"
        metrics = attempt_metrics(lab.store, att.id, task.spec, fin.effective_settings)
        verdict, _ = grade(metrics, task.spec)
        run = lab.store.finish_attempt(fin, task_status=d.Status.COMPLETED, verdict=verdict, metrics=metrics,
                                       reason="", now_ms=now_ms())
        lab.store.note_outcome(device_id, infra_error=False)
    elif fin.outcome == d.Outcome.ERROR:
        run = fail_attempt(lab, att, fin.reason or "the agent reported an error", fin)
    else:
        status = d.Status.CANCELLED if fin.outcome == d.Outcome.CANCELLED else d.Status.ERROR
        reason = fin.reason or f"the device {fin.outcome.value} the task"
        if fin.outcome == d.Outcome.REFUSED:
            reason = f"refused by the device: {fin.reason}"
        run = lab.store.finish_attempt(fin, task_status=status, verdict=None, metrics={}, reason=reason,
                                       now_ms=now_ms())
    health_run_ended(lab, run)
    return run, True
