"""release revisions: the manifests of every deploy, rollback and autoscale

Revision ID: 0003_releases
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_releases"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "release_revisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cluster", sa.String(length=63), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("preset", sa.String(length=100), nullable=False),
        sa.Column("manifests", sa.JSON(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("operation_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cluster", "namespace", "name", "revision", name="uq_release_revision"),
    )
    with op.batch_alter_table("release_revisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_release_revisions_cluster"), ["cluster"], unique=False)
        batch_op.create_index(batch_op.f("ix_release_revisions_name"), ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("release_revisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_release_revisions_name"))
        batch_op.drop_index(batch_op.f("ix_release_revisions_cluster"))
    op.drop_table("release_revisions")
