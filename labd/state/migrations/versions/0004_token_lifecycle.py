"""Tokens get a lifecycle: an expiry, a use limit (agent tokens: devices enrolled), a revocation time, and, for a
device credential, the agent token it was issued with.

Revision ID: 0004_token_lifecycle
Revises: 0003_attempt_observations
Create Date: 2026-12-08

Rows written before this revision never expire, have no use limit and record no issuer; a token already revoked
(revoked = true) gets revoked_ms = created_ms, the best time known.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_token_lifecycle"
down_revision: str | None = "0003_attempt_observations"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("expires_ms", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("revoked_ms", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("max_uses", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("uses", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("issued_by", sa.String(), nullable=True))
        batch.create_index("ix_tokens_issued_by", ["issued_by"])
    op.execute(sa.text("UPDATE tokens SET revoked_ms = created_ms WHERE revoked = :t").bindparams(t=True))


def downgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.drop_index("ix_tokens_issued_by")
        for column in ("issued_by", "uses", "max_uses", "revoked_ms", "expires_ms"):
            batch.drop_column(column)
