"""What happens when an agent enrols, connects, heartbeats, reports progress, uploads results and finishes an
attempt. Each function takes the parts of the lab it uses and runs off the event loop (in a worker thread)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from labd.auth import hash_token, new_token
from labd.clock import Clock
from labd.results.attempts import finish_metrics, grade
from labd.scheduler.health import DeviceHealth
from labd.scheduler.leases import Leases
from labd.sessions import AgentSession
from labd.state import AuditEntry, Store
from labd.state.base import RunEnd
from labd.state.batches import SignedBatch
from labd.telemetry import LabMetrics
from pilotlab import domain as d
from pilotlab import messages as msg
from pilotlab.attempt_metrics import parse_kind
from pilotlab.compliance import Reported
from pilotlab.genai import GENERATIVE_KINDS
from pilotlab.names import check_capabilities, check_device

MAX_BATCH_SEQ = 1_000_000  # no attempt sends more batches than this; a seq beyond it is refused
SAMPLE_KINDS = ("latency", "prediction", "perf-prediction", "audit-same", "audit-varied", "conformance",
                "conformance-peak", "power", *GENERATIVE_KINDS)
BATCH_COLUMNS = ("index", "sample_index", "t_ns", "value", "aux", "fvalue")
OPTIONAL_COLUMNS = ("aux", "fvalue")  # may be left empty: zeros

log = logging.getLogger("labd.agents")


def enrol(store: Store, clock: Clock, name: str, device_class: str, region: str, tags: dict[str, str],
          caps: d.Capabilities, public_key: bytes, who: d.Principal | None = None) -> tuple[d.Device, str]:
    """Create the device with its credential, issued with who's (agent) token, and the device.enrol audit entry: one
    write, so revoking that token always refuses the credential too. Returns the device and the credential."""
    if not name:
        raise d.Invalid("the device needs a --name")
    if device_class not in d.DEVICE_CLASSES:
        raise d.Invalid(f"unknown device class {device_class!r}; use one of {', '.join(d.DEVICE_CLASSES)}")
    check_device(name, region, tags)
    check_capabilities(caps)
    token, now = new_token(d.Role.DEVICE), clock.now_ms()
    audit = AuditEntry.by(who, "device.enrol", name, f"class {device_class}, region {region or 'none'}", now)
    dev = store.enrol_device(name, device_class, region, tags, caps, public_key, now, credential_hash=hash_token(token),
                             issued_by=who.token_id if who else None, audit=audit)
    return dev, token


def own_attempt(store: Store, device_id: str, attempt_id: str) -> d.Attempt:
    """The attempt, when it belongs to this device; an agent can only act as its own device."""
    att = store.get_attempt(attempt_id)
    if att.device_id != device_id:
        raise d.Denied(f"attempt {attempt_id} was not assigned to this device")
    return att


def session_opened(store: Store, leases: Leases, clock: Clock, device_id: str, caps: d.Capabilities,
                   still_running: set[str]) -> list[str]:
    """Mark the device online; attempts the lab thinks run there but the agent no longer has are requeued.
    Returns the run ids that changed. Capabilities beyond pilotlab.names' bounds are refused (Invalid)."""
    check_capabilities(caps)
    store.update_device(device_id, status="online", now_ms=clock.now_ms(), capabilities=caps)
    changed = []
    for att in store.running_attempts(device_id):
        if att.id not in still_running:
            run = leases.fail(att, "the agent restarted without this attempt (agent lost)", device_lost=True)
            changed.append(run.id)
    return changed


def session_closed(store: Store, clock: Clock, device_id: str) -> None:
    store.update_device(device_id, status="offline", now_ms=clock.now_ms())


def heartbeat(leases: Leases, session: AgentSession, running: Sequence[str]) -> None:
    """Renew the leases of what the device runs; its last-seen time is written in batches by the dispatcher."""
    leases.renew(session, running)


def progress(store: Store, device_id: str, p: msg.Progress) -> str:
    """Record the live phase of one of the device's attempts; returns its run id."""
    own_attempt(store, device_id, p.attempt_id)
    return store.set_progress(p.attempt_id, p.phase, p.fraction)


@functools.lru_cache(maxsize=4096)
def _device_key(public_key: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public_key)


def check_signature(public_key: bytes, batch: SignedBatch) -> None:
    """A device that registered a key must sign every batch with it; a forged batch is refused. Checked once, on
    the bytes the lab keeps."""
    if not public_key:
        return
    try:
        _device_key(public_key).verify(batch.signature, batch.payload)
    except (InvalidSignature, ValueError):
        raise d.Denied(f"result batch {batch.seq} of attempt {batch.attempt_id} does not carry this device's "
                       "signature") from None


class BatchRefused(d.Invalid):
    """A result batch the lab will not store (late, out of its window, malformed). The session goes on: the batch
    is logged and dropped, never acknowledged, and changes nothing stored."""


def check_shape(attempt_id: str, seq: int, lengths: dict[str, int]) -> None:
    """The batch's seq lies in the expected window and its parallel arrays (index, sample_index, t_ns, value, and
    aux and fvalue unless empty) have one length."""
    if not 0 <= seq <= MAX_BATCH_SEQ:
        raise BatchRefused(f"result batch seq {seq} of attempt {attempt_id} is outside 0..{MAX_BATCH_SEQ}")
    shown = {k: n for k, n in lengths.items() if n or k not in OPTIONAL_COLUMNS}
    if len(set(shown.values())) > 1:
        listed = ", ".join(f"{k}={n}" for k, n in shown.items())
        raise BatchRefused(f"result batch {seq} of attempt {attempt_id} has arrays of unequal lengths ({listed})")


def check_batch_shape(batch: d.ResultBatch) -> None:
    check_shape(batch.attempt_id, batch.seq, {c: len(getattr(batch, c)) for c in BATCH_COLUMNS})


def ingest(store: Store, metrics: LabMetrics, clock: Clock, device_id: str, batch: d.ResultBatch | SignedBatch,
           public_key: bytes = b"") -> bool:
    """Store a result batch of one of the device's attempts; False when it was stored before (a resend).
    Denied for another device's attempt or a forged signature; BatchRefused for a seq outside the window,
    arrays of unequal lengths, or a new batch for an attempt that is no longer running. A SignedBatch comes with
    its shape checked (check_shape) by the caller, which built it from the wire. ingest_many of one."""
    if isinstance(batch, d.ResultBatch):
        check_batch_shape(batch)
        batch = SignedBatch.from_domain(batch)
    (outcome,) = ingest_many(store, metrics, clock, [(device_id, public_key, batch)])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def ingest_many(store: Store, metrics: LabMetrics, clock: Clock,
                uploads: Sequence[tuple[str, bytes, SignedBatch]]) -> list[bool | d.LabError]:
    """ingest for a group of result batches (device id, its public key, the batch), from any sessions: each checked
    as ingest checks it, against its attempt's owner and status read for the whole group in one statement; those
    admitted stored together (Store.add_signed_batches: one blob append, one transaction). For each, in order: True
    when stored now, False for a resend, or the LabError that refused it. An error of the store itself (a full
    disk) raises: then none of the group was stored."""
    owners = store.attempt_owners({b.attempt_id for _, _, b in uploads})
    out: list[bool | d.LabError] = []
    for device_id, public_key, batch in uploads:
        try:
            out.append(_admit(store, owners, device_id, public_key, batch))
        except d.LabError as e:
            out.append(e)
    admitted = [i for i, o in enumerate(out) if o is True]
    stored = store.add_signed_batches([uploads[i][2] for i in admitted], clock.now_ms())
    for i, new in zip(admitted, stored, strict=True):
        out[i] = new
        if new:
            batch = uploads[i][2]
            metrics.results_ingested.labels(parse_kind(batch.kind)[0]).inc(batch.n)
    for o in out:
        if o is False:
            metrics.batches_duplicate.inc()  # a resend: changes nothing
    return out


def _admit(store: Store, owners: dict[str, tuple[str, d.Status]], device_id: str, public_key: bytes,
           batch: SignedBatch) -> bool:
    """Whether to store the batch (True), or it is a resend of one stored while its attempt ran (False); raises the
    LabError that refuses it."""
    found = owners.get(batch.attempt_id)
    if found is None:
        raise d.NotFound(f"no attempt {batch.attempt_id}")
    owner, status = found
    if owner != device_id:
        raise d.Denied(f"attempt {batch.attempt_id} was not assigned to this device")
    if not 0 <= batch.seq <= MAX_BATCH_SEQ:
        check_shape(batch.attempt_id, batch.seq, {})
    if status != d.Status.RUNNING:
        if batch.seq in store.batch_seqs(batch.attempt_id):
            return False
        raise BatchRefused(f"result batch {batch.seq} of attempt {batch.attempt_id} came after the attempt "
                           f"ended ({status.value}); results of an ended attempt are closed")
    check_signature(public_key, batch)
    if parse_kind(batch.kind)[0] not in SAMPLE_KINDS:
        raise BatchRefused(f"result batch kind {batch.kind!r} is not one of {', '.join(SAMPLE_KINDS)}")
    return True


def finish(store: Store, leases: Leases, health: DeviceHealth, clock: Clock, device_id: str,
           fin: d.AttemptFinish) -> tuple[d.Run | None, bool]:
    """Close an attempt. Returns (changed run or None, whether to acknowledge). Not acknowledged while
    result batches are missing: the agent's outbox sends them again. finish_attempt, with the run read whole."""
    run, ack = _finish(store, leases, health, clock, device_id, fin)
    return (store.get_run(run.id) if isinstance(run, RunEnd) else run), ack


def finish_attempt(store: Store, leases: Leases, health: DeviceHealth, clock: Clock, device_id: str,
                   fin: d.AttemptFinish) -> tuple[str | None, bool]:
    """finish for a session: returns (id of the changed run or None, whether to acknowledge), without reading the
    run back (a session only tells the run's watchers)."""
    run, ack = _finish(store, leases, health, clock, device_id, fin)
    return (run.id if run is not None else None), ack


def _finish(store: Store, leases: Leases, health: DeviceHealth, clock: Clock, device_id: str,
            fin: d.AttemptFinish) -> tuple[d.Run | RunEnd | None, bool]:
    """Close an attempt. Returns (the changed run, whole or what changed of it, or None; whether to acknowledge)."""
    # One read of what the finish needs (Store.read_finish): the attempt, and for a graded one its task, its result
    # batches' rows (the missing-batch check and the samples alike) and the artifacts' paths, on one connection.
    got = store.read_finish(fin.attempt_id, grading=fin.outcome == d.Outcome.OK)
    att = got.attempt
    if att.device_id != device_id:  # as own_attempt
        raise d.Denied(f"attempt {fin.attempt_id} was not assigned to this device")
    if att.status != d.Status.RUNNING:
        return None, True
    if fault := leases.storage.fault_of(att.id):  # ended by a full store, not recorded yet: it stays that way
        return leases.lab_fault(att, fault, fin), True
    if fin.outcome == d.Outcome.ERROR:
        run = leases.fail(att, fin.reason or "the agent reported an error", fin)
        health.run_ended(run)
        return run, True
    if fin.outcome == d.Outcome.OK:
        if not 0 <= fin.batches <= MAX_BATCH_SEQ + 1:
            raise d.Invalid(f"the finish of attempt {att.id} reports {fin.batches} result batches; an attempt sends "
                            f"0 to {MAX_BATCH_SEQ + 1}")
        # Counted, never listed: the batches 0 .. fin.batches - 1 the lab has not stored.
        missing = fin.batches - sum(1 for seq in got.batch_seqs() if 0 <= seq < fin.batches)
        if missing:
            log.warning("attempt %s finished with %d result batches missing; waiting", att.id, missing)
            return None, False
        task = got.task()
        assert task.spec is not None, "a stored task always has its spec"
        reported = Reported(fin.effective_settings, fin.execution_provider, fin.observations)
        metrics = finish_metrics(got, task.spec, reported)
        verdict, _ = grade(metrics, task.spec)
        # Store.close_attempt: finish_attempt without reading the run back (labd.state.sql.runs).
        end: RunEnd = store.close_attempt(
            fin, task_status=d.Status.COMPLETED, verdict=verdict, metrics=metrics, reason="", now_ms=clock.now_ms())
        health.after_attempt(device_id, infra_error=False, known_errors=got.infra_errors())
    else:
        status = d.Status.CANCELLED if fin.outcome == d.Outcome.CANCELLED else d.Status.ERROR
        reason = fin.reason or f"the device {fin.outcome.value} the task"
        if fin.outcome == d.Outcome.REFUSED:
            reason = f"refused by the device: {fin.reason}"
        end = store.close_attempt(
            fin, task_status=status, verdict=None, metrics={}, reason=reason, now_ms=clock.now_ms())
    if end.kind == "health" and end.status.terminal:  # DeviceHealth.run_ended acts on nothing else
        health.run_ended(store.get_run(end.id))
    return end, True
