"""Schema migrations, run from code with the Alembic scripts shipped inside the package.

No ``alembic.ini`` is needed at run time: the configuration is built here and the open
connection is handed to ``crm_bridge/migrations/env.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL

from crm_bridge.db.engine import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config() -> Config:
    """An Alembic configuration pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (a no-op when it is there already)."""
    _run(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str | URL, revision: str) -> None:
    """Take the database at ``url`` back to ``revision`` (``"base"``: drop every table)."""
    _run(url, lambda config: command.downgrade(config, revision))


def _run(url: str | URL, alembic_command: Callable[[Config], None]) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            alembic_command(config)
    finally:
        engine.dispose()
