"""The tables the code maps (bot/db/tables.py) are exactly what the migrations create.

The equivalent of `alembic check`: a model changed without a migration (or the other way round)
would make a fresh database disagree with the code on its first insert.
"""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import bot.db.store
from bot.db.store import make_engine, migrate
from bot.db.tables import Base


def test_migrations_create_exactly_the_mapped_tables(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'schema.sqlite3'}")
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_the_migrations_form_one_chain_with_one_head():
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(bot.db.store.__file__).with_name("migrations")))
    heads = ScriptDirectory.from_config(cfg).get_heads()
    assert len(heads) == 1, f"several migration heads {heads}: a new migration must revise the latest one"
