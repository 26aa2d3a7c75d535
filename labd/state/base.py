"""The store contract: what every labd state backend MUST do, independent of the database underneath."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from labd.state.batches import SignedBatch
from pilotlab import domain as d

if TYPE_CHECKING:
    from labd.state.sql.cluster import Leadership


@dataclass(frozen=True)
class TokenRecord:
    """A token as stored (never its secret). Times are Unix ms; 0 means never (expires, revoked) or no limit
    (max_uses). revoked_ms of a device credential is its own revocation or that of the agent token it was issued
    with (issued_by), whichever came first."""

    id: str
    role: d.Role
    device_id: str | None
    revoked: bool = False
    created_ms: int = 0
    expires_ms: int = 0
    revoked_ms: int = 0
    uses: int = 0
    max_uses: int = 0
    issued_by: str | None = None
    device_name: str = ""


class RunEnd(NamedTuple):
    """What a finish changed of a run, without reading the run back (Store.close_attempt): enough to tell its
    watchers (id) and to act on a health check's end (kind, status, verdict)."""

    id: str
    kind: str
    status: d.Status
    verdict: d.Verdict | None
    reason: str
    finished_ms: int


class FinishRead:
    """What finishing an attempt reads of the store (Store.read_finish): the attempt, and, for an attempt being
    graded, its task, the sequence numbers of its result batches, their samples and the lab's artifacts the grading
    joins. This default reads each when asked, with the Store's own methods; a backend may read them at once (one
    connection) and answer from what it read. Each raises what the Store method it stands for raises (NotFound,
    BlobMissing, ...), and only when asked."""

    def __init__(self, store: Store, attempt: d.Attempt) -> None:
        self.store = store
        self.attempt = attempt

    def task(self) -> d.Task:
        """Store.get_task of the attempt's task."""
        return self.store.get_task(self.attempt.task_id)

    def batch_seqs(self) -> set[int]:
        """Store.batch_seqs of the attempt."""
        return self.store.batch_seqs(self.attempt.id)

    def all_samples(self) -> dict[str, dict[str, np.ndarray]]:
        """Store.all_samples of the attempt."""
        return self.store.all_samples(self.attempt.id)

    def artifact_path(self, sha256: str) -> str:
        """Store.get_artifact(sha256).path."""
        return self.store.get_artifact(sha256).path

    def infra_errors(self) -> int | None:
        """The attempt's device's count of consecutive infrastructure errors as read with the attempt, or None
        when not read (then only Store.note_outcome knows it)."""
        return None


SYSTEM_ACTOR = "labd"  # the actor of what labd decides itself (a health quarantine, a health-check run)
SYSTEM_ROLE = "system"


@dataclass(frozen=True)
class AuditEntry:
    """One line of the append-only audit log: who (actor: a token id, a device's name for a device credential,
    `labd` for the lab's own decisions) with what role did what (action: `token.create`, `run.cancel`,
    `device.quarantine`…) to what (target: a token id, run id or device name), when (Unix ms), and a short
    detail. seq is the store's order of appending (0 until appended)."""

    time_ms: int
    actor: str
    role: str
    action: str
    target: str
    detail: str = ""
    seq: int = 0

    @classmethod
    def by(cls, who: d.Principal | None, action: str, target: str, detail: str, now_ms: int,
           device_name: str = "") -> AuditEntry:
        """What `who` did (None: labd itself); a device credential is named by its device's name when given."""
        if who is None:
            return cls(now_ms, SYSTEM_ACTOR, SYSTEM_ROLE, action, target, detail)
        actor = device_name if who.device_id and device_name else who.token_id
        return cls(now_ms, actor, who.role.value, action, target, detail)


class Store(ABC):
    """Durable lab state. Every method is one transaction; a method that returns has committed. A method that takes
    `audit` MUST append that entry to the audit log in the same transaction as its change, so an action and its
    audit entry are stored together or not at all."""

    # --- tokens -------------------------------------------------------------------------------------------
    @abstractmethod
    def create_token(self, role: d.Role, token_hash: str, device_id: str | None = None, *, expires_ms: int = 0,
                     max_uses: int = 0, issued_by: str | None = None, audit: AuditEntry | None = None) -> str:
        """MUST store only the hash and return a new token id (audit's target becomes that id)."""

    @abstractmethod
    def find_token(self, token_hash: str) -> TokenRecord | None:
        """MUST return the token with this hash, or None; read now (no cache), with its issuer's revocation."""

    @abstractmethod
    def find_tokens(self, token_hashes: list[str]) -> dict[str, TokenRecord]:
        """find_token for many hashes at once: the records found, by hash (unknown hashes are absent)."""

    @abstractmethod
    def list_tokens(self) -> list[TokenRecord]:
        """Every token, newest first, device credentials with their device's name."""

    @abstractmethod
    def revoke_token(self, token_id: str, now_ms: int, audit: AuditEntry | None = None) -> TokenRecord:
        """MUST mark the token revoked at now_ms (a second revocation keeps the first time); NotFound if unknown."""

    @abstractmethod
    def use_token(self, token_id: str, delta: int = 1) -> int:
        """MUST atomically add delta to the token's uses, refusing (Unauthenticated) to go past max_uses even with
        concurrent callers; returns the new count."""

    # --- devices ------------------------------------------------------------------------------------------
    @abstractmethod
    def enrol_device(self, name: str, device_class: str, region: str, tags: dict[str, str],
                     capabilities: d.Capabilities, public_key: bytes, now_ms: int, *, credential_hash: str = "",
                     issued_by: str | None = None, audit: AuditEntry | None = None) -> d.Device:
        """MUST create the device and, given credential_hash, its device credential issued with the token issued_by,
        in one transaction (a credential never exists without its issuer); MUST raise Conflict when the name is
        taken, storing nothing."""

    @abstractmethod
    def get_device(self, device_id: str) -> d.Device:
        """MUST raise NotFound for an unknown id."""

    @abstractmethod
    def get_device_by_name(self, name: str) -> d.Device:
        """MUST raise NotFound for an unknown name."""

    @abstractmethod
    def list_devices(self) -> list[d.Device]:
        """All devices ordered by name."""

    @abstractmethod
    def update_device(self, device_id: str, *, status: str, now_ms: int,
                      capabilities: d.Capabilities | None = None) -> None:
        """MUST set status and last-seen time, and capabilities when given."""

    # --- suites and artifacts -----------------------------------------------------------------------------
    @abstractmethod
    def put_suite(self, suite: d.SuiteRecord) -> None:
        """MUST be idempotent; MUST raise Conflict for the same id and version with another digest."""

    @abstractmethod
    def get_suite(self, suite_id: str, version: str | None = None) -> d.SuiteRecord:
        """The given version, or the highest semantic version when None; MUST raise NotFound."""

    @abstractmethod
    def list_suites(self) -> list[d.SuiteRecord]:
        """All suite versions ordered by id and version."""

    @abstractmethod
    def put_artifact(self, artifact: d.ArtifactRecord) -> None:
        """MUST be idempotent on sha256."""

    @abstractmethod
    def get_artifact(self, sha256: str) -> d.ArtifactRecord:
        """MUST raise NotFound for an unknown digest."""

    # --- runs and tasks -----------------------------------------------------------------------------------
    @abstractmethod
    def create_run(self, run: d.Run, audit: AuditEntry | None = None) -> d.Run:
        """MUST store the run and all its tasks (status queued) atomically."""

    @abstractmethod
    def get_run(self, run_id: str) -> d.Run:
        """The run with its tasks and each task's attempt history; MUST raise NotFound."""

    @abstractmethod
    def list_runs(self, limit: int = 100) -> list[d.Run]:
        """Newest first, with tasks."""

    @abstractmethod
    def cancel_run(self, run_id: str, reason: str, now_ms: int,
                   audit: AuditEntry | None = None) -> tuple[d.Run, list[d.Attempt]]:
        """MUST cancel every non-terminal task and the run; returns the attempts that were running."""

    @abstractmethod
    def claim_next_task(self, device_id: str, now_ms: int, lease_ms: int) -> tuple[d.Task, d.Attempt] | None:
        """MUST atomically take the queued task for this device with the highest priority, then the oldest,
        create its next attempt (running, leased until now+lease), and mark task and run running. Two
        concurrent callers MUST never claim the same task."""

    @abstractmethod
    def set_device_state(self, device_id: str, state: str, audit: AuditEntry | None = None) -> d.Device:
        """MUST set active | draining | quarantined; claims MUST then skip a draining device entirely and give a
        quarantined one health-check tasks only; back to active resets the infrastructure-error count."""

    @abstractmethod
    def note_outcome(self, device_id: str, infra_error: bool) -> int:
        """Counts consecutive infrastructure errors of a device (a success resets it); returns the count."""

    @abstractmethod
    def expire_queued(self, now_ms: int) -> list[str]:
        """MUST end in error every queued task whose queue deadline passed; returns the changed run ids."""

    @abstractmethod
    def move_task(self, task_id: str, device_id: str) -> None:
        """Re-targets a (queued) task to another device."""

    @abstractmethod
    def queued_devices(self) -> set[str]:
        """Ids of the devices that have at least one queued task (one cheap query per dispatch pass)."""

    @abstractmethod
    def touch_devices(self, device_ids: list[str], now_ms: int) -> None:
        """Marks connected devices seen now, in one transaction (heartbeats are batched, not one write each)."""

    @abstractmethod
    def get_attempt(self, attempt_id: str) -> d.Attempt:
        """MUST raise NotFound."""

    def attempt_owners(self, attempt_ids: Collection[str]) -> dict[str, tuple[str, d.Status]]:
        """(device id, status) of each attempt that exists (absent ones are left out), read now: what a group of
        result batches is checked against, so a backend should read just these columns, in one statement."""
        found: dict[str, tuple[str, d.Status]] = {}
        for a in attempt_ids:
            with suppress(d.NotFound):
                att = self.get_attempt(a)
                found[a] = (att.device_id, att.status)
        return found

    def read_finish(self, attempt_id: str, grading: bool) -> FinishRead:
        """What finishing an attempt reads (FinishRead): MUST raise NotFound for no such attempt. grading: the
        caller will grade it (read its task, batches and artifacts); a backend should then read them with the
        attempt, in one connection, each result batch's row once."""
        return FinishRead(self, self.get_attempt(attempt_id))

    @abstractmethod
    def running_attempts(self, device_id: str | None = None) -> list[d.Attempt]:
        """Attempts still running, for one device or all."""

    @abstractmethod
    def renew_leases(self, device_id: str, attempt_ids: list[str], until_ms: int) -> None:
        """MUST extend the lease of those running attempts of this device."""

    @abstractmethod
    def set_progress(self, attempt_id: str, phase: str, fraction: float) -> str:
        """Records the task's live phase; returns the run id."""

    @abstractmethod
    def get_task(self, task_id: str) -> d.Task:
        """MUST raise NotFound."""

    # --- results ------------------------------------------------------------------------------------------
    @abstractmethod
    def add_result_batch(self, batch: d.ResultBatch, now_ms: int) -> bool:
        """MUST be idempotent on (attempt_id, seq): True when stored now, False for a duplicate, which
        MUST store nothing."""

    @abstractmethod
    def add_signed_batch(self, batch: SignedBatch, now_ms: int) -> bool:
        """A batch as its device signed it: MUST keep batch.payload whole and unchanged (a blob addressed by
        batch.sha256, or inline) and its index (attempt, seq, kind, n, signature); idempotent on (attempt_id, seq)
        exactly as add_result_batch, which is this with the batch's signed bytes built from its arrays."""

    def add_signed_batches(self, batches: Sequence[SignedBatch], now_ms: int) -> list[bool]:
        """add_signed_batch for each batch (of any attempts), in order: for each, True when stored now, False for a
        duplicate (stored before, or earlier in this call). All are stored when it returns; a backend should make
        it one durable write for the group (the blobs in one append, the index rows in one transaction)."""
        return [self.add_signed_batch(b, now_ms) for b in batches]

    @abstractmethod
    def batch_seqs(self, attempt_id: str) -> set[int]:
        """Sequence numbers received for an attempt."""

    @abstractmethod
    def samples(self, attempt_id: str, kind: str) -> dict[str, np.ndarray]:
        """Raw samples of one kind: int64 arrays index, sample_index, t_ns, value, aux, seq (the batch each
        came in) and float64 fvalue, ordered by index."""

    def all_samples(self, attempt_id: str) -> dict[str, dict[str, np.ndarray]]:
        """samples() of every kind of an attempt, by kind (a backend may read them at once)."""
        return {kind: self.samples(attempt_id, kind) for kind in self.sample_kinds(attempt_id)}

    @abstractmethod
    def batches(self, attempt_id: str) -> list[tuple[int, str, int, bytes]]:
        """(seq, kind, sample count, device signature) of every result batch of an attempt, by seq."""

    @abstractmethod
    def sample_kinds(self, attempt_id: str) -> list[str]:
        """The kinds of raw samples stored for an attempt, sorted."""

    @abstractmethod
    def finish_attempt(self, finish: d.AttemptFinish, *, task_status: d.Status, verdict: d.Verdict | None,
                       metrics: dict[str, Any], reason: str, now_ms: int, requeue: bool = False) -> d.Run:
        """MUST close the attempt with its outcome; set the task's status, verdict, metrics and reason (or put
        it back in the queue when requeue); recompute the run's status and verdict; return the run."""

    @abstractmethod
    def close_attempt(self, finish: d.AttemptFinish, *, task_status: d.Status, verdict: d.Verdict | None,
                      metrics: dict[str, Any], reason: str, now_ms: int, requeue: bool = False) -> RunEnd:
        """MUST do what finish_attempt does, in one transaction, and return only what changed of the run
        (RunEnd: id, kind, status, verdict, reason, finished_ms), without reading the run back."""

    # --- evidence ---------------------------------------------------------------------------------------
    @abstractmethod
    def latest_report(self, run_id: str) -> d.ReportRecord | None:
        """The newest report issued for a run, or None."""

    @abstractmethod
    def append_report(self, report: d.ReportRecord, leaf_hash: str, now_ms: int) -> int:
        """MUST append the report's leaf to the evidence log at the next index (0, 1, … without gaps, even with
        concurrent writers) and store the report, atomically; returns the leaf index."""

    @abstractmethod
    def set_report_bundle(self, report_id: str, bundle: bytes) -> None:
        """Stores the signed bundle of an appended report."""

    @abstractmethod
    def log_leaves(self, size: int | None = None) -> list[str]:
        """Leaf hashes (hex) of the evidence log in index order, the first `size` of them when given."""

    @abstractmethod
    def count_tasks(self) -> dict[str, int]:
        """Number of tasks per status."""

    # --- audit log --------------------------------------------------------------------------------------
    @abstractmethod
    def append_audit(self, entry: AuditEntry) -> None:
        """MUST append the entry (its seq is the store's): the audit log is append-only, and no method of the store
        updates or deletes an entry."""

    @abstractmethod
    def list_audit(self, target: str | None = None, limit: int = 1000, *, since_ms: int = 0,
                   until_ms: int = 0) -> list[AuditEntry]:
        """MUST return at most limit entries, newest first (by seq, which keeps appending order), with their seq;
        only those about target when given, and only from since_ms up to until_ms (inclusive; 0: no bound)."""

    # --- several labd replicas on one database -------------------------------------------------------------------

    @property
    @abstractmethod
    def replicated(self) -> bool:
        """True when several labd may share this database (PostgreSQL); False when it serves one (SQLite)."""

    @abstractmethod
    def namespace(self) -> str:
        """MUST name this database (server, database and schema, or file) the same for every labd on it and
        differently from any other database: the prefix of its replicas' lock keys and wake-up hint subjects."""

    @abstractmethod
    def exclusive(self, name: str) -> AbstractContextManager[None]:
        """MUST hold `name` against every labd on this database (and every thread of this one) until the block
        ends, waiting its turn; a holder that dies MUST release it (PostgreSQL: a session advisory lock)."""

    @abstractmethod
    def leadership(self, name: str) -> Leadership:
        """The single-writer duty `name`: its held() says whether this labd holds it now, taking it when free."""

    @abstractmethod
    def claim_meta(self, key: str, value: str) -> str:
        """MUST store value under key unless a value is stored already, and return the stored one (first wins)."""

    @abstractmethod
    def cancelled_among(self, attempt_ids: list[str]) -> list[tuple[str, str]]:
        """(attempt id, reason) of those of the given attempts that were cancelled: a replica's agents may run
        attempts another replica cancelled."""

    @abstractmethod
    def mark_stale_offline(self, before_ms: int) -> int:
        """Mark offline the devices shown online that no labd has seen since before_ms (their replica vanished);
        returns how many."""
