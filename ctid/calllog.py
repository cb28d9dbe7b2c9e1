"""Plain-words logging of calls: a subscriber to the call model.

The model stays silent; :class:`CallLogger` turns its lifecycle events into
the ``info`` lines an operator reads (``make run``), with structured fields.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.logger import Logger

from ctid.callevents import CallAnswered, CallEnded, CallEvent, CallSnapshot, CallStarted


class _Model(Protocol):
    def subscribe(self, subscriber: Any) -> None: ...

    def unsubscribe(self, subscriber: Any) -> None: ...

    def snapshot(self, call_id: str) -> CallSnapshot | None: ...


class CallLogger:
    """Log each call's start, answer and end at info level; subscribes itself to ``model``."""

    def __init__(self, model: _Model, log: Logger | None = None):
        self._model = model
        self.log = log if log is not None else Logger(namespace="ctid.calls", source=self)
        model.subscribe(self)

    def stop(self) -> None:
        """Stop logging (unsubscribe from the model)."""
        self._model.unsubscribe(self)

    def __call__(self, event: CallEvent) -> None:
        """Log ``event`` if it is one of the call lifecycle events."""
        if isinstance(event, CallStarted):
            self.log.info("call {call_id} started: ANI {ani} DNIS {dnis}",
                          call_id=event.call_id, ani=event.ani, dnis=event.dnis)
        elif isinstance(event, CallAnswered):
            self.log.info("call {call_id} answered", call_id=event.call_id)
        elif isinstance(event, CallEnded):
            self._ended(event)

    def _ended(self, event: CallEnded) -> None:
        if event.cause is None:
            self.log.info("call {call_id} ended while ctid was disconnected, after {duration:.1f}s",
                          call_id=event.call_id, duration=event.duration, cause=None)
            return
        call = self._model.snapshot(event.call_id)
        self.log.info("call {call_id} ended: cause {cause} ({cause_txt}) after {duration:.1f}s",
                      call_id=event.call_id, cause=event.cause, duration=event.duration,
                      cause_txt=None if call is None else call.hangup_cause_txt)
