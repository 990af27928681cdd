"""One schema line again: the digest, infra and releases branches join here.

Revision ID: 0004_merge
Revises: 0002_digest, 0002_infra, 0003_releases

Every later migration revises this one (one head), so `alembic check` and upgrades see one chain.
A database already at the three heads moves here without any change to its tables.
"""

revision = "0004_merge"
down_revision = ("0002_digest", "0002_infra", "0003_releases")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
