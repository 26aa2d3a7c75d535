"""SQLModel tables of labd's state; the same definitions serve SQLite and PostgreSQL."""

# These are the schema at the head migration (labd/state/migrations/versions/): change them only together with a
# new revision (python -m labd.state.migrate revision URL -m MSG); tests/labd/test_migrations.py checks they agree.

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel


def _big(**kw: object) -> object:
    return Field(sa_type=BigInteger, **kw)  # type: ignore[arg-type]


class TokenRow(SQLModel, table=True):
    __tablename__ = "tokens"
    id: str = Field(primary_key=True)
    hash: str = Field(index=True, unique=True)
    role: str
    device_id: str | None = Field(default=None, index=True)
    created_ms: int = _big(default=0)  # type: ignore[assignment]
    revoked: bool = False
    # Lifecycle (migration 0004): 0 means never / no limit. A device credential records the agent token it was
    # issued with (issued_by), so revoking that token refuses the credential too.
    expires_ms: int = _big(default=0, sa_column_kwargs={"server_default": "0"})  # type: ignore[assignment]
    revoked_ms: int = _big(default=0, sa_column_kwargs={"server_default": "0"})  # type: ignore[assignment]
    max_uses: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    uses: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    issued_by: str | None = Field(default=None, index=True)


class DeviceRow(SQLModel, table=True):
    __tablename__ = "devices"
    id: str = Field(primary_key=True)
    name: str = Field(index=True, unique=True)
    device_class: str
    region: str = ""
    tags_json: str = Field(default="{}", sa_type=Text)
    capabilities_json: str = Field(default="{}", sa_type=Text)
    status: str = "offline"
    state: str = "active"  # active | draining | quarantined (admin or health decisions; status is connectivity)
    infra_errors: int = 0  # consecutive infrastructure errors
    last_seen_ms: int = _big(default=0)  # type: ignore[assignment]
    enrolled_ms: int = _big(default=0)  # type: ignore[assignment]
    public_key: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False, default=b""))


class SuiteRow(SQLModel, table=True):
    __tablename__ = "suites"
    id: str = Field(primary_key=True)
    version: str = Field(primary_key=True)
    title: str = ""
    digest: str
    suite_json: str = Field(sa_type=Text)


class ArtifactRow(SQLModel, table=True):
    __tablename__ = "artifacts"
    sha256: str = Field(primary_key=True)
    size: int = _big()  # type: ignore[assignment]
    name: str
    kind: str
    path: str


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    id: str = Field(primary_key=True)
    suite_id: str
    suite_version: str
    suite_digest: str
    status: str = Field(index=True)
    verdict: str | None = None
    priority: int = 0
    submitted_ms: int = _big(default=0, index=True)  # type: ignore[assignment]
    finished_ms: int = _big(default=0)  # type: ignore[assignment]
    reason: str = ""
    submitted_by: str = ""
    kind: str = "test"  # test | health
    select_expr: str = ""
    any_device: bool = False
    queue_timeout_ms: int = _big(default=0)  # type: ignore[assignment]


class TaskRow(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_queue", "device_id", "status", "priority", "queue_ns"),
        Index("ix_tasks_expiry", "status", "queue_deadline_ms"),  # expire_queued (migration 0002)
    )
    id: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    ordinal: int = 0
    name: str
    device_id: str
    status: str = Field(index=True)
    verdict: str | None = None
    attempts: int = 0
    spec_json: str = Field(default="{}", sa_type=Text)
    metrics_json: str = Field(default="{}", sa_type=Text)
    reason: str = ""
    phase: str = ""
    progress: float = 0.0
    priority: int = 0
    queued_ms: int = _big(default=0)  # type: ignore[assignment]
    queue_ns: int = _big(default=0)  # type: ignore[assignment]
    queue_deadline_ms: int = _big(default=0)  # type: ignore[assignment]
    health: bool = False  # a health-check task: runs on a quarantined device


class AttemptRow(SQLModel, table=True):
    __tablename__ = "attempts"
    id: str = Field(primary_key=True)
    task_id: str = Field(index=True)
    number: int
    device_id: str = Field(index=True)
    status: str = Field(index=True)
    outcome: str = ""
    reason: str = ""
    started_ms: int = _big(default=0)  # type: ignore[assignment]
    finished_ms: int = _big(default=0)  # type: ignore[assignment]
    lease_expires_ms: int = _big(default=0)  # type: ignore[assignment]
    batches_expected: int = -1
    effective_settings_json: str = Field(default="{}", sa_type=Text)
    environment_json: str = Field(default="{}", sa_type=Text)
    execution_provider: str = ""
    providers_used_json: str = Field(default="[]", sa_type=Text)
    phases_json: str = Field(default="{}", sa_type=Text)
    observations_json: str = Field(default="{}", sa_type=Text, sa_column_kwargs={"server_default": "{}"})


class ResultBatchRow(SQLModel, table=True):
    __tablename__ = "result_batches"
    attempt_id: str = Field(primary_key=True)
    seq: int = _big(primary_key=True)  # type: ignore[assignment]
    kind: str
    n: int
    received_ms: int = _big(default=0)  # type: ignore[assignment]
    signature: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False, default=b""))
    # The sha256 of the blob holding the batch exactly as the device signed it (labd.state.batches; revision 0006).
    # '' for a batch stored inline in data: those written before 0006, or by a store opened without blobs.
    sha256: str = Field(default="", sa_column_kwargs={"server_default": ""})
    # Where the blob lies when the sha256 alone does not find it: a pack file's record, packs/NAME.pack:OFFSET:LENGTH
    # (labd.blobs.FsBlobs, revision 0008); '' for a blob of its own (a file, an S3 object) and for inline rows.
    blob_at: str = Field(default="", sa_column_kwargs={"server_default": ""})
    # Inline batches only: index, sample_index, t_ns, value, aux as little-endian int64, then fvalue as float64
    # (n values each); empty when the batch is a blob.
    data: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False, default=b""))


class ReportRow(SQLModel, table=True):
    __tablename__ = "reports"
    id: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    digest: str
    issued_ms: int = _big(default=0)  # type: ignore[assignment]
    replaces: str | None = None
    log_index: int = _big(default=0)  # type: ignore[assignment]
    bundle: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False, default=b""))


class LogRow(SQLModel, table=True):
    """The append-only evidence log: one leaf per issued report, indices 0..n-1 without gaps."""

    __tablename__ = "evidence_log"
    idx: int = Field(sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})  # type: ignore[call-overload]
    report_id: str = Field(index=True, unique=True)
    leaf_hash: str
    appended_ms: int = _big(default=0)  # type: ignore[assignment]


class AuditRow(SQLModel, table=True):
    """The append-only audit log (migration 0005): who did what to which token, run, device or report, and when.
    Rows are only ever inserted; database triggers refuse UPDATE and DELETE."""

    __tablename__ = "audit_log"
    seq: int | None = Field(default=None, primary_key=True)  # appending order
    time_ms: int = _big(default=0)  # type: ignore[assignment]
    actor: str
    role: str
    action: str
    target: str = Field(index=True)
    detail: str = Field(default="", sa_type=Text)


class LabMetaRow(SQLModel, table=True):
    """Facts about the lab every labd replica on this database must agree on (migration 0007), one row each: the
    public key its reports are signed with (`signing_key`)."""

    __tablename__ = "lab_meta"
    key: str = Field(primary_key=True)
    value: str = Field(default="", sa_type=Text)
