"""Make a SQLAlchemy :class:`~sqlalchemy.engine.Engine` from a URL, with ctid's settings.

``sqlite:///path/to/ctid.db``
    The embedded default.  Every connection gets ``journal_mode=WAL``,
    ``foreign_keys=ON``, ``synchronous=NORMAL`` and a busy timeout, so readers
    never block the writer and a locked file fails after a bounded wait.
    ``sqlite://`` (in memory) shares one connection between threads: tests only.

``mysql+pymysql://user:password@host:3306/ctid``
    Production (MySQL or MariaDB).  utf8mb4, UTC session time zone,
    ``pool_pre_ping`` to replace connections the server dropped, and a
    timeout on every network wait: connect, read, write, and waiting for a
    free connection in the pool.

Engines are made once per process and shared; they are thread-safe.  Make
the pool at least as large as the number of threads using it
(:class:`~ctid.adapters.store.pool.DatabasePool`'s ``max_threads``).
"""

from __future__ import annotations

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

#: Seconds SQLite waits on a locked database file before failing.
SQLITE_BUSY_TIMEOUT = 10.0


def make_engine(url: str | URL, *, pool_size: int = 4, max_overflow: int = 0, pool_timeout: float = 10.0,
                pool_recycle: int = 3600, connect_timeout: int = 10, read_timeout: int = 30,
                write_timeout: int = 30, echo: bool = False) -> Engine:
    """An Engine for ``url`` (``sqlite:///…`` or ``mysql+pymysql://…``); never connects by itself.

    ``pool_size`` + ``max_overflow`` bound the open connections;
    ``pool_timeout`` is how long a thread waits for one; the three other
    timeouts (seconds) apply to MySQL's network waits.  Other dialects get
    SQLAlchemy's defaults plus the pool settings.
    """
    url = make_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, pool_size, max_overflow, pool_timeout, echo)
    options = dict(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout,
                   pool_recycle=pool_recycle, pool_pre_ping=True, echo=echo)
    if backend == "mysql":
        return _mysql_engine(url, options, connect_timeout, read_timeout, write_timeout)
    return create_engine(url, **options)


def _sqlite_engine(url: URL, pool_size: int, max_overflow: int, pool_timeout: float, echo: bool) -> Engine:
    """A SQLite engine: a file with WAL and foreign keys, or one shared in-memory connection."""
    connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT}
    if url.database in (None, "", ":memory:"):
        engine = create_engine(url, connect_args=connect_args, poolclass=StaticPool, echo=echo)
    else:
        engine = create_engine(url, connect_args=connect_args, pool_size=pool_size, max_overflow=max_overflow,
                               pool_timeout=pool_timeout, echo=echo)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """Set ctid's pragmas on each new SQLite connection (WAL is ignored in memory)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
    finally:
        cursor.close()


def _mysql_engine(url: URL, options: dict, connect_timeout: int, read_timeout: int, write_timeout: int) -> Engine:
    """A MySQL/MariaDB engine through PyMySQL: utf8mb4, UTC, bounded network waits."""
    if "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    connect_args = {"connect_timeout": connect_timeout, "read_timeout": read_timeout,
                    "write_timeout": write_timeout, "init_command": "SET time_zone = '+00:00'"}
    return create_engine(url, connect_args=connect_args, **options)
