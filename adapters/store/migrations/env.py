"""Alembic environment for ctid: run by :mod:`ctid.adapters.store.migrate`, online only.

The caller either hands over an open connection (``config.attributes["connection"]``,
used inside :class:`~ctid.adapters.store.pool.DatabasePool` work) or a URL
(``sqlalchemy.url``), for which an engine is made with ctid's settings.
SQLite gets batch mode, so later revisions can alter tables there too.
"""

from __future__ import annotations

from alembic import context

from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.schema import metadata


def _migrate(connection) -> None:
    """Run the migrations on ``connection``, in one transaction where the database allows it."""
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def _run() -> None:
    """Migrate the connection given by the caller, or one opened from ``sqlalchemy.url``."""
    if context.is_offline_mode():
        raise SystemExit("ctid migrations run online only: give a database URL")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("ctid migrations need a database URL (sqlalchemy.url)")
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


_run()
