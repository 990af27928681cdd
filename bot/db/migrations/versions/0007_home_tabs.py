"""home tabs: who opened the bot's App Home, when it was last published, and what it showed

Revision ID: 0007_home_tabs
Revises: 0006_schedules
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_home_tabs"
down_revision = "0006_schedules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "home_tabs",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shown", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("user_id"),
    )
    with op.batch_alter_table("home_tabs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_home_tabs_opened_at"), ["opened_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("home_tabs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_home_tabs_opened_at"))
    op.drop_table("home_tabs")
