"""The migrated schema is exactly the models, on both databases."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from parley.store.db import Database
from parley.store.models import metadata


def test_migrations_produce_the_models_schema(db_url):
    db = Database(db_url)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    db.dispose()
    assert diff == []


def test_parley_connections_to_postgresql_run_without_jit(pg_ctx):
    """JIT compiled Parley's batch statements anew each time and cost more than it saved."""
    from sqlalchemy import text

    with pg_ctx.db.read() as conn:
        assert conn.execute(text("SHOW jit")).scalar_one() == "off"
