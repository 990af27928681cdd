"""provisioned clusters and terraform runs

Revision ID: 0002_infra
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_infra"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "infra_clusters",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reach", sa.String(length=20), nullable=False),
        sa.Column("eks_name", sa.String(length=100), nullable=True),
        sa.Column("region", sa.String(length=32), nullable=True),
        sa.Column("endpoint", sa.String(length=300), nullable=True),
        sa.Column("kubeconfig", sa.String(length=1000), nullable=True),
        sa.Column("context", sa.String(length=253), nullable=True),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("vars", sa.JSON(), nullable=False),
        sa.Column("last_operation_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "terraform_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cluster", sa.String(length=63), nullable=False),
        sa.Column("operation_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("headline", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("terraform_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_terraform_runs_cluster"), ["cluster"], unique=False)
        batch_op.create_index(batch_op.f("ix_terraform_runs_operation_id"), ["operation_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("terraform_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_terraform_runs_operation_id"))
        batch_op.drop_index(batch_op.f("ix_terraform_runs_cluster"))
    op.drop_table("terraform_runs")
    op.drop_table("infra_clusters")
