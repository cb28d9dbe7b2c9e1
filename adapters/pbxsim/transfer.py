"""Transfers and the AMI Bridge action.

* Blind transfer: the transferee is sent to ``exten@context`` (an async goto,
  which ends the Dial that bridged it) and a ``BlindTransfer`` event tells who.
* Attended transfer (AMI Atxfer): the transferer leaves the bridge and dials
  ``Local/exten@context``; the transferee hears music.  When the target
  answers, the transferer and the target talk in a second bridge; when the
  transferer hangs up, the target takes its place in the first bridge
  (``BridgeEnter`` with ``SwapUniqueid``) and ``AttendedTransfer`` is sent.
  Simulated for the answering side of a Dial bridge (an agent who took a
  call), which is what ctid's agents do.
* Bridge action: both channels leave what they were doing and share a new
  basic bridge; a channel running the dialplan continues at its next
  priority when the bridge ends, others hang up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .apps import start_moh, stop_moh
from .dial import Target, local_bridge, request, ring
from .events import RINGING, UP, bridge_block, snapshot

if TYPE_CHECKING:  # pragma: no cover
    from .dial import DialAttempt
    from .world import Bridge, Channel, World


def blind_transfer(world: World, transferer: Channel, exten: str, context: str) -> str:
    """Returns the BlindTransfer ``Result``: Success or Invalid."""
    bridge = transferer.bridge
    transferee = bridge.peer_of(transferer) if bridge is not None else None
    pairs: list[tuple[str, object]] = [("Result", "Success" if transferee is not None else "Invalid")]
    pairs += snapshot(transferer, "Transferer")
    if transferee is not None:
        pairs += snapshot(transferee, "Transferee")
    if bridge is not None:
        pairs += bridge_block(bridge)
    pairs += [("IsExternal", "No"), ("Context", context), ("Extension", exten)]
    world.emit("BlindTransfer", "call", pairs)
    if transferee is None:
        return "Invalid"
    world.redirect(transferee, context, exten, 1)
    return "Success"


class BasicBridge:
    """A bridge made by the Bridge action (or a transfer); ends when a member leaves."""

    def __init__(self, world: World):
        self.world = world
        self.bridge = world.new_bridge(owner=self)
        self.done = False

    def join(self, chan: Channel) -> None:
        """Add a channel that is not running the dialplan (it is now ours)."""
        chan.controller = self
        self.world.bridge_enter(self.bridge, chan)

    async def hold(self, chan: Channel) -> int:
        """A dialplan channel sits in the bridge until it ends; the result is an app result."""
        world = self.world
        world.bridge_enter(self.bridge, chan)
        reason = await world.sleep(chan, None)
        if chan.dead:
            return -1
        if reason in ("hangup", "goto", "move"):
            self._end(chan)
        return -1 if reason == "hangup" else 0

    def hangup_requested(self, chan: Channel) -> None:
        self._end(chan)
        chan.controller = None
        self.world.hangup(chan)

    def redirect_requested(self, chan: Channel) -> None:
        self._end(chan)
        chan.controller = None
        self.world.start_pbx(chan)

    def member_left(self, chan: Channel) -> None:
        self._end(chan)

    def _end(self, leaver: Channel) -> None:
        """Everybody out; controlled members hang up, dialplan members carry on."""
        if self.done:
            return
        self.done = True
        world = self.world
        world.bridge_leave(self.bridge, leaver)
        others = list(self.bridge.members)
        world.destroy_bridge(self.bridge)
        for other in others:
            if other.running:
                world.wake(other, "peer")
            elif not other.dead:
                other.controller = None
                other.hangupcause = other.hangupcause or 16
                world.hangup(other)


def bridge_channels(world: World, one: Channel, two: Channel) -> None:
    """AMI Bridge: pull both channels out of what they do into a new basic bridge."""
    basic = BasicBridge(world)
    for chan in (one, two):
        world.move_to_bridge(chan, basic)


class AttendedTransfer:
    """Atxfer from ``transferer`` (the callee of ``attempt``) to ``exten@context``."""

    def __init__(self, world: World, attempt: DialAttempt, transferer: Channel, exten: str, context: str):
        self.world = world
        self.attempt = attempt
        self.transferer = transferer
        self.transferee = attempt.caller
        self.orig = attempt.bridge
        self.target_text = f"Local/{exten}@{context}"
        self.target: Channel | None = None
        self.second: Bridge | None = None
        self.state = "dialing"   # dialing -> consulting -> done; "blonde": transferer gone, target ringing

    def start(self) -> bool:
        """Begin the consultation; False if the target does not exist in the dialplan."""
        world, transferer = self.world, self.transferer
        target = Target(self.target_text)
        exten, _, context = target.resource.partition("@")
        if self.orig is None or not world.dialplan.exists(context, exten):
            return False
        self.attempt.suspend(transferer)
        self.attempt.transfer = self
        transferer.controller = self
        start_moh(world, self.transferee)
        one = request(world, target, transferer)
        assert one is not None and one.local_peer is not None
        self.target = one
        one.controller = self
        one.observers.append(self)
        world.set_caller(one.local_peer, transferer.caller_num or transferer.resource, "")
        local_bridge(world, one, one.local_peer)
        self._dial_event("DialBegin", [("DialString", target.dialstring)])
        ring(world, one)
        return True

    def _dial_event(self, name: str, extra: list[tuple[str, object]]) -> None:
        assert self.target is not None
        self.world.emit(name, "call", snapshot(self.transferer) + snapshot(self.target, "Dest") + extra)

    # -- hooks (controller of the transferer and the target; observer of the target) ----

    def on_state(self, chan: Channel, state: int) -> None:
        if chan is not self.target or self.state not in ("dialing", "blonde"):
            return
        if state == RINGING:
            self._dial_event("DialState", [("DialStatus", "RINGING")])
        elif state == UP:
            self._dial_event("DialEnd", [("DialStatus", "ANSWER")])
            if self.state == "blonde":
                self._finish(chan)
            else:
                self.state = "consulting"
                self.second = self.world.new_bridge(owner=self)
                self.world.bridge_enter(self.second, self.transferer)
                self.world.bridge_enter(self.second, chan)

    def hangup_requested(self, chan: Channel) -> None:
        world = self.world
        if self.state == "orphan":
            self._end_orphan(chan)
        elif chan is self.transferer and self.state == "dialing":
            self.state = "blonde"
            chan.controller = None
            world.hangup(chan)
        elif chan is self.transferer and self.state == "consulting":
            self._finish(self.target)
        elif chan is self.target and self.state in ("dialing", "consulting"):
            self._back_to_caller()
        elif chan is self.target and self.state == "blonde":
            self._drop_target()
            self.state = "done"
            stop_moh(world, self.transferee)
            self.attempt.resume(None, swap=None)

    def redirect_requested(self, chan: Channel) -> None:
        """A consulted target redirected away goes where it was sent (it left the consultation, so the
        transferer is back with the transferee, as Asterisk's atxfer does on the target leaving); else a hangup."""
        if chan is self.target and self.state == "consulting":
            if self.second is not None:
                self.world.bridge_leave(self.second, chan)
            chan.observers.remove(self)
            chan.controller, self.target = None, None
            self._back_to_caller()
            self.world.start_pbx(chan)
        else:
            self.hangup_requested(chan)

    def member_left(self, chan: Channel) -> None:
        """Bridge owner hook (the consultation bridge)."""

    def transferee_gone(self) -> None:
        """The caller hung up during the consultation: transferer and target stay together."""
        self.attempt.transfer = None
        if self.state == "consulting":
            self.state = "orphan"
        else:
            self._drop_target()
            self.state = "done"
            if not self.transferer.dead:
                self.transferer.controller = None
                self.world.hangup(self.transferer)

    # -- outcomes ------------------------------------------------------------------------

    def _finish(self, target: Channel | None) -> None:
        """The target takes the transferer's seat in the original bridge."""
        world, transferer = self.world, self.transferer
        assert target is not None and self.orig is not None
        pairs: list[tuple[str, object]] = [("Result", "Success")]
        pairs += snapshot(transferer, "OrigTransferer") + bridge_block(self.orig, "Orig")
        if self.second is not None:
            pairs += snapshot(transferer, "SecondTransferer") + bridge_block(self.second, "Second")
        pairs += [("IsExternal", "No"), ("DestType", "Bridge"), ("DestBridgeUniqueid", self.orig.uniqueid)]
        pairs += snapshot(self.transferee, "Transferee") + snapshot(target, "TransferTarget")
        world.emit("AttendedTransfer", "call", pairs)
        if self.second is not None:
            world.bridge_leave(self.second, transferer)
            world.bridge_leave(self.second, target)
            world.destroy_bridge(self.second)
        self.state = "done"
        stop_moh(world, self.transferee)
        target.observers.remove(self)
        self.attempt.resume(target, swap=transferer if not transferer.dead else None)
        if not transferer.dead:
            transferer.controller = None
            transferer.hangupcause = transferer.hangupcause or 16
            world.hangup(transferer)

    def _back_to_caller(self) -> None:
        """The target hung up or never answered: the transferer returns to the caller."""
        world = self.world
        if self.second is not None:
            world.bridge_leave(self.second, self.transferer)
        self._drop_target()
        self.state = "done"
        stop_moh(world, self.transferee)
        self.attempt.resume(self.transferer, swap=None)

    def _drop_target(self) -> None:
        world, target = self.world, self.target
        if self.second is not None:
            world.destroy_bridge(self.second)
            self.second = None
        if target is not None and not target.dead:
            if self in target.observers:
                target.observers.remove(self)
            target.controller = None
            world.hangup(target)

    def _end_orphan(self, leaver: Channel) -> None:
        self.state = "done"
        world = self.world
        others = [c for c in (self.transferer, self.target) if c is not None and c is not leaver]
        if self.second is not None:
            world.bridge_leave(self.second, leaver)
            world.destroy_bridge(self.second)
            self.second = None
        for chan in [leaver, *others]:
            if not chan.dead:
                chan.controller = None
                chan.hangupcause = chan.hangupcause or 16
                world.hangup(chan)
