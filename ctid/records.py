"""Records: what happens in the call center turned into rows for the record tables (RP-1).

:class:`Records` is the one object the rest of ctid hands records to.  It
owns the subscribers that follow the call model, the agent board and the
call center (:class:`AgentStateRecorder` here, the call and queue recorders
in :mod:`ctid.callrecords`) and offers plain helpers other parts call:
:meth:`Records.audit`, :meth:`Records.trade`, :meth:`Records.voice_message`,
:meth:`Records.ivr_session`, :meth:`Records.fax_request`.

Rows go to a :class:`RecordSink` — in the daemon the write-behind
``RecordWriter`` (``ctid.adapters.store.writer``), whose ``write`` never
waits.  Times are epoch seconds from the injected clock; text that could
hold a card number is masked (:func:`ctid.customers.redact`), accounts are
kept as their last 4 digits only.  A subscriber that fails logs the failure
and never disturbs the call model or the board.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import wraps
from typing import Any, Protocol, TypeVar

from twisted.logger import Logger

from ctid.agents import AgentBoard
from ctid.agentstate import AgentHungUp, AgentNotHungUp, AgentRecord, AgentState, AgentTransition
from ctid.customers import is_masked, mask_number, redact

log = Logger()

_F = TypeVar("_F", bound=Callable[..., Any])


class RecordSink(Protocol):
    """Where rows go: ``write(table, row)`` queues ``row`` for ``table`` and returns its record id, never waiting."""

    def write(self, table: str, row: Mapping[str, Any]) -> str: ...


class Clock(Protocol):
    def seconds(self) -> float: ...

    def callLater(self, delay: float, fn: Callable[..., Any], *args: Any) -> Any: ...


def guarded(method: _F) -> _F:
    """Run a subscriber so that its failure is logged instead of reaching the publisher."""

    @wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception:
            log.failure("recording {what} failed", what=method.__qualname__)
            return None

    return run  # type: ignore[return-value]


@dataclass
class _Stretch:
    """An agent's current state, since ``started_at``."""

    state: str
    entered_by: str
    started_at: float
    reason: str | None = None
    call_id: str | None = None
    forced_by: str | None = None


class AgentStateRecorder:
    """Writes ``agent_state_log``: one row per stretch an agent spent in a state, when the stretch ends.

    签到 (login) starts the first stretch and 签退 (logout) ends the last one;
    暂停/恢复 (pause/ready), 闭锁/解锁 (lock/unlock) and the call states are
    stretches of their own.  未挂机 (phone off hook with no call) is a
    stretch ``not_hung_up`` running beside the others.  ``on_wrap_up_done``
    hears ``(call_id, agent_id, seconds)`` when an agent's wrap-up ends.
    """

    def __init__(self, board: AgentBoard, sink: RecordSink, clock: Clock):
        self.sink, self.clock = sink, clock
        self.on_wrap_up_done: Callable[[str, str, float], None] | None = None
        self._stretches: dict[str, _Stretch] = {}
        self._off_hook: dict[str, float] = {}
        board.subscribe(self.record)

    @guarded
    def record(self, record: AgentRecord) -> None:
        """Follow one board record."""
        if isinstance(record, AgentTransition):
            self._transition(record)
        elif isinstance(record, AgentNotHungUp):
            self._off_hook.setdefault(record.agent_id, record.at)
        elif isinstance(record, AgentHungUp) and record.agent_id in self._off_hook:
            started = self._off_hook.pop(record.agent_id)
            self._write(record.agent_id, _Stretch("not_hung_up", "off_hook", started), "hung_up", record.at)

    def _transition(self, record: AgentTransition) -> None:
        stretch = self._stretches.pop(record.agent_id, None)
        if stretch is not None:
            stretch.call_id = stretch.call_id or record.call_id
            self._write(record.agent_id, stretch, record.trigger, record.at)
            if stretch.state == AgentState.WRAP_UP.value and stretch.call_id and self.on_wrap_up_done:
                self.on_wrap_up_done(stretch.call_id, record.agent_id, record.at - stretch.started_at)
        if record.new is not AgentState.LOGGED_OUT:
            self._stretches[record.agent_id] = _Stretch(record.new.value, record.trigger, record.at, record.reason,
                                                        record.call_id, record.forced_by)
        elif record.agent_id in self._off_hook:
            started = self._off_hook.pop(record.agent_id)
            self._write(record.agent_id, _Stretch("not_hung_up", "off_hook", started), record.trigger, record.at)

    def in_wrap_up(self, agent_id: str, call_id: str) -> bool:
        """True while ``agent_id`` is in the wrap-up of ``call_id``."""
        stretch = self._stretches.get(agent_id)
        return stretch is not None and stretch.state == AgentState.WRAP_UP.value and stretch.call_id == call_id

    def close(self) -> None:
        """Write every open stretch as ended now (``left_by`` ``shutdown``)."""
        now = self.clock.seconds()
        for agent_id, stretch in self._stretches.items():
            self._write(agent_id, stretch, "shutdown", now)
        for agent_id, started in self._off_hook.items():
            self._write(agent_id, _Stretch("not_hung_up", "off_hook", started), "shutdown", now)
        self._stretches.clear()
        self._off_hook.clear()

    def _write(self, agent_id: str, stretch: _Stretch, left_by: str, at: float) -> None:
        self.sink.write("agent_state_log", {
            "agent_id": agent_id, "state": stretch.state, "entered_by": stretch.entered_by, "left_by": left_by,
            "reason": stretch.reason, "call_id": stretch.call_id, "forced_by": stretch.forced_by,
            "started_at": stretch.started_at, "ended_at": at, "duration_s": max(0.0, at - stretch.started_at),
        })


class Records:
    """The records of one daemon: subscribers on the model, board and center, and the helpers to call.

    ``center`` may be None (no call center: no queue or call-record
    enrichment beyond the call model).
    """

    def __init__(self, sink: RecordSink, clock: Clock, model: Any = None, board: AgentBoard | None = None,
                 center: Any = None):
        from ctid.callrecords import CallRecorder  # the call side is big: its own module

        self.sink, self.clock = sink, clock
        self.agents = AgentStateRecorder(board, sink, clock) if board is not None else None
        self.calls = CallRecorder(model, board, center, sink, clock, self.agents) if model is not None else None

    def audit(self, actor: str, role: str | None, address: str | None, action: str, target: str | None,
              outcome: str, detail: str = "") -> str:
        """Record who did what, from where, with which outcome (``ok`` or a refusal code); returns its id."""
        return self.sink.write("audit_log", {
            "at": self.clock.seconds(), "actor": actor, "role": role, "address": address, "action": action,
            "target": target, "outcome": outcome, "detail": redact(detail),
        })

    def trade(self, trade_id: str, kind: str, result_code: str, *, account: str | None = None,
              amount: Decimal | str | int | None = None, currency: str | None = None,
              latency_ms: int | None = None, call_id: str | None = None, customer_id: str | None = None,
              channel: str = "ivr", agent_id: str | None = None, at: float | None = None) -> str:
        """Record one core-banking request and its result; ``account`` is masked here (last 4 digits kept).

        ``at`` is when the request was sent (default: now); ``latency_ms``
        None means no answer came.  Never pass PINs or passwords: there is
        no column for them.
        """
        return self.sink.write("trade_log", {
            "at": self.clock.seconds() if at is None else at, "trade_id": trade_id, "kind": kind,
            "call_id": call_id, "customer_id": customer_id, "account": mask_number(account) if account else None,
            "amount": None if amount is None else str(amount), "currency": currency, "result_code": result_code,
            "latency_ms": latency_ms, "channel": channel, "agent_id": agent_id,
        })

    def voice_message(self, message: Any) -> str:
        """Index a voice message a caller left (a :class:`ctid.announce.VoiceMessage`)."""
        return self.sink.write("voice_messages", {
            "at": message.at, "call_id": message.call_id, "ani": message.caller or None,
            "mailbox": message.mailbox, "filename": message.path, "duration_s": message.seconds,
        })

    def ivr_session(self, end: Any) -> str:
        """Record where a call left its IVR flow and why (a :class:`ctid.ivr.call.FlowEnd`), as of now."""
        return self.sink.write("ivr_sessions", {
            "at": self.clock.seconds(), "call_id": end.call.uniqueid, "uniqueid": end.call.uniqueid,
            "channel": end.call.channel, "flow": end.call.flow, "node": end.node, "reason": end.reason,
            "path": end.path, "verified": bool(end.verified), "customer_id": end.customer_id or None,
        })

    def fax_request(self, fax: Any) -> str:
        """Record a statement a caller asked to have faxed (a :class:`ctid.ivr.call.FaxRequest`), as requested now.

        The statement's account should come masked; one that does not is
        masked here (last 4 digits kept), so a full number never reaches the table.
        """
        statement, account = fax.statement, fax.statement.account_masked
        return self.sink.write("fax_requests", {
            "at": self.clock.seconds(), "call_id": fax.call.uniqueid, "customer_id": fax.customer_id or None,
            "account": account if is_masked(account) else mask_number(account), "fax_number": fax.fax_number,
            "since": statement.since.isoformat(), "lines": len(statement.lines), "status": "requested",
        })

    def close(self) -> None:
        """At shutdown: write what is still open (agents' current stretches, calls waiting for wrap-up)."""
        if self.calls is not None:
            self.calls.close()
        if self.agents is not None:
            self.agents.close()
