"""Index tasks on (status, queue_deadline_ms): every dispatcher pass expires queued tasks past their deadline.

Revision ID: 0002_tasks_expiry_index
Revises: 0001_baseline
Create Date: 2026-01-02

SqlStore.expire_queued runs on each reap pass (labd/scheduler/dispatcher.py) with
`status = 'queued' AND queue_deadline_ms > 0 AND queue_deadline_ms < now`; with ix_tasks_status alone it reads
every queued task of the lab each time. This index makes it a range scan over the expired ones only.
"""

from __future__ import annotations

from alembic import op

revision: str = "0002_tasks_expiry_index"
down_revision: str | None = "0001_baseline"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.create_index("ix_tasks_expiry", ["status", "queue_deadline_ms"])


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index("ix_tasks_expiry")
