"""The record writer: records are written behind, so the call path never waits on SQL.

:meth:`RecordWriter.write` only queues (or, during an outage, appends to the
spool) and returns the record's id.  Queued records are inserted in batches
— ``batch_size`` records, or whatever is queued every ``flush_interval`` —
through the writer's own :class:`~ctid.adapters.store.pool.DatabasePool`,
one batch at a time, so they reach the database in the order they were
written.

When a batch fails because the database cannot be reached, it and
everything queued behind it go to the :class:`~ctid.adapters.store.spool.Spool`,
and so does every later record until the spool has been replayed: a retry
with exponential backoff inserts the spool's records in order, in batches,
and the spool is emptied once all of them are committed.  The queue is
bounded too: past ``max_queue`` records (the database is slow, not down)
the queue, and the batch in flight, are spilled to the spool.  Inserts
skip record ids already present, so a batch that committed but whose
answer was lost, or a spilled batch that committed after all, is not
doubled.  A batch the database refuses as bad data is inserted record by
record; the records it still refuses go to ``<spool>.rejected`` with the
error, for an operator.  See docs/database.md, "Records".
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from ctid.adapters.store.inserts import TableShape, insert_records, is_bad_data, read_chunk, replay_chunk, shapes
from ctid.adapters.store.pool import DatabasePool
from ctid.adapters.store.schema import RECORD_TABLES
from ctid.adapters.store.spool import Chunk, Record, Spool, append_rejected

log = Logger()


@dataclass(frozen=True)
class WriterStats:
    """The writer's counters, for the live view: totals since start, and what is waiting now."""

    queued: int  #: records in memory, waiting for a batch
    written: int  #: records committed by the normal path
    spooled: int  #: records appended to the spool
    replayed: int  #: spooled records committed
    spool_bytes: int  #: size of the spool still to replay
    failures: int  #: database attempts that failed (outages, retries)
    rejected: int  #: records the database refused as bad data (kept in the .rejected file)
    skipped: int  #: spool lines that could not be read back
    lost: int  #: records that could be neither written nor spooled (the spool's disk failed)
    spooling: bool  #: an outage (or an overflow) is being worked off through the spool


class RecordIds:
    """Unique record ids in write order: start time (ms), a random part, a sequence number; 32 hex digits."""

    def __init__(self, now: float):
        self._prefix = f"{int(now * 1000):012x}{os.urandom(4).hex()}"
        self._seq = 0

    def next(self) -> str:
        """The next id."""
        self._seq += 1
        return f"{self._prefix}{self._seq:012x}"


class RecordWriter(Service):
    """Writes records behind into the record tables; owns ``pool`` (starts and stops it) and the spool.

    ``clock`` is an ``IReactorTime``; ``tables`` the tables records may go
    to (by name).  Counters: :meth:`stats`.
    """

    name = "records"

    def __init__(self, pool: DatabasePool, spool_path: str, clock: Any, *,
                 tables: Mapping[str, Table] = RECORD_TABLES, batch_size: int = 500, flush_interval: float = 0.2,
                 max_queue: int = 20000, fsync_interval: float = 1.0, retry_initial: float = 0.5,
                 retry_max: float = 30.0):
        if batch_size < 1 or max_queue < batch_size:
            raise ValueError(f"need 1 <= batch_size ({batch_size}) <= max_queue ({max_queue})")
        self.pool = pool
        self.clock = clock
        self.spool = Spool(spool_path)
        self.rejected_path = f"{spool_path}.rejected"
        self.batch_size, self.flush_interval, self.max_queue = batch_size, flush_interval, max_queue
        self.fsync_interval, self.retry_initial, self.retry_max = fsync_interval, retry_initial, retry_max
        self._shapes: dict[str, TableShape] = shapes(tables)
        self._ids = RecordIds(clock.seconds())
        self._queue: deque[Record] = deque()
        self._spooling = False
        self._offset = 0  # spool bytes before it are committed
        self._inflight: list[Record] = []
        self._inflight_end: int | None = None  # the batch in flight was spilled: it ends here in the spool
        self._replay_due = False
        self._attempts = 0
        self._retry_call: Any = None
        self._flush_requested = False
        self._pump: Deferred[None] | None = None
        self._pumping = False
        self._timers: list[LoopingCall] = []
        self._sync_threads: ThreadPool | None = None
        self._dirty = False
        self._closed = False
        #: Called first thing when the service stops, so their last records are flushed with the rest.
        self.before_stop: list[Callable[[], None]] = []
        self._counts = dict(written=0, spooled=0, replayed=0, failures=0, rejected=0, skipped=0, lost=0)

    # -- the call path ------------------------------------------------------------------------------------

    def write(self, table: str, row: Mapping[str, Any]) -> str:
        """Queue ``row`` for ``table`` and return its record id at once; never waits.

        ``row`` maps column names to plain values (text, numbers, booleans,
        None; times as epoch seconds or datetimes; amounts as Decimal or
        text) and must not be changed afterwards.  An unknown table or
        column is a programming error: ValueError.
        """
        shape = self._shapes.get(table)
        if shape is None:
            raise ValueError(f"no record table {table!r}")
        if not row.keys() <= shape.names:
            raise ValueError(f"{table} has no column {', '.join(sorted(row.keys() - shape.names))}")
        record = Record(self._ids.next(), table, row)
        if self._spooling or self._closed:
            self._to_spool((record,))
            return record.id
        self._queue.append(record)
        if len(self._queue) > self.max_queue:
            self._spill()
        elif len(self._queue) >= self.batch_size:
            self._kick()
        return record.id

    def stats(self) -> WriterStats:
        """The counters now."""
        return WriterStats(queued=len(self._queue), spool_bytes=max(0, self.spool.end - self._offset),
                           spooling=self._spooling, **self._counts)

    # -- service ------------------------------------------------------------------------------------------

    def startService(self) -> None:
        """Start the pool, open the spool (replaying what a previous run left in it) and the timers."""
        super().startService()
        self._closed = False
        if not self.pool.running:
            self.pool.startService()
        self.spool.open()
        if self.spool.end > 0:
            log.info("records spool {path} holds {size} bytes from before: replaying", path=str(self.spool.path),
                     size=self.spool.end)
            self._spooling = self._replay_due = True
        self._sync_threads = ThreadPool(0, 1, name="ctid-records-spool")
        self._sync_threads.start()
        self._timers = [LoopingCall(self._tick), LoopingCall(self._sync)]
        for timer, interval in zip(self._timers, (self.flush_interval, self.fsync_interval), strict=True):
            timer.clock = self.clock
            timer.start(interval, now=False).addErrback(lambda f: log.failure("records timer stopped", f))
        self._kick()

    def stopService(self) -> Deferred[None]:
        """Flush: write (or spool) everything queued, close the spool, stop the pool; fires when done."""
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        for hook in self.before_stop:
            try:
                hook()
            except Exception:
                log.failure("records: a before-stop hook failed")
        for timer in self._timers:
            if timer.running:
                timer.stop()
        self._timers = []
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        self._replay_due = self._flush_requested = True  # one last try at the spool, and flush the queue
        self._kick()
        while self._pumping and self._pump is not None:
            await self._pump
        if self._queue:  # only left when the pool refused work: keep it for the next start
            self._to_spool(tuple(self._queue))
            self._queue.clear()
        self._closed = True
        self.spool.close()
        threads, self._sync_threads = self._sync_threads, None
        if threads is not None:
            threads.stop()
        await self.pool.stopService()

    # -- the pump: one database job at a time -------------------------------------------------------------

    def _tick(self) -> None:
        self._flush_requested = True
        self._kick()

    def _kick(self) -> None:
        """Start the pump unless it is running (it then picks the new work up itself)."""
        if self._pumping or not self._has_work():
            return
        self._pumping = True
        self._pump = Deferred.fromCoroutine(self._run())
        self._pump.addErrback(lambda f: log.failure("record writer failed", f))

    def _has_work(self) -> bool:
        if self._spooling:
            return self._replay_due
        return len(self._queue) >= self.batch_size or (self._flush_requested and bool(self._queue))

    async def _run(self) -> None:
        try:
            while self._has_work():
                if self._spooling:
                    await self._replay()
                else:
                    await self._insert_batch()
        finally:
            self._pumping = False

    async def _insert_batch(self) -> None:
        batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
        if not self._queue:
            self._flush_requested = False
        self._inflight, self._inflight_end = batch, None
        try:
            await self.pool.run(insert_records, batch, self._shapes)
        except Exception as e:
            self._counts["failures"] += 1
            if is_bad_data(e):
                await self._insert_one_by_one(batch, e)
            elif self._inflight_end is None:  # not spilled meanwhile: it goes to the spool first
                self._outage(e, batch)
            else:
                self._schedule_retry(e)
        else:
            self._counts["written"] += len(batch)
            if self._inflight_end is not None:  # spilled meanwhile and committed after all: skip it
                self._offset = max(self._offset, self._inflight_end)
        finally:
            self._inflight, self._inflight_end = [], None

    async def _replay(self) -> None:
        self.spool.open()
        offset, end = self._offset, self.spool.end
        if offset >= end:
            self._spool_done()
            return
        try:
            chunk: Chunk = await self.pool.run(replay_chunk, str(self.spool.path), offset, end, self.batch_size,
                                               self._shapes)
        except Exception as e:
            self._counts["failures"] += 1
            if not is_bad_data(e):
                self._schedule_retry(e)
                return
            reread = await self._reread(offset, end)
            if reread is None or not await self._insert_one_by_one(reread.records, e):
                return  # the database went away meanwhile: the whole chunk is replayed later
            chunk = reread
        self._counts["replayed"] += len(chunk.records)
        self._counts["skipped"] += chunk.skipped
        if chunk.skipped:
            log.warn("records spool: {n} unreadable lines skipped", n=chunk.skipped)
        self._offset = chunk.next_offset
        self._attempts = 0
        if self._offset >= self.spool.end:
            self._spool_done()

    async def _reread(self, offset: int, end: int) -> Chunk | None:
        """The chunk that failed as bad data, read again to insert its records one by one."""
        try:
            return await self.pool.run(read_chunk, str(self.spool.path), offset, end, self.batch_size)
        except Exception as e:
            self._counts["failures"] += 1
            self._schedule_retry(e)
            return None

    async def _insert_one_by_one(self, records: Sequence[Record], error: Exception) -> bool:
        """A batch refused as bad data: insert its records alone, keeping the refused ones in the .rejected file.

        False when the database went away meanwhile (an outage from there on).
        """
        log.warn("records batch refused ({error}): inserting its {n} records one by one", error=str(error)[:200],
                 n=len(records))
        for index, record in enumerate(records):
            try:
                await self.pool.run(insert_records, (record,), self._shapes)
            except Exception as e:
                if is_bad_data(e):
                    self._reject(record, e)
                    continue
                self._counts["failures"] += 1
                if self._spooling:
                    self._schedule_retry(e)
                else:
                    self._outage(e, list(records[index:]))
                return False
        return True

    def _reject(self, record: Record, error: Exception) -> None:
        self._counts["rejected"] += 1
        message = str(getattr(error, "orig", None) or error)[:500]
        log.error("record {id} for {table} refused by the database: {error}; kept in {path}", id=record.id,
                  table=record.table, error=message, path=self.rejected_path)
        try:
            append_rejected(self.rejected_path, record, message)
        except OSError:
            self._counts["lost"] += 1
            log.failure("could not keep refused record {id}", id=record.id)

    # -- outages and the spool ----------------------------------------------------------------------------

    def _outage(self, error: Exception, batch: list[Record]) -> None:
        """The database could not take ``batch``: it and the queue behind it go to the spool."""
        log.warn("records database unavailable ({error}): spooling to {path}", error=str(error)[:200],
                 path=str(self.spool.path))
        self._to_spool((*batch, *self._queue))
        self._queue.clear()
        self._spooling = True
        self._schedule_retry(error)

    def _spill(self) -> None:
        """Too many records queued: the batch in flight and the queue go to the spool (nothing is dropped)."""
        log.warn("records queue over {max} records: spilling to {path}", max=self.max_queue, path=str(self.spool.path))
        if self._inflight:
            self._to_spool(self._inflight)
            self._inflight_end = self.spool.end
        self._to_spool(tuple(self._queue))
        self._queue.clear()
        self._spooling = self._replay_due = True
        self._kick()

    def _schedule_retry(self, error: Exception) -> None:
        delay = min(self.retry_max, self.retry_initial * 2 ** self._attempts)
        self._attempts += 1
        self._replay_due = False
        if not self.running:  # stopping: what is left stays in the spool for the next start
            return
        log.debug("records database still unavailable ({error}); next try in {delay:.1f}s", error=str(error)[:200],
                  delay=delay)
        if self._retry_call is None or not self._retry_call.active():
            self._retry_call = self.clock.callLater(delay, self._retry)

    def _retry(self) -> None:
        self._retry_call = None
        if not self.running:
            return
        self._replay_due = True
        self._kick()

    def _spool_done(self) -> None:
        """Every spooled record is committed: empty the spool and write directly again."""
        replayed = self._counts["replayed"]
        self.spool.reset()
        self._offset = 0
        self._spooling = self._replay_due = False
        self._dirty = False
        log.info("records spool replayed ({n} records so far); writing directly again", n=replayed)

    def _to_spool(self, records: Sequence[Record]) -> None:
        try:
            self._counts["spooled"] += self.spool.append(records)
        except OSError:
            self._counts["lost"] += len(records)
            log.failure("could not spool {n} records: they are lost", n=len(records))
            return
        self._dirty = True

    def _sync(self) -> None:
        """Every ``fsync_interval``: make the spool durable, on the spool's own thread."""
        if self._dirty and self._sync_threads is not None and self.spool.is_open:
            self._dirty = False
            self._sync_threads.callInThread(self._sync_in_thread)

    def _sync_in_thread(self) -> None:
        try:
            self.spool.sync()
        except (OSError, ValueError):  # ValueError: closed meanwhile by stopService, which syncs itself
            log.failure("records spool fsync failed")
