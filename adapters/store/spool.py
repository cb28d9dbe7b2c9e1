"""The records spool: an append-only local file that keeps records while the database cannot take them.

One record per line, JSON: ``{"id": "<record id>", "table": "call_records", "row": {…}}``.
Record ids are the writer's sequence ids, so lines are in the order the
records were written and a record replayed twice is recognised.

:class:`Spool` appends (on the reactor thread: each append is handed to the
operating system at once, as a log file would be; :meth:`Spool.sync`, the
``fsync``, is called from a helper thread).  :func:`read_records` reads a
span of it back (on a database thread).  The file is emptied only by
:meth:`Spool.reset`, which the writer calls once every record in it has been
committed.  A torn last line (a crash in the middle of a write) is cut off
when the file is opened; any other line that does not parse is skipped and
counted by the reader, so one bad line never blocks the ones behind it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple


class Record(NamedTuple):
    """One record for a table: ``id`` (unique, in write order), ``table`` and ``row`` (plain JSON values)."""

    id: str
    table: str
    row: Mapping[str, Any]


def _plain(value: Any) -> Any:
    """JSON for values besides JSON's own: datetimes as epoch seconds, anything else (Decimal…) as text."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return str(value)  # Decimal, and anything else a row should not hold: kept as text, not lost


def encode(record: Record) -> bytes:
    """``record`` as one spool line (UTF-8 JSON and a newline); NaN and infinities are written as null."""
    row = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.row.items()}
    line = json.dumps({"id": record.id, "table": record.table, "row": row}, ensure_ascii=False,
                      separators=(",", ":"), allow_nan=False, default=_plain)
    return line.encode() + b"\n"


def decode(line: bytes) -> Record:
    """The record on one spool line; ValueError when the line is not one."""
    data = json.loads(line)
    if not isinstance(data, dict) or not isinstance(data.get("row"), dict):
        raise ValueError("not a spooled record")
    record_id, table = data.get("id"), data.get("table")
    if not isinstance(record_id, str) or not isinstance(table, str):
        raise ValueError("not a spooled record")
    return Record(record_id, table, data["row"])


class Spool:
    """The append-only spool file at ``path`` (its directory is made when needed).

    ``end`` is the file's length in bytes: every record before it is on
    disk (in the OS's cache; :meth:`sync` makes it durable).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.end = 0
        self._file: BinaryIO | None = None

    @property
    def is_open(self) -> bool:
        """True while the file is open for appending."""
        return self._file is not None

    def open(self) -> None:
        """Open the file for appending, cutting off a torn last line; ``end`` is then its length."""
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "ab+")  # noqa: SIM115 - kept open until close()
        try:
            self.end = _cut_torn_tail(file)
        except BaseException:
            file.close()
            raise
        self._file = file

    def append(self, records: Iterable[Record]) -> int:
        """Append ``records`` in order (opening the file if needed); returns how many."""
        self.open()
        assert self._file is not None
        data = b"".join(encode(record) for record in records)
        if data:
            self._file.write(data)
            self._file.flush()
            self.end += len(data)
        return data.count(b"\n")

    def sync(self) -> None:
        """Make what was appended durable (``fsync``); safe to call from another thread."""
        file = self._file
        if file is not None:
            os.fsync(file.fileno())

    def reset(self) -> None:
        """Empty the file: every record in it has been committed to the database."""
        self.open()
        assert self._file is not None
        self._file.truncate(0)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.end = 0

    def close(self) -> None:
        """Sync and close the file (it is reopened by the next append)."""
        file, self._file = self._file, None
        if file is not None:
            file.flush()
            os.fsync(file.fileno())
            file.close()


def _cut_torn_tail(file: BinaryIO) -> int:
    """Truncate ``file`` after its last newline (a torn write leaves a partial line); returns the new length."""
    size = file.seek(0, os.SEEK_END)
    position = size
    while position > 0:
        start = max(0, position - 65536)
        file.seek(start)
        block = file.read(position - start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            position = start + newline + 1
            break
        position = start
    if position != size:
        file.truncate(position)
        file.flush()
    file.seek(0, os.SEEK_END)
    return position


@dataclass(frozen=True)
class Chunk:
    """Records read back from a spool: ``next_offset`` is where the next read starts."""

    records: tuple[Record, ...]
    next_offset: int
    skipped: int


def read_records(path: str | Path, offset: int, end: int, limit: int) -> Chunk:
    """Up to ``limit`` records from the bytes ``offset``..``end`` of the spool at ``path``, in order.

    Lines that do not parse are skipped (and counted); a line running past
    ``end`` is left for a later read.  Blocking: call it off the reactor.
    """
    records: list[Record] = []
    skipped = 0
    position = offset
    with open(path, "rb") as file:
        file.seek(offset)
        while position < end and len(records) < limit:
            line = file.readline(end - position)
            if not line.endswith(b"\n"):
                break
            position += len(line)
            try:
                records.append(decode(line))
            except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
                skipped += 1
    return Chunk(tuple(records), position, skipped)


def append_rejected(path: str | Path, record: Record, error: str) -> None:
    """Keep a record the database refused (bad data) in the file at ``path``, with the error, for an operator."""
    line = json.dumps({"id": record.id, "table": record.table, "row": record.row, "error": error},
                      ensure_ascii=False, separators=(",", ":"), default=str)
    with open(path, "ab") as file:
        file.write(line.encode() + b"\n")
