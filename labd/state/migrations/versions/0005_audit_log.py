"""The append-only audit log: who (a token id, a device's name or labd) with what role did what to which token,
run, device or report, and when.

Revision ID: 0005_audit_log
Revises: 0004_token_lifecycle
Create Date: 2026-12-01

A new table, empty after the upgrade: actions taken before this revision were not recorded. Triggers refuse
UPDATE and DELETE on it (SQLite and PostgreSQL alike), so not even a stray statement can rewrite the log; a later
revision that must rebuild the table (a batch_alter_table on SQLite) has to create them again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005_audit_log"
down_revision: str | None = "0004_token_lifecycle"
branch_labels: str | None = None
depends_on: str | None = None

REFUSAL = "the audit log is append-only"


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_audit_log_target", "audit_log", ["target"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text(f"""CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                               BEGIN RAISE EXCEPTION '{REFUSAL}'; END $$"""))
        op.execute(sa.text("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
                           "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"))
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(sa.text(f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                               f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"))


def downgrade() -> None:
    op.drop_table("audit_log")  # its index and triggers go with it
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text("DROP FUNCTION audit_log_append_only()"))
