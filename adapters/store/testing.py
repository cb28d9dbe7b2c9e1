"""Test support for the store: throw-away MySQL databases and the CI switches.

``CTID_TEST_MYSQL_URL`` names the server to test against (default
:data:`DEFAULT_MYSQL_URL`); ``CTID_REQUIRE_MYSQL=1`` makes an unreachable
server a test failure instead of a skip (CI sets it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from ctid.adapters.store.engine import make_engine
from ctid.adapters.store.schema import metadata

DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


class MySQLUnavailable(Exception):
    """The test MySQL server could not be reached."""


def mysql_test_url() -> URL:
    """The MySQL server tests use (``CTID_TEST_MYSQL_URL``)."""
    return make_url(os.environ.get("CTID_TEST_MYSQL_URL", DEFAULT_MYSQL_URL))


def mysql_required() -> bool:
    """True when an unreachable MySQL must fail the tests (``CTID_REQUIRE_MYSQL=1``)."""
    return os.environ.get("CTID_REQUIRE_MYSQL") == "1"


@contextmanager
def temporary_mysql_database(url: URL | str | None = None) -> Iterator[URL]:
    """Yield the URL of a new, empty database ``ctid_test_<random>`` on ``url``'s server; drop it after.

    When the account may not create databases, yields ``url`` itself and
    drops ctid's tables (and Alembic's) from it afterwards.  Raises
    :class:`MySQLUnavailable` when the server does not answer within 3 s.
    """
    url = make_url(url) if url is not None else mysql_test_url()
    engine = make_engine(url.set(database=None), pool_size=1, connect_timeout=3)
    try:
        try:
            connection = engine.connect()
        except OperationalError as e:
            raise MySQLUnavailable(f"no MySQL at {url.render_as_string(hide_password=True)}: {e.orig}") from e
        with connection:
            name = f"ctid_test_{uuid.uuid4().hex[:12]}"
            try:
                connection.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            except (OperationalError, ProgrammingError):  # no right to create databases: share url's
                yield from _shared_database(url)
                return
            try:
                yield url.set(database=name)
            finally:
                connection.exec_driver_sql(f"DROP DATABASE `{name}`")
    finally:
        engine.dispose()


def _shared_database(url: URL) -> Iterator[URL]:
    """Yield ``url``; then drop ctid's tables and ``alembic_version`` from it."""
    try:
        yield url
    finally:
        engine = make_engine(url, pool_size=1, connect_timeout=3)
        try:
            with engine.begin() as connection:
                metadata.drop_all(connection)
                connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
        finally:
            engine.dispose()
