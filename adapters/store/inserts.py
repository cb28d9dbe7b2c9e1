"""Inserting records on a database thread: idempotent batches, spool replay, and what a failure means.

Everything here blocks; :class:`~ctid.adapters.store.writer.RecordWriter`
runs it through :meth:`DatabasePool.run <ctid.adapters.store.pool.DatabasePool.run>`.
A record's ``record_id`` is its primary key, and inserts skip ids already
present (``INSERT … ON CONFLICT DO NOTHING`` on SQLite, ``ON DUPLICATE KEY
UPDATE`` a no-op on MySQL), so a batch that committed but whose
acknowledgement was lost can be sent again without doubling anything.

Each table's INSERT is compiled once per set of columns and dialect and run
with the driver's ``executemany`` (one call per table and batch; PyMySQL
turns it into one multi-row INSERT), the values converted by the columns'
own bind processors: no per-row SQLAlchemy statement work.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import DateTime, Numeric, String, Table, insert, select
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, StatementError

from ctid.adapters.store.schema import metadata
from ctid.adapters.store.spool import Chunk, Record, read_records

#: MySQL/MariaDB error codes that mean "this row is wrong", not "the server is unreachable".
_MYSQL_BAD_ROW_CODES = frozenset({3819, 4025})  # CHECK constraint violated (MySQL, MariaDB)


@dataclass(frozen=True)
class TableShape:
    """What the writer needs to know about one record table: its columns and how to convert their values."""

    table: Table
    names: frozenset[str]
    #: column -> the conversion of a value (not None) to what the database takes, before the dialect's own
    converters: Mapping[str, Callable[[Any], Any]]

    @classmethod
    def of(cls, table: Table) -> TableShape:
        """The shape of ``table``: times as naive UTC datetimes, amounts as Decimals, long text cut, NaN as NULL."""
        converters: dict[str, Callable[[Any], Any]] = {}
        for column in table.columns:
            if column.name == "record_id":
                continue
            if isinstance(column.type, DateTime):
                converters[column.name] = _utc
            elif isinstance(column.type, Numeric):
                converters[column.name] = _decimal
            elif isinstance(column.type, String) and column.type.length:
                converters[column.name] = functools.partial(_cut, column.type.length)
            else:
                converters[column.name] = _finite
        return cls(table, frozenset(converters), converters)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled by table name (for the writer's database process): the other side rebuilds it from the schema."""
        return shape_of_table, (self.table.name,)

    def to_db(self, record: Record) -> dict[str, Any]:
        """``record``'s row as the database takes it (see :meth:`of`)."""
        row: dict[str, Any] = {"record_id": record.id}
        for name, value in record.row.items():
            row[name] = None if value is None else self.converters[name](value)
        return row


def _cut(length: int, value: Any) -> Any:
    """Text longer than the column, cut to fit (other values as they are)."""
    return value[:length] if isinstance(value, str) else value


def _finite(value: Any) -> Any:
    """NaN and infinities as NULL (other values as they are)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


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
    groups: dict[tuple[str, tuple[str, ...]], list[Record]] = {}
    for record in records:
        groups.setdefault((record.table, tuple(record.row)), []).append(record)
    dialect = connection.dialect
    for (name, columns), group in groups.items():
        shape = shapes[name]
        compiled = _compiled(dialect, shape, columns)
        if compiled is not None:
            connection.exec_driver_sql(compiled.sql, compiled.parameters(group))
            continue
        rows = [shape.to_db(record) for record in group]  # another backend: leave out what is there, then insert
        present = set(connection.scalars(select(shape.table.c.record_id).where(
            shape.table.c.record_id.in_([row["record_id"] for row in rows]))))
        rows = [row for row in rows if row["record_id"] not in present]
        if rows:
            connection.execute(insert(shape.table), rows)
    return len(records)


@dataclass(frozen=True)
class _Compiled:
    """An INSERT compiled once for one table, set of columns and dialect, run with the driver's executemany."""

    sql: str
    names: tuple[str, ...]  #: the row's columns, in the order the statement takes them after record_id
    converters: tuple[Callable[[Any], Any], ...]  #: each column's conversion, the dialect's own included
    positional: bool  #: parameters as tuples (else dicts by column name)

    def parameters(self, records: list[Record]) -> list[Any]:
        """``records`` as the driver takes them: converted as :meth:`TableShape.to_db`, then as SQLAlchemy does."""
        pairs = tuple(zip(self.names, self.converters, strict=True))
        values = [(record.id, *(None if (value := record.row[name]) is None else convert(value)
                                for name, convert in pairs)) for record in records]
        if self.positional:
            return values
        keys = ("record_id", *self.names)
        return [dict(zip(keys, row, strict=True)) for row in values]


_COMPILED: dict[tuple[str, str, str, tuple[str, ...]], _Compiled | None] = {}


def _compiled(dialect: Dialect, shape: TableShape, columns: tuple[str, ...]) -> _Compiled | None:
    """The idempotent INSERT of ``columns`` into ``shape``'s table for ``dialect``, compiled once; None: no syntax."""
    table = shape.table
    key = (dialect.name, str(dialect.paramstyle), table.name, columns)
    if key not in _COMPILED:
        statement = _insert_ignoring_duplicates(dialect.name, table)
        if statement is None:
            _COMPILED[key] = None
        else:
            compiled = statement.compile(dialect=dialect, column_keys=["record_id", *columns])
            # Statements list a table's columns in its order, and every record table's first one is record_id.
            names = tuple(compiled.positiontup)[1:] if compiled.positional else columns
            converters = tuple(_sqlite_time if dialect.name == "sqlite" and shape.converters[name] is _utc else
                               _with_dialect(shape.converters[name],
                                             table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
                               for name in names)
            _COMPILED[key] = _Compiled(compiled.string, names, converters, compiled.positional)
    return _COMPILED[key]


def _sqlite_time(value: Any) -> str:
    """A time as SQLAlchemy stores it in SQLite (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC), made in one step from epoch s."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat(" ", "microseconds")[:26]
    return _utc(value).isoformat(" ", "microseconds")


def _with_dialect(convert: Callable[[Any], Any], process: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """``convert`` then the dialect's bind processor, when it has one."""
    if process is None:
        return convert
    return lambda value: None if (converted := convert(value)) is None else process(converted)


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
