"""The events a CTI session keeps for ``Resume``, shared between the sessions they were sent to.

An event is encoded once, whatever the number of its recipients, into an
:data:`EventEntry`: the tuple ``(at, body)`` of its time and its line
without the seq (:func:`ctid.protocols.cticodec.encode_event_body`).  Every
recipient's :class:`ReplayBuffer` keeps a reference to that one tuple under
its own seq, and the line written is ``event_line(seq, body)``.  A tuple of
a float and bytes holds no references the garbage collector must follow, so
CPython stops tracking it: events kept for minutes add nothing to the
collector's work.
"""

from __future__ import annotations

from collections import deque

from .cticodec import event_line

#: An encoded event: (epoch seconds, the line after its seq), shared by all its recipients.
EventEntry = tuple[float, bytes]


class ReplayBuffer:
    """The last events of a session, bounded by count, age and bytes.

    Every event gets the next sequence number (from 1) even when older ones
    are dropped; :attr:`first_seq` is the oldest still kept (``last_seq + 1``
    when none is).  :attr:`total_bytes` counts every body byte ever
    appended, :attr:`kept_bytes` those held now (a body shared with other
    sessions counts in each).
    """

    __slots__ = ("limit", "max_age", "max_bytes", "last_seq", "total_bytes", "_kept_bytes", "_entries", "_first")

    def __init__(self, limit: int = 10_000, max_age: float = 300.0, max_bytes: int = 4 << 20):
        self.limit, self.max_age, self.max_bytes = limit, max_age, max_bytes
        self.last_seq = 0
        self.total_bytes = 0
        self._kept_bytes = 0
        self._entries: deque[EventEntry] = deque()
        self._first = 1

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def first_seq(self) -> int:
        """The oldest seq still held (``last_seq + 1`` when empty)."""
        return self._first

    @property
    def kept_bytes(self) -> int:
        """Body bytes held for replay."""
        return self._kept_bytes

    def append(self, entry: EventEntry) -> int:
        """Keep ``entry`` as the next seq, drop what the bounds exclude, return the seq."""
        entries = self._entries
        entries.append(entry)
        size = len(entry[1])
        self.total_bytes += size
        self._kept_bytes += size
        self.last_seq += 1
        if len(entries) > self.limit or self._kept_bytes > self.max_bytes or entry[0] - entries[0][0] > self.max_age:
            self.trim(entry[0])
        return self.last_seq

    def trim(self, now: float) -> None:
        """Drop the oldest events beyond the count, byte or age bound."""
        entries = self._entries
        while entries:
            at, body = entries[0]
            if len(entries) <= self.limit and self._kept_bytes <= self.max_bytes and now - at <= self.max_age:
                return
            entries.popleft()
            self._kept_bytes -= len(body)
            self._first += 1

    def line(self, seq: int) -> bytes | None:
        """The event line of ``seq``, or None when it was dropped or does not exist yet."""
        index = seq - self._first
        if index < 0 or seq > self.last_seq:
            return None
        return event_line(seq, self._entries[index][1])

    def covers(self, last_seen: int) -> bool:
        """Whether every event after ``last_seen`` is still held (so a resume can replay them)."""
        return self._first - 1 <= last_seen <= self.last_seq
