"""The records spool: append-only JSON lines, read back in order, torn tails cut, bad lines skipped."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from ctid.adapters.store.spool import Record, Spool, append_rejected, decode, encode, read_records


def records(n: int, start: int = 0) -> list[Record]:
    return [Record(f"id{i:04d}", "audit_log", {"actor": "1001", "n": i}) for i in range(start, start + n)]


def test_appended_records_read_back_in_order_in_spans(tmp_path):
    """Records come back in the order appended, ``limit`` at a time, each read starting where the last ended."""
    spool = Spool(tmp_path / "sub" / "records.spool")
    assert spool.append(records(5)) == 5
    assert spool.append(records(3, 5)) == 3
    first = read_records(spool.path, 0, spool.end, 6)
    second = read_records(spool.path, first.next_offset, spool.end, 6)
    assert [r.id for r in first.records + second.records] == [f"id{i:04d}" for i in range(8)]
    assert second.next_offset == spool.end and first.skipped == second.skipped == 0


def test_a_read_stops_at_the_end_it_was_given(tmp_path):
    """Lines appended after the reader took ``end`` are left for the next read."""
    spool = Spool(tmp_path / "records.spool")
    spool.append(records(2))
    end = spool.end
    spool.append(records(2, 2))
    chunk = read_records(spool.path, 0, end, 100)
    assert [r.id for r in chunk.records] == ["id0000", "id0001"] and chunk.next_offset == end


def test_a_torn_last_line_is_cut_when_the_spool_is_opened(tmp_path):
    """A crash in the middle of a write leaves half a line: opening the spool cuts it, later appends are whole."""
    path = tmp_path / "records.spool"
    path.write_bytes(b"".join(encode(r) for r in records(2)) + b'{"id":"id0002","tab')
    spool = Spool(path)
    spool.open()
    spool.append(records(1, 3))
    chunk = read_records(path, 0, spool.end, 100)
    assert [r.id for r in chunk.records] == ["id0000", "id0001", "id0003"] and chunk.skipped == 0


def test_unreadable_lines_in_the_middle_are_skipped_and_counted(tmp_path):
    """Garbage between good lines (disk trouble) does not stop the replay of the lines behind it."""
    path = tmp_path / "records.spool"
    good = [encode(r) for r in records(3)]
    path.write_bytes(good[0] + b"\x00\x00garbage\n" + b'{"id": 1}\n' + good[1] + b"\xff\xfe\n" + good[2])
    chunk = read_records(path, 0, path.stat().st_size, 100)
    assert [r.id for r in chunk.records] == ["id0000", "id0001", "id0002"] and chunk.skipped == 3


def test_reset_empties_the_file_and_appending_starts_again(tmp_path):
    """Once everything is committed the spool is emptied; it keeps working."""
    spool = Spool(tmp_path / "records.spool")
    spool.append(records(3))
    spool.reset()
    assert spool.end == 0 and spool.path.stat().st_size == 0
    spool.append(records(1, 7))
    spool.close()
    assert [r.id for r in read_records(spool.path, 0, spool.end, 10).records] == ["id0007"]


def test_reopening_keeps_what_was_there(tmp_path):
    """A spool closed and opened again (a restart) still holds its records; ``end`` is the file's length."""
    spool = Spool(tmp_path / "records.spool")
    spool.append(records(4))
    spool.sync()
    spool.close()
    again = Spool(spool.path)
    again.open()
    assert again.end == spool.end == spool.path.stat().st_size


def test_times_amounts_and_odd_values_become_plain_json():
    """Datetimes are written as epoch seconds, Decimals as text, NaN as null; nothing makes encoding fail."""
    at = datetime(2025, 3, 1, 8, 30, 0, 250000, tzinfo=UTC)
    line = encode(Record("x", "trade_log", {"at": at, "amount": Decimal("12.50"), "n": float("nan"), "o": {1}}))
    row = decode(line).row
    assert row == {"at": at.timestamp(), "amount": "12.50", "n": None, "o": "{1}"}


def test_rejected_records_are_kept_with_their_error(tmp_path):
    """A record the database refused goes to the .rejected file with the error text."""
    path = tmp_path / "records.spool.rejected"
    append_rejected(path, Record("x1", "queue_events", {"kind": "bogus"}), "CHECK constraint failed")
    assert b'"error":"CHECK constraint failed"' in path.read_bytes()


@given(st.lists(st.dictionaries(st.text(max_size=8), st.none() | st.booleans() | st.integers() | st.text()
                                | st.floats(allow_nan=False, allow_infinity=False), max_size=5), max_size=5))
def test_any_plain_row_survives_the_round_trip(rows):
    """Whatever plain values a row holds (any Unicode text, newlines included), it is read back equal."""
    for i, row in enumerate(rows):
        line = encode(Record(f"id{i}", "t", row))
        assert line.count(b"\n") == 1 and decode(line) == Record(f"id{i}", "t", row)
