"""Resynchronising the call model from a snapshot after the AMI link (re)connects.

:class:`CallSync` adds :meth:`CallSync.rebuild` to the books: it replaces
what is known with what ``CoreShowChannels`` and ``BridgeList`` report,
keeping the identity of calls already known and announcing new ones.
"""

from __future__ import annotations

from collections.abc import Iterable

from ctid.callbook import KEYS, AMIEvent, CallBook
from ctid.callevents import UP, Bridge, Call, CallAnswered, CallState, Channel, duration_seconds, state_desc, to_int

__all__ = ["CallSync"]


class CallSync(CallBook):
    """The books, plus rebuilding them from a ``CoreShowChannels`` (+ ``BridgeList``) snapshot."""

    def rebuild(self, channels: Iterable[AMIEvent], bridges: Iterable[AMIEvent] = ()) -> None:
        """Replace the view with a ``CoreShowChannels`` (+ ``BridgeList``) snapshot after (re)connecting.

        Channels gone from the snapshot are removed (``LegRemoved`` with cause
        None; ``CallEnded`` with cause None when their call has no leg left).
        Known calls keep their identity and are not announced again; calls
        seen for the first time get ``CallStarted`` then ``CallAnswered`` when
        two Up legs share a bridge.  Times of new channels and calls are
        estimated as now minus ``Duration`` (answered: when the younger of the
        bridged legs was created).  A leg running ``Queue`` puts its call in
        the ``queued`` state with the queue named by ``ApplicationData``.
        """
        now = self._clock.seconds()
        items = [item for item in channels if item.get("Uniqueid")]
        present = {item.get("Uniqueid") for item in items}
        for channel in [c for c in self.channels.values() if c.uniqueid not in present]:
            self._remove(channel, self.calls[channel.linkedid], None, None, now, disconnected=True)
        queued: dict[str, str | None] = {}
        for item in items:
            channel = self._resync_channel(item, now)
            if item.get("Application") == "Queue":
                queued[channel.linkedid] = (item.get("ApplicationData") or "").split(",")[0] or None
        self._resync_bridges(items, bridges)
        for call in list(self.calls.values()):
            if not call.announced:
                self._announce(call)
            self._resync_state(call, queued)

    def _resync_channel(self, item: AMIEvent, now: float) -> Channel:
        uniqueid = item.get("Uniqueid") or ""
        channel = self.channels.get(uniqueid)
        if channel is None:
            created = now - duration_seconds(item.get("Duration"))
            channel = self._create(item, KEYS[""], uniqueid, item.get("Linkedid") or uniqueid, created)
            call = self._attach(channel)
            if not call.announced:
                call.started_at = min(call.started_at, created)
            return channel
        linkedid = item.get("Linkedid")
        if linkedid and linkedid != channel.linkedid:
            self._relink(channel, linkedid)
        channel.state = to_int(item.get("ChannelState"))
        channel.state_desc = state_desc(channel.state, item)
        channel.caller_num = item.get("CallerIDNum")
        channel.connected_num = item.get("ConnectedLineNum")
        if channel.state == UP and channel.answered_at is None:
            channel.answered_at = now
        return channel

    def _resync_bridges(self, items: list[AMIEvent], bridges: Iterable[AMIEvent]) -> None:
        self.bridges = {}
        for item in bridges:
            self._bridge(item)
        for channel in self.channels.values():
            channel.bridge_id = None
        for item in items:
            bridge_id = item.get("BridgeId")
            if bridge_id:
                bridge = self.bridges.setdefault(bridge_id, Bridge(bridge_id))
                self._join(self.channels[item.get("Uniqueid") or ""], bridge)

    def _resync_state(self, call: Call, queued: dict[str, str | None]) -> None:
        if call.linkedid in queued:
            call.queue = queued[call.linkedid] or call.queue
            self._transition(call, "queue_join")
        elif call.state is CallState.QUEUED:
            self._transition(call, "queue_leave")
        up = [channel for channel in call.channels.values() if channel.state == UP
              and channel.bridge_id is not None and self.bridges[channel.bridge_id].talking]
        if len(up) >= 2:
            if call.answered_at is None:
                call.answered_at = max(channel.created_at for channel in up)
                self._publish(CallAnswered(call.linkedid, call.answered_at))
            self._transition(call, "bridged")
        elif call.state in (CallState.CONNECTED, CallState.HELD) and not self._talking(call):
            self._transition(call, "unbridged")
