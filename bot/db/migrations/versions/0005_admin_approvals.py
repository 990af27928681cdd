"""an admin among the approvers: what an operation needs, and who gave it

Revision ID: 0005_admin_approvals
Revises: 0004_merge

`operations.admin_needed`: one of the approvals must be an admin's (a destroy). `approvals.admin`:
the approver held the admin role when they clicked, so the card and the count agree with what was
checked then, whatever the roles say later.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_admin_approvals"
down_revision = "0004_merge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("admin_needed", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.false()))
    # A destroy still waiting when the bot is upgraded keeps needing its admin.
    operations = sa.table("operations", sa.column("kind", sa.String), sa.column("admin_needed", sa.Boolean))
    op.execute(operations.update().where(operations.c.kind == "destroy").values(admin_needed=True))


def downgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_column("admin")
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.drop_column("admin_needed")
