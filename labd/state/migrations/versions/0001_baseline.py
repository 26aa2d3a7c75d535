"""Baseline: the schema labd made with SQLModel's create_all before it had migrations (frozen copy of tables.py).

Revision ID: 0001_baseline
Revises:
Create Date: 2026-01-01

A database made by that release holds these tables and no alembic_version. Upgrading it runs this revision,
which (like that release's create_all) creates only what is missing, so its rows stay as they are; a fresh
database gets every table here. Never edit this file to change the schema: add a revision.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001_baseline"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _col(name: str, type_: sa.types.TypeEngine[Any], nullable: bool = False,
         primary_key: bool = False) -> sa.Column[Any]:
    return sa.Column(name, type_, nullable=nullable, primary_key=primary_key)


def _str(name: str, nullable: bool = False, primary_key: bool = False) -> sa.Column[Any]:
    return _col(name, sa.String(), nullable=nullable, primary_key=primary_key)


def baseline_metadata() -> sa.MetaData:
    """The tables, columns and indexes of labd/state/tables.py as the last release before migrations had them."""
    md = sa.MetaData()
    big, text, blob = sa.BigInteger(), sa.Text(), sa.LargeBinary()
    sa.Table("tokens", md, _str("id", primary_key=True), _str("hash"), _str("role"), _str("device_id", True),
             _col("created_ms", big), _col("revoked", sa.Boolean()),
             sa.Index("ix_tokens_hash", "hash", unique=True), sa.Index("ix_tokens_device_id", "device_id"))
    sa.Table("devices", md, _str("id", primary_key=True), _str("name"), _str("device_class"), _str("region"),
             _col("tags_json", text), _col("capabilities_json", text), _str("status"), _str("state"),
             _col("infra_errors", sa.Integer()), _col("last_seen_ms", big), _col("enrolled_ms", big),
             _col("public_key", blob), sa.Index("ix_devices_name", "name", unique=True))
    sa.Table("suites", md, _str("id", primary_key=True), _str("version", primary_key=True), _str("title"),
             _str("digest"), _col("suite_json", text))
    sa.Table("artifacts", md, _str("sha256", primary_key=True), _col("size", big), _str("name"), _str("kind"),
             _str("path"))
    sa.Table("runs", md, _str("id", primary_key=True), _str("suite_id"), _str("suite_version"),
             _str("suite_digest"), _str("status"), _str("verdict", True), _col("priority", sa.Integer()),
             _col("submitted_ms", big), _col("finished_ms", big), _str("reason"), _str("submitted_by"),
             _str("kind"), _str("select_expr"), _col("any_device", sa.Boolean()), _col("queue_timeout_ms", big),
             sa.Index("ix_runs_status", "status"), sa.Index("ix_runs_submitted_ms", "submitted_ms"))
    sa.Table("tasks", md, _str("id", primary_key=True), _str("run_id"), _col("ordinal", sa.Integer()),
             _str("name"), _str("device_id"), _str("status"), _str("verdict", True),
             _col("attempts", sa.Integer()), _col("spec_json", text), _col("metrics_json", text), _str("reason"),
             _str("phase"), _col("progress", sa.Float()), _col("priority", sa.Integer()), _col("queued_ms", big),
             _col("queue_ns", big), _col("queue_deadline_ms", big), _col("health", sa.Boolean()),
             sa.Index("ix_tasks_queue", "device_id", "status", "priority", "queue_ns"),
             sa.Index("ix_tasks_run_id", "run_id"), sa.Index("ix_tasks_status", "status"))
    sa.Table("attempts", md, _str("id", primary_key=True), _str("task_id"), _col("number", sa.Integer()),
             _str("device_id"), _str("status"), _str("outcome"), _str("reason"), _col("started_ms", big),
             _col("finished_ms", big), _col("lease_expires_ms", big), _col("batches_expected", sa.Integer()),
             _col("effective_settings_json", text), _col("environment_json", text), _str("execution_provider"),
             _col("providers_used_json", text), _col("phases_json", text),
             sa.Index("ix_attempts_task_id", "task_id"), sa.Index("ix_attempts_device_id", "device_id"),
             sa.Index("ix_attempts_status", "status"))
    sa.Table("result_batches", md, _str("attempt_id", primary_key=True), _col("seq", big, primary_key=True),
             _str("kind"), _col("n", sa.Integer()), _col("received_ms", big), _col("signature", blob),
             _col("data", blob))
    sa.Table("reports", md, _str("id", primary_key=True), _str("run_id"), _str("digest"), _col("issued_ms", big),
             _str("replaces", True), _col("log_index", big), _col("bundle", blob),
             sa.Index("ix_reports_run_id", "run_id"))
    sa.Table("evidence_log", md, sa.Column("idx", big, primary_key=True, autoincrement=False),
             _str("report_id"), _str("leaf_hash"), _col("appended_ms", big),
             sa.Index("ix_evidence_log_report_id", "report_id", unique=True))
    return md


def upgrade() -> None:
    # checkfirst: on a database the pre-migration release made, every table exists and nothing is touched.
    baseline_metadata().create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    baseline_metadata().drop_all(op.get_bind())
