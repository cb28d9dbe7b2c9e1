"""Inserting records on a database thread: idempotent batches, spool replay, and what a failure means.

Everything here blocks; :class:`~ctid.adapters.store.writer.RecordWriter`
runs it through :meth:`DatabasePool.run <ctid.adapters.store.pool.DatabasePool.run>`.
A record's ``record_id`` is its primary key, and inserts skip ids already
present (``INSERT … ON CONFLICT DO NOTHING`` on SQLite, ``ON DUPLICATE KEY
UPDATE`` a no-op on MySQL), so a batch that committed but whose
acknowledgement was lost can be sent again without doubling anything.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import DateTime, Numeric, String, Table, insert, select
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, StatementError

from ctid.adapters.store.schema import metadata
from ctid.adapters.store.spool import Chunk, Record, read_records

#: MySQL/MariaDB error codes that mean "this row is wrong", not "the server is unreachable".
_MYSQL_BAD_ROW_CODES = frozenset({3819, 4025})  # CHECK constraint violated (MySQL, MariaDB)


@dataclass(frozen=True)
class TableShape:
    """What the writer needs to know about one record table: its columns and how to convert values."""

    table: Table
    names: frozenset[str]
    times: frozenset[str]
    decimals: frozenset[str]
    lengths: Mapping[str, int]

    @classmethod
    def of(cls, table: Table) -> TableShape:
        """The shape of ``table``."""
        columns = [c for c in table.columns if c.name != "record_id"]
        return cls(table, frozenset(c.name for c in columns),
                   frozenset(c.name for c in columns if isinstance(c.type, DateTime)),
                   frozenset(c.name for c in columns if isinstance(c.type, Numeric)),
                   {c.name: c.type.length for c in columns if isinstance(c.type, String) and c.type.length})

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled by table name (for the writer's database process): the other side rebuilds it from the schema."""
        return shape_of_table, (self.table.name,)

    def to_db(self, record: Record) -> dict[str, Any]:
        """``record``'s row as the database takes it: times as naive UTC datetimes, long text cut."""
        row: dict[str, Any] = {"record_id": record.id}
        for name, value in record.row.items():
            if value is None:
                row[name] = None
            elif name in self.times:
                row[name] = _utc(value)
            elif name in self.decimals:
                row[name] = _decimal(value)
            elif isinstance(value, str) and name in self.lengths:
                row[name] = value[:self.lengths[name]]
            elif isinstance(value, float) and not math.isfinite(value):
                row[name] = None
            else:
                row[name] = value
        return row


@functools.cache
def shape_of_table(name: str) -> TableShape:
    """The shape of ctid's table ``name`` (from :data:`~ctid.adapters.store.schema.metadata`)."""
    return TableShape.of(metadata.tables[name])


def shapes(tables: Mapping[str, Table]) -> dict[str, TableShape]:
    """The shape of every table in ``tables``, by name."""
    return {name: TableShape.of(table) for name, table in tables.items()}


def _utc(value: Any) -> datetime:
    """A time given as epoch seconds (or a datetime, naive meaning UTC) as a naive UTC datetime."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a time: {value!r}")
    return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)


def _decimal(value: Any) -> Decimal:
    """An amount given as text, int, float or Decimal, as a Decimal."""
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None


def _insert_ignoring_duplicates(dialect: str, table: Table) -> Any:
    """An INSERT for ``table`` that skips rows whose record_id is already there (None: no such syntax)."""
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=["record_id"])
    if dialect in ("mysql", "mariadb"):
        statement = mysql.insert(table)
        return statement.on_duplicate_key_update(record_id=statement.inserted.record_id)
    return None


def insert_records(connection: Connection, records: Sequence[Record], shapes: Mapping[str, TableShape]) -> int:
    """Insert ``records`` (in one transaction: the caller's); ids already present are skipped.  Returns len."""
    groups: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = {}
    for record in records:
        row = shapes[record.table].to_db(record)
        groups.setdefault((record.table, tuple(row)), []).append(row)
    dialect = connection.dialect.name
    for (name, _), rows in groups.items():
        table = shapes[name].table
        statement = _insert_ignoring_duplicates(dialect, table)
        if statement is None:  # another backend: leave out what is there, then insert
            ids = [row["record_id"] for row in rows]
            present = set(connection.scalars(select(table.c.record_id).where(table.c.record_id.in_(ids))))
            rows = [row for row in rows if row["record_id"] not in present]
            statement = insert(table)
        if rows:
            connection.execute(statement, rows)
    return len(records)


def replay_chunk(connection: Connection, path: str, offset: int, end: int, limit: int,
                 shapes: Mapping[str, TableShape]) -> Chunk:
    """Read up to ``limit`` records from the spool's ``offset``..``end`` and insert them; returns what was read.

    Records for tables this ctid does not know are skipped (and counted).
    """
    chunk = read_records(path, offset, end, limit)
    known = tuple(record for record in chunk.records if record.table in shapes)
    insert_records(connection, known, shapes)
    return Chunk(known, chunk.next_offset, chunk.skipped + len(chunk.records) - len(known))


def read_chunk(connection: Connection, path: str, offset: int, end: int, limit: int) -> Chunk:
    """The spool records :func:`replay_chunk` would insert (to insert them one by one instead)."""
    return read_records(path, offset, end, limit)


def is_bad_data(error: BaseException) -> bool:
    """True when ``error`` says the rows are wrong (retrying the same rows cannot help); False: an outage."""
    if isinstance(error, IntegrityError | DataError | TypeError | ValueError | KeyError):
        return True
    if isinstance(error, StatementError) and not isinstance(error, DBAPIError):
        return True  # a value the driver could not even bind
    if isinstance(error, OperationalError) and error.orig is not None and error.orig.args:
        return error.orig.args[0] in _MYSQL_BAD_ROW_CODES
    return False
