"""policy artifact retention: when a version's artifact bytes were removed, and their size

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("policy_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("artifact_pruned_at", sa.DateTime(timezone=True)))
        batch_op.add_column(
            sa.Column("artifact_bytes", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute(
        "UPDATE policy_versions SET artifact_bytes = length(artifact) WHERE artifact IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("policy_versions", schema=None) as batch_op:
        batch_op.drop_column("artifact_bytes")
        batch_op.drop_column("artifact_pruned_at")
