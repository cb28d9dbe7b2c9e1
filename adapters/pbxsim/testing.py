"""Helpers for tests that drive the simulator synchronously on a ``Clock``.

Shipped with the package (like ``twisted.internet.testing``) so ctid's own
tests can build a World, step its time and read its event stream.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from .dialplan import Dialplan
from .events import RING, RINGING, UP, AmiEvent
from .world import Channel, World

START = 1795343254.0


def make_world(extra_dialplan: str = "", start: float = START) -> tuple[World, Clock]:
    """A World on a fresh Clock set to ``start`` (epoch seconds)."""
    clock = Clock()
    clock.advance(start)
    return World(clock, Dialplan.ctid(extra_dialplan)), clock


def advance(clock: Clock, seconds: float) -> None:
    """Move time forward ``seconds``, firing each timer at its own time (not all at the end)."""
    end = clock.seconds() + seconds
    while True:
        due = [call.getTime() for call in clock.getDelayedCalls()]
        nxt = min(due, default=None)
        if nxt is None or nxt > end:
            break
        clock.advance(max(0.0, nxt - clock.seconds()))
    clock.advance(max(0.0, end - clock.seconds()))


class EventRecorder:
    """Collects the World's events in order."""

    def __init__(self, world: World):
        self.events: list[AmiEvent] = []
        self.times: list[float] = []
        self._world = world
        world.subscribe(self._record)

    def _record(self, event: AmiEvent) -> None:
        self.events.append(event)
        self.times.append(self._world.now())

    def timed(self, name: str) -> list[tuple[float, AmiEvent]]:
        """(time, event) for every event named ``name``."""
        return [(t, e) for t, e in zip(self.times, self.events, strict=True) if e.name == name]

    def names(self, skip: tuple[str, ...] = ()) -> list[str]:
        return [e.name for e in self.events if e.name not in skip]

    def of(self, name: str, **fields: str) -> list[AmiEvent]:
        """Events named ``name`` whose fields equal ``fields``."""
        return [e for e in self.events if e.name == name and all(e.get(k) == v for k, v in fields.items())]

    def summary(self, skip: tuple[str, ...] = ("VarSet", "Newexten")) -> list[str]:
        """``Name Channel`` lines (``Dest…`` channel for dial events), handy for exact-sequence asserts."""
        out = []
        for e in self.events:
            if e.name in skip:
                continue
            chan = e.get("Channel") or e.get("DestChannel") or e.get("BridgeUniqueid") or ""
            out.append(f"{e.name} {chan}".strip())
        return out

    def clear(self) -> None:
        self.events.clear()
        self.times.clear()


class ScriptedPhone:
    """A phone that behaves exactly as told: answer after ``answer_after`` s (None: never), or busy."""

    context = "ctid-out"

    def __init__(self, answer_after: float | None = 1.0, busy: bool = False, ring_after: float = 0.05,
                 talk: float | None = None):
        self.answer_after = answer_after
        self.is_busy = busy
        self.ring_after = ring_after
        self.talk = talk
        self.rung: list[Channel] = []
        self.world: World | None = None

    def ring(self, world: World, chan: Channel) -> None:
        self.world = world
        self.rung.append(chan)
        if self.is_busy:
            world.soon(world.control, chan, "busy")
            return
        world.clock.callLater(self.ring_after, self._state, chan, RINGING)
        if self.answer_after is not None:
            world.clock.callLater(self.answer_after, self._state, chan, UP)

    def _state(self, chan: Channel, state: int) -> None:
        assert self.world is not None
        if not chan.dead and not chan.hangup_pending and chan.state != UP:
            self.world.set_state(chan, state)

    def on_bridged(self, chan: Channel, bridge: Any) -> None:
        if self.talk is not None and len(bridge.members) >= 2 and self.world is not None:
            world = self.world

            def hang_up() -> None:
                if chan.bridge is bridge:
                    world.remote_hangup(chan, 16)

            world.clock.callLater(self.talk, hang_up)


class ScriptedCaller:
    """A trunk caller for tests: optional DTMF source, no timers of its own."""

    context = "ctid-in"

    def __init__(self, dtmf: Any = None):
        self.dtmf = dtmf


def inbound_call(world: World, number: str, dialed: str, device: Any = None) -> Channel:
    """A caller on ``PJSIP/trunk-…`` dialling ``dialed`` into ctid-in (as population.Caller does)."""
    chan = world.new_channel("PJSIP", "trunk", state=RING, context="ctid-in", exten=dialed, announce=False)
    chan.caller_num, chan.dnid, chan.device = number, dialed, device or ScriptedCaller()
    world.chan_event("Newchannel", chan)
    world.start_pbx(chan)
    return chan
