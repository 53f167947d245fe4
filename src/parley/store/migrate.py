"""Schema management: upgrade a database to the latest migration, or (before the first
release) regenerate the single initial migration from the models, deterministically."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

from parley.store.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"
INITIAL = "2026_11_23_0001_initial"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def upgrade(db: Database) -> None:
    """Bring the schema to the latest revision (creates it on an empty database)."""
    with db.engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def ensure_schema(db: Database) -> bool:
    """Create the schema if the database is empty; True if it did. Used by `parley serve`."""
    if "alembic_version" in inspect(db.engine).get_table_names():
        upgrade(db)
        return False
    upgrade(db)
    return True


def regenerate_initial() -> Path:
    """Rewrite the one initial revision from the models (autogenerate against an empty DB)."""
    versions = MIGRATIONS / "versions"
    for old in versions.glob("*_initial.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/empty.db"
        db = Database(url)
        with db.engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.revision(cfg, message="initial", autogenerate=True, rev_id="0001")
        db.dispose()
    (path,) = versions.glob("*_initial.py")
    target = versions / f"{INITIAL}.py"
    path.rename(target)
    return target


if __name__ == "__main__":
    if sys.argv[1:] == ["regenerate"]:
        print(regenerate_initial())  # noqa: T201
