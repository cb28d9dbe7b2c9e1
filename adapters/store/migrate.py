"""Bring a database's schema up to date with ctid's Alembic migrations, from code or the shell.

The migrations ship inside the package (``ctid/adapters/store/migrations``),
so this works from a source tree and from an installed package alike::

    python -m ctid.adapters.store.migrate sqlite:///var/ctid.db
    python -m ctid.adapters.store.migrate 'mysql+pymysql://ctid:…@db:3306/ctid'

These functions block: call them from a script, or inside a
:class:`~ctid.adapters.store.pool.DatabasePool` job with
:func:`upgrade_connection` — never on the reactor thread.
"""

from __future__ import annotations

import sys
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection, Engine, make_url
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ctid.adapters.store.engine import make_engine

log = Logger()

#: Where Alembic finds env.py and the revisions: a package resource, not a path.
SCRIPT_LOCATION = "ctid.adapters.store:migrations"


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic :class:`~alembic.config.Config` for ctid's migrations (no alembic.ini needed).

    Use it with :mod:`alembic.command` for anything else: ``history``,
    ``downgrade``, or ``revision(config, message, autogenerate=True)``
    when writing a new migration in a source tree.
    """
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        url = make_url(url).render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (creating ctid's tables in an empty one)."""
    command.upgrade(alembic_config(url), revision)


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    """Migrate through an open ``connection`` (e.g. ``pool.run(upgrade_connection)``)."""
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def head_revision() -> str:
    """The newest revision shipped with this version of ctid."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "ctid ships its migrations"
    return head


def current_revision(bind: Connection | Engine) -> str | None:
    """The revision the database behind ``bind`` is at (None: never migrated)."""
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            return current_revision(connection)
    return MigrationContext.configure(bind).get_current_revision()


def main(argv: list[str] | None = None) -> int:
    """``python -m ctid.adapters.store.migrate URL [REVISION]``: migrate and print the revision reached."""
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print("usage: python -m ctid.adapters.store.migrate URL [REVISION]", file=sys.stderr)
        return 2
    upgrade(args[0], *args[1:])
    engine = make_engine(args[0], pool_size=1)
    try:
        print(f"{make_url(args[0]).render_as_string(hide_password=True)}: {current_revision(engine)}")
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())


class SchemaUpgrade(Service):
    """Brings the schema up to date when the daemon starts, on the pool (never on the reactor).

    A database that cannot be reached is logged, not fatal: calls are still
    answered and logins fail with ``directory_unavailable`` until it is back.
    ``done`` fires (never fails) once the attempt is over.
    """

    name = "schema"

    def __init__(self, pool: Any):
        self.pool = pool
        self.done: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        self.done = self.pool.run(upgrade_connection).addCallbacks(self._upgraded, self._failed)

    def _upgraded(self, _: object) -> None:
        log.info("database schema is at revision {revision}", revision=head_revision())

    def _failed(self, failure: Failure) -> None:
        log.error("database schema could not be brought up to date: {error}", error=failure.getErrorMessage())
