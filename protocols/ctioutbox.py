"""What one CTI connection writes, and how it bounds what waits for a client that stopped reading.

:class:`Outbox` is the transport's streaming producer: the transport pauses
it when its buffer is full (the peer stopped reading).  Answers are written
at once; the session's events are written from the replay buffer, from
``cursor`` (the next seq to write) on, while the peer reads.  While paused,
events wait in the replay buffer and the bytes queued for the peer since
the pause — new events and answers — are counted; past
``max_pending_bytes``, or when the replay buffer drops an event not yet
written, ``on_slow(why)`` is called (the connection says ``slow_consumer``
and closes; the session stays resumable).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPushProducer, IReactorTime
from zope.interface import implementer

from .ctireplay import ReplayBuffer


@implementer(IPushProducer)
class Outbox:
    """The writing side of one connection (see the module docstring)."""

    __slots__ = ("transport", "clock", "max_pending_bytes", "buffer", "cursor", "open", "last_sent", "_on_slow",
                 "_paused", "_paused_bytes", "_held_from")

    def __init__(self, transport: Any, clock: IReactorTime, max_pending_bytes: int,
                 on_slow: Callable[[str], None]):
        self.transport = transport
        self.clock = clock
        self.max_pending_bytes = max_pending_bytes
        self.buffer: ReplayBuffer | None = None
        self.cursor = 1
        self.open = True
        self.last_sent = clock.seconds()
        self._on_slow = on_slow
        self._paused = False
        self._paused_bytes = 0
        self._held_from = 0

    def attach(self, buffer: ReplayBuffer, last_seq: int) -> None:
        """Write the events of ``buffer`` after ``last_seq`` (call :meth:`pump` to start)."""
        self.buffer, self.cursor, self._held_from = buffer, last_seq + 1, buffer.total_bytes

    def close(self) -> None:
        """The connection is closing: write nothing more."""
        self.open = False

    # --- IPushProducer (the transport tells us when its buffer is full)

    def pauseProducing(self) -> None:
        """The peer is not keeping up: hold events back and count what is queued from now on."""
        self._paused, self._paused_bytes = True, 0
        self._held_from = self.buffer.total_bytes if self.buffer is not None else 0

    def resumeProducing(self) -> None:
        """The transport drained its buffer: send the events held back."""
        self._paused, self._paused_bytes = False, 0
        self.pump()

    def stopProducing(self) -> None:
        """The connection is going away."""
        self._paused = True

    # --- writing

    def write(self, line: bytes) -> None:
        """Write an answer (or any line) now, counting it while the peer is not reading."""
        if not self.open:
            return
        self.transport.write(line)
        self.last_sent = self.clock.seconds()
        if self._paused:
            self._paused_bytes += len(line)
            self.check_backlog()

    def events_available(self) -> None:
        """The replay buffer has new events: write them if the peer is reading, else count them."""
        if self._paused:
            self.check_backlog()
        else:
            self.pump()

    def pump(self) -> None:
        """Write the events from the cursor on, until the transport pauses us."""
        buffer = self.buffer
        if buffer is None or not self.open:
            return
        write = self.transport.write
        wrote = False
        while not self._paused and self.cursor <= buffer.last_seq:
            line = buffer.line(self.cursor)
            if line is None:
                return self._on_slow("events were dropped before they could be sent")
            self.cursor += 1
            write(line)
            wrote = True
        if wrote:
            self.last_sent = self.clock.seconds()
        if self._paused:
            self.check_backlog()

    def check_backlog(self) -> None:
        """Call ``on_slow`` if events were dropped unwritten, or too much waits for a paused peer."""
        buffer = self.buffer
        if buffer is None or not self.open:
            return
        if self.cursor < buffer.first_seq:
            return self._on_slow("events were dropped before they could be sent")
        if self._paused:
            held = self._paused_bytes + buffer.total_bytes - self._held_from
            if held > self.max_pending_bytes:
                self._on_slow(f"{held} bytes queued since it stopped reading")
