"""AMI Originate: ring a channel, and on answer run an application or the dialplan.

Event order follows park-redirect.txt (``Local/s@ctid-wait`` originated into
``Wait``): Newchannel ×2, ``Newexten AppDial2``, caller-id events,
``LocalBridge``, ``DialBegin`` (no caller block), the ;2 dialplan,
``DialEnd ANSWER``, then ``OriginateResponse`` with the action's ActionID.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .apps import execute
from .dial import Target, local_bridge, request, ring
from .events import RINGING, UP, snapshot

if TYPE_CHECKING:  # pragma: no cover
    from .world import Channel, World

REASON = {"failed": 0, "hangup": 1, "timeout": 3, "answer": 4, "busy": 5, "congestion": 8}


@dataclass
class OriginateRequest:
    """The parsed Originate action (validated by the AMI layer)."""

    channel: str
    context: str = ""
    exten: str = ""
    priority: int = 1
    application: str = ""
    data: str = ""
    timeout: float = 30.0
    caller_num: str = ""
    caller_name: str = ""
    variables: list[tuple[str, str]] = field(default_factory=list)
    account: str = ""
    channel_id: str | None = None
    other_channel_id: str | None = None
    action_id: str | None = None


def parse_callerid(text: str) -> tuple[str, str]:
    """``"Name" <num>`` / ``Name <num>`` / ``num`` -> (num, name)."""
    text = text.strip()
    match = re.match(r'^\s*"?([^"<]*?)"?\s*<([^>]*)>\s*$', text)
    if match:
        return match.group(2).strip(), match.group(1).strip()
    return (text, "") if text else ("", "")


class Originate:
    """One asynchronous originate; ``respond(pairs)`` receives the OriginateResponse body."""

    def __init__(self, world: World, req: OriginateRequest, respond: Callable[[list[tuple[str, object]]], object]):
        self.world = world
        self.req = req
        self.respond = respond
        self.chan: Channel | None = None
        self.early = ""
        self.answered = False

    def start(self) -> None:
        world, req = self.world, self.req
        target = Target(req.channel)
        chan = request(world, target, None, (req.channel_id, req.other_channel_id))
        if chan is None:
            self._respond("Failure", "failed", None)
            return
        self.chan = chan
        chan.originated = True
        chan.controller = self
        chan.observers.append(self)
        chan.accountcode = req.account
        for name, value in req.variables:
            world.set_var(chan, name, value)
        world.newexten(chan, "AppDial2", "(Outgoing Line)")
        two = chan.local_peer
        if req.caller_num or req.caller_name:
            world.set_caller(chan, req.caller_num, req.caller_name)
            world.set_connected(chan, req.caller_num, req.caller_name)
            if two is not None:
                two.variables.update(chan.variables)
                world.set_caller(two, req.caller_num, req.caller_name)
                world.set_connected(two, req.caller_num, req.caller_name)
        if two is not None:
            local_bridge(world, chan, two)
        world.calls_processed += 1
        self._event("DialBegin", [("DialString", target.dialstring)])
        ring(world, chan)
        self._timer = world.clock.callLater(req.timeout, self._signal, "timeout")

    # -- hooks ---------------------------------------------------------------------------

    def on_state(self, chan: Channel, state: int) -> None:
        if self.answered:
            return
        if state == RINGING:
            self.world.soon(self._ringing)
        elif state == UP:
            self._signal("answer")

    def on_control(self, chan: Channel, what: str) -> None:
        self._signal(what)

    def hangup_requested(self, chan: Channel) -> None:
        self._signal("hangup")

    def redirect_requested(self, chan: Channel) -> None:
        if self.answered:
            self.world.start_pbx(chan)

    def _ringing(self) -> None:
        if self.chan is not None and not self.chan.dead and not self.answered:
            self._event("DialState", [("DialStatus", "RINGING")])

    def _signal(self, what: str) -> None:
        chan = self.chan
        if self.answered or chan is None or chan.dead:
            return
        if self._timer.active():
            self._timer.cancel()
        if what == "answer":
            self._answered(chan)
            return
        status = {"timeout": "NOANSWER", "busy": "BUSY", "congestion": "CONGESTION"}.get(what, "CANCEL")
        self.answered = True  # finished either way
        self._event("DialEnd", [("DialStatus", status)])
        if what != "hangup":
            chan.hangupcause = {"busy": 17, "congestion": 34}.get(what, 0)
        chan.controller = None
        self.world.hangup(chan)
        self._respond("Failure", what if what in REASON else "hangup", chan)

    def _answered(self, chan: Channel) -> None:
        self.answered = True
        chan.controller = None
        self._event("DialEnd", [("DialStatus", "ANSWER")])
        self._respond("Success", "answer", chan)
        if chan.goto is not None or not self.req.application:
            if chan.goto is None:
                chan.goto = (self.req.context, self.req.exten, self.req.priority)
            self.world.start_pbx(chan)
        else:
            self.world.soon(self._run_application, chan)

    def _run_application(self, chan: Channel) -> None:
        from twisted.internet.defer import Deferred

        Deferred.fromCoroutine(run_application(self.world, chan, self.req.application, self.req.data))

    def _event(self, name: str, extra: list[tuple[str, object]]) -> None:
        assert self.chan is not None
        self.world.emit(name, "call", snapshot(self.chan, "Dest") + extra)

    def _respond(self, result: str, reason: str, chan: Channel | None) -> None:
        req = self.req
        pairs: list[tuple[str, object]] = []
        if req.action_id is not None:
            pairs.append(("ActionID", req.action_id))
        pairs += [("Response", result), ("Channel", chan.name if chan is not None else req.channel)]
        if req.application:
            pairs += [("Application", req.application), ("Data", req.data)]
        else:
            pairs += [("Context", req.context), ("Exten", req.exten)]
        pairs += [("Reason", REASON[reason]), ("Uniqueid", chan.uniqueid if chan is not None else "<null>"),
                  ("CallerIDNum", req.caller_num or "<unknown>"), ("CallerIDName", req.caller_name or "<unknown>")]
        self.respond(pairs)


async def run_application(world: World, chan: Channel, app: str, data: str) -> None:
    """Run one application on an answered outgoing channel (no Newexten), then hang up.

    A Redirect while it runs sends the channel into the dialplan instead.
    """
    if chan.dead or chan.running:
        return
    chan.running = True
    chan.appl, chan.data = app, data
    await execute(world, chan, app, data)
    if chan.dead:
        return
    chan.running = False
    if chan.goto is not None and not chan.hangup_pending:
        world.start_pbx(chan)
        return
    chan.hangupcause = chan.hangupcause or 16
    world.hangup(chan)
