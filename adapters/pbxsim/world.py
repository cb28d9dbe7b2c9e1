"""The simulated switch's state: channels, bridges, ids, and the event stream.

No sockets here.  Time comes from the injected clock (``IReactorTime``);
every state change emits the AMI event Asterisk would emit, in its field
order, to every subscriber (the AMI sessions, test recorders).

Asterisk runs one thread per channel; the World imitates that with a FIFO
run queue (:meth:`World.soon`): a channel that reacts to something another
channel did (a hangup, a redirect) does so from the queue, so events
interleave the way the captures show.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .events import (
    DOWN,
    RINGING,
    UP,
    AmiEvent,
    bridge_block,
    cause_text,
    snapshot,
)

if TYPE_CHECKING:  # pragma: no cover
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from .dialplan import Dialplan

log = Logger(namespace="ctid.pbxsim")

Subscriber = Callable[[AmiEvent], None]


class Controller(Protocol):
    """Whoever drives a channel that runs no dialplan (a Dial, an Originate, a bridge)."""

    def hangup_requested(self, chan: Channel) -> None: ...

    def redirect_requested(self, chan: Channel) -> None: ...


class Channel:
    """One leg: the fields of Asterisk's channel snapshot plus simulator state."""

    def __init__(self, world: World, name: str, tech: str, resource: str, uniqueid: str,
                 key: tuple[float, int], state: int, context: str, exten: str):
        self.world = world
        self.name = name
        self.tech = tech
        self.resource = resource
        self.uniqueid = uniqueid
        self.key = key
        self.linkedid = uniqueid
        self.linked_key = key
        self.state = state
        self.caller_num = ""
        self.caller_name = ""
        self.connected_num = ""
        self.connected_name = ""
        self.language = "en"
        self.accountcode = ""
        self.context = context
        self.exten = exten
        self.priority = 1
        self.dnid = ""
        self.created = world.clock.seconds()
        self.variables: dict[str, str] = {}
        self.appl = ""
        self.data = ""
        self.bridge: Bridge | None = None
        self.hangupcause = 0
        self.dead = False
        self.hangup_pending = False
        self.goto: tuple[str, str, int] | None = None
        self.running = False           # a dialplan or an application runs on it
        self.controller: Controller | None = None
        self.local_peer: Channel | None = None
        self.local_half = 0
        self.originated = False
        self.device: Any = None        # population behaviour (phone, caller, far end)
        self.observers: list[Any] = []
        self.mixmonitors: dict[str, str] = {}
        self.moh = False
        self.moving: Any = None        # a bridge owner this channel is being moved into
        self._waiter: tuple[Deferred[str], IDelayedCall | None] | None = None

    @property
    def up(self) -> bool:
        return self.state == UP

    def notify(self, hook: str, *args: object) -> None:
        """Call ``hook`` on the device and every observer that has it."""
        for target in [self.device, *self.observers]:
            method = getattr(target, hook, None)
            if method is not None:
                method(self, *args)

    def __repr__(self) -> str:
        return f"<Channel {self.name} {self.uniqueid}>"


class Bridge:
    """A basic two-party (or more) mixing bridge."""

    def __init__(self, uniqueid: str, owner: Any = None):
        self.uniqueid = uniqueid
        self.kind = "basic"
        self.technology = "simple_bridge"
        self.creator = ""
        self.name = ""
        self.members: list[Channel] = []
        self.owner = owner

    def peer_of(self, chan: Channel) -> Channel | None:
        """The first other member (two-party bridges have exactly one)."""
        return next((c for c in self.members if c is not chan), None)


class World:
    """All channels and bridges of one simulated Asterisk, shared by every AMI session."""

    def __init__(self, clock: IReactorTime, dialplan: Dialplan | None = None,
                 bridge_seed: int = 0, system_name: str = ""):
        from .dialplan import Dialplan

        self.clock = clock
        self.dialplan = dialplan or Dialplan.ctid()
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}
        self.globals: dict[str, str] = dict(self.dialplan.globals)
        #: Sound files play this many times faster than real time (see SimulatorSettings.media_speed).
        self.media_speed = 1.0
        self.astdb: dict[str, str] = {}
        self.devices: dict[str, Any] = {}
        self.trunk: Callable[[str], Any] | None = None
        self.agi: Any = None
        self.subscribers: list[Subscriber] = []
        self.started = clock.seconds()
        self.calls_processed = 0
        self.system_name = system_name
        self._unique_seq = 0
        self._serial = 0
        self._tech_seq: dict[str, int] = {}
        self._bridge_rng = random.Random(bridge_seed)
        self._queue: deque[tuple[Callable[..., object], tuple[object, ...]]] = deque()
        self._drain_call: IDelayedCall | None = None

    # -- events -------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.remove(subscriber)

    def emit(self, name: str, category: str, pairs: Iterable[tuple[str, object]]) -> AmiEvent:
        """Build one event and hand it to every subscriber."""
        event = AmiEvent(name, category, pairs)
        for subscriber in list(self.subscribers):
            subscriber(event)
        return event

    def chan_event(self, name: str, chan: Channel, extra: Iterable[tuple[str, object]] = (),
                   category: str = "call") -> AmiEvent:
        """An event made of the channel block plus ``extra`` fields (none once it hung up)."""
        if chan.dead:
            return AmiEvent(name, category, ())
        return self.emit(name, category, snapshot(chan) + list(extra))

    # -- the run queue and time ---------------------------------------------------------

    def soon(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` from the run queue (after the current step), in FIFO order."""
        self._queue.append((fn, args))
        if self._drain_call is None:
            self._drain_call = self.clock.callLater(0, self._drain)

    def _drain(self) -> None:
        self._drain_call = None
        while self._queue:
            fn, args = self._queue.popleft()
            try:
                fn(*args)
            except Exception:
                log.failure("pbxsim: internal error in a simulated channel")

    def pause(self) -> Deferred[None]:
        """A Deferred fired from the run queue: lets other channels take their turn."""
        d: Deferred[None] = Deferred()
        self.soon(d.callback, None)
        return d

    def sleep(self, chan: Channel, seconds: float | None) -> Deferred[str]:
        """Wait ``seconds`` (None: forever) or until the channel is interrupted.

        Fires with ``"timeout"`` or the interrupt reason (``"hangup"``,
        ``"goto"``, ``"peer"``, ``"digit"`` …).  A pending hangup or redirect
        fires it at once (from the run queue).
        """
        self.wake(chan, None)
        d: Deferred[str] = Deferred()
        call = None
        if seconds is not None:
            call = self.clock.callLater(max(0.0, seconds), self._timeout, chan, d)
        chan._waiter = (d, call)
        if chan.hangup_pending:
            self.wake(chan, "hangup")
        elif chan.goto is not None:
            self.wake(chan, "goto")
        elif chan.moving is not None:
            self.wake(chan, "move")
        return d

    def _timeout(self, chan: Channel, d: Deferred[str]) -> None:
        if chan._waiter is not None and chan._waiter[0] is d:
            chan._waiter = None
            d.callback("timeout")

    def wake(self, chan: Channel, reason: str | None) -> None:
        """Interrupt the channel's current wait; ``reason`` None cancels it silently."""
        waiter, chan._waiter = chan._waiter, None
        if waiter is None:
            return
        d, call = waiter
        if call is not None and call.active():
            call.cancel()
        if reason is not None:
            self.soon(d.callback, reason)

    def wake_now(self, chan: Channel, reason: str) -> bool:
        """Interrupt the channel's current wait synchronously; False if it was not waiting."""
        waiter, chan._waiter = chan._waiter, None
        if waiter is None:
            return False
        d, call = waiter
        if call is not None and call.active():
            call.cancel()
        d.callback(reason)
        return True

    def now(self) -> float:
        return self.clock.seconds()

    # -- ids and channels ---------------------------------------------------------------

    def _next_uniqueid(self) -> tuple[str, tuple[float, int]]:
        seq = self._unique_seq
        self._unique_seq += 1
        now = self.clock.seconds()
        prefix = f"{self.system_name}-" if self.system_name else ""
        return f"{prefix}{int(now)}.{seq}", (now, seq)

    def _channel_name(self, tech: str, resource: str) -> str:
        seq = self._tech_seq.get(tech, 0)
        self._tech_seq[tech] = seq + 1
        return f"{tech}/{resource}-{seq:08x}"

    def new_channel(self, tech: str, resource: str, *, state: int = DOWN, context: str = "default",
                    exten: str = "s", requestor: Channel | None = None, uniqueid: str | None = None,
                    name: str | None = None, announce: bool = True) -> Channel:
        """Allocate a channel (Uniqueid, name, Linkedid from ``requestor``) and emit Newchannel."""
        generated, key = self._next_uniqueid()
        chan = Channel(self, name or self._channel_name(tech, resource), tech, resource,
                       uniqueid or generated, key, state, context, exten)
        if requestor is not None:
            chan.linkedid, chan.linked_key = requestor.linkedid, requestor.linked_key
        self.channels[chan.name] = chan
        if announce:
            self.chan_event("Newchannel", chan)
        return chan

    def local_pair(self, exten: str, context: str, requestor: Channel | None = None,
                   ids: tuple[str | None, str | None] = (None, None)) -> tuple[Channel, Channel]:
        """A ``Local/exten@context-XXXXXXXX;1/;2`` pair; ;2 inherits ;1's Linkedid."""
        base = self._channel_name("Local", f"{exten}@{context}")
        one = self.new_channel("Local", f"{exten}@{context}", context=context, exten=exten,
                               requestor=requestor, uniqueid=ids[0], name=base + ";1")
        two = self.new_channel("Local", f"{exten}@{context}", state=4, context=context, exten=exten,
                               requestor=one, uniqueid=ids[1], name=base + ";2")
        one.local_peer, two.local_peer = two, one
        one.local_half, two.local_half = 1, 2
        return one, two

    def find(self, name: str) -> Channel | None:
        """A live channel by exact name or Uniqueid."""
        chan = self.channels.get(name)
        if chan is not None:
            return chan
        return next((c for c in self.channels.values() if c.uniqueid == name), None)

    def live(self) -> list[Channel]:
        """Live channels in creation order."""
        return list(self.channels.values())

    # -- channel state ------------------------------------------------------------------

    def set_state(self, chan: Channel, state: int) -> None:
        """Change the channel state (Newstate); a Local ;2 answering answers its ;1."""
        if chan.dead or chan.state == state:
            return
        chan.state = state
        self.chan_event("Newstate", chan)
        chan.notify("on_state", state)
        peer = chan.local_peer
        if chan.local_half == 2 and peer is not None and not peer.dead and state == UP:
            self.set_state(peer, UP)

    def indicate_ringing(self, chan: Channel) -> None:
        """The Ringing() indication: a Local ;2 makes its ;1 ring; others ring themselves."""
        target = chan.local_peer if chan.local_half == 2 else chan
        if target is not None and not target.dead and target.state not in (UP, RINGING):
            self.set_state(target, RINGING)

    def control(self, chan: Channel, what: str) -> None:
        """A control frame from the far end (``busy``, ``congestion``) for whoever dials it."""
        if not chan.dead:
            chan.notify("on_control", what)

    def set_var(self, chan: Channel | None, name: str, value: object, event: bool = True) -> None:
        """Set a channel (or global, ``chan`` None) variable and emit VarSet."""
        text = str(value)
        if chan is None:
            self.globals[name] = text
            if event:
                self.emit("VarSet", "dialplan",
                          [("Channel", "none"), ("Uniqueid", "none"), ("Variable", name), ("Value", text)])
            return
        chan.variables[name] = text
        if event:
            self.chan_event("VarSet", chan, [("Variable", name), ("Value", text)], "dialplan")

    def get_var(self, chan: Channel | None, name: str) -> str | None:
        """A variable, a few built-ins and functions, or None when unset."""
        from .dialplan import builtin_value

        if chan is not None:
            value = builtin_value(self, chan, name)
            if value is not None:
                return value
            if name in chan.variables:
                return chan.variables[name]
        return self.globals.get(name)

    def set_caller(self, chan: Channel, num: str, name: str = "") -> None:
        chan.caller_num, chan.caller_name = num, name
        self.chan_event("NewCallerid", chan, [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])

    def set_connected(self, chan: Channel, num: str, name: str = "") -> None:
        chan.connected_num, chan.connected_name = num, name
        self.chan_event("NewConnectedLine", chan)

    def newexten(self, chan: Channel, app: str, data: str, extension: str | None = None) -> None:
        chan.appl, chan.data = app, data
        ext = chan.exten if extension is None else extension
        self.chan_event("Newexten", chan, [("Extension", ext), ("Application", app), ("AppData", data)],
                        "dialplan")

    # -- hangups ------------------------------------------------------------------------

    def remote_hangup(self, chan: Channel, cause: int = 16) -> None:
        """The far end hung up (BYE/CANCEL): HangupRequest, then the channel goes."""
        if chan.dead or chan.hangup_pending:
            return
        self.queue_hangup(chan, cause)

    def queue_hangup(self, chan: Channel, cause: int) -> None:
        """``ast_queue_hangup_with_cause``: HangupRequest, then whoever runs it reacts."""
        if cause:
            chan.hangupcause = cause
        self.chan_event("HangupRequest", chan, [("Cause", cause)])
        self.request_hangup(chan)

    def soft_hangup(self, chan: Channel, flag: int) -> None:
        """``ast_softhangup``: SoftHangupRequest with the soft-hangup flag as Cause."""
        self.chan_event("SoftHangupRequest", chan, [("Cause", flag)])
        self.request_hangup(chan)

    def request_hangup(self, chan: Channel, cause: int = 0) -> None:
        """Ask the channel to go away without an event (AMI Hangup, Dial cancel …)."""
        if chan.dead:
            return
        if cause:
            chan.hangupcause = cause
        first = not chan.hangup_pending
        chan.hangup_pending = True
        if first and chan.bridge is not None:
            self.set_var(chan, "BRIDGEPEER", "")
        if chan.running:
            self.wake(chan, "hangup")
        elif chan.controller is not None:
            if first:
                self.soon(chan.controller.hangup_requested, chan)
        elif first:
            self.soon(self.hangup, chan)

    def hangup(self, chan: Channel) -> None:
        """``ast_hangup``: leave any bridge, tell the Local peer, emit Hangup."""
        if chan.dead:
            return
        chan.hangup_pending = True
        self.wake(chan, None)
        if chan.bridge is not None:
            bridge = chan.bridge
            self.bridge_leave(bridge, chan)
            if bridge.owner is not None:
                self.soon(bridge.owner.member_left, chan)
        peer = chan.local_peer
        if peer is not None and not peer.dead and not peer.hangup_pending:
            status = chan.variables.get("DIALSTATUS") if chan.local_half == 2 else None
            if status is not None:
                peer.hangupcause = chan.hangupcause
                self.set_var(peer, "CHANLOCALSTATUS", status)
            # A ;1 outside any bridge goes at once (seen in park-redirect.txt);
            # a bridged ;1 leaves after its bridge is torn down.
            if chan.local_half == 2 and peer.bridge is None and peer.controller is None:
                if chan.hangupcause:
                    peer.hangupcause = chan.hangupcause
                self.chan_event("HangupRequest", peer, [("Cause", chan.hangupcause)])
                self.hangup(peer)
            else:
                self.queue_hangup(peer, chan.hangupcause)
        self._final(chan)

    def _final(self, chan: Channel) -> None:
        chan.running = False
        self.channels.pop(chan.name, None)
        self.chan_event("Hangup", chan, [("Cause", chan.hangupcause), ("Cause-txt", cause_text(chan.hangupcause))])
        chan.dead = True
        chan.notify("on_hangup")

    # -- bridges ------------------------------------------------------------------------

    def new_bridge(self, owner: Any = None) -> Bridge:
        """A basic bridge (BridgeCreate)."""
        bridge = Bridge(str(uuid.UUID(int=self._bridge_rng.getrandbits(128), version=4)), owner)
        self.bridges[bridge.uniqueid] = bridge
        self.emit("BridgeCreate", "call", bridge_block(bridge))
        return bridge

    def bridge_enter(self, bridge: Bridge, chan: Channel, swap: Channel | None = None) -> None:
        """Add a channel (BridgeEnter); every member switches to the oldest Linkedid."""
        bridge.members.append(chan)
        chan.bridge = bridge
        self._update_linkedids(bridge)
        extra = [("SwapUniqueid", swap.uniqueid)] if swap is not None else []
        self.emit("BridgeEnter", "call", bridge_block(bridge) + snapshot(chan) + extra)
        for member in bridge.members:
            member.notify("on_bridged", bridge)

    def _update_linkedids(self, bridge: Bridge) -> None:
        oldest = min(bridge.members, key=lambda c: c.linked_key)
        for member in bridge.members:
            member.linkedid, member.linked_key = oldest.linkedid, oldest.linked_key

    def bridge_leave(self, bridge: Bridge, chan: Channel) -> None:
        """Remove a channel (BridgeLeave)."""
        if chan not in bridge.members:
            return
        bridge.members.remove(chan)
        chan.bridge = None
        self.emit("BridgeLeave", "call", bridge_block(bridge) + snapshot(chan))
        chan.notify("on_unbridged", bridge)

    def destroy_bridge(self, bridge: Bridge) -> None:
        """Dissolve a bridge (BridgeDestroy); remaining members are put out first."""
        if bridge.uniqueid not in self.bridges:
            return
        for member in list(bridge.members):
            self.bridge_leave(bridge, member)
        del self.bridges[bridge.uniqueid]
        self.emit("BridgeDestroy", "call", bridge_block(bridge))

    # -- redirects ----------------------------------------------------------------------

    def redirect(self, chan: Channel, context: str, exten: str, priority: int) -> None:
        """``ast_async_goto``: the channel continues the dialplan at the target."""
        chan.goto = (context, exten, priority)
        if chan.running:
            self.wake(chan, "goto")
        elif chan.controller is not None:
            self.soon(chan.controller.redirect_requested, chan)
        else:
            self.soon(self.start_pbx, chan)

    def move_to_bridge(self, chan: Channel, owner: Any) -> None:
        """Pull a channel out of what it is doing into ``owner``'s bridge.

        A dialplan channel leaves its application and waits in the bridge
        (``owner.hold``); a controlled one is released by its controller and
        ``owner.join``-ed; an idle one joins at once.
        """
        chan.moving = owner
        if chan.running:
            self.wake(chan, "move")
        elif chan.controller is not None:
            self.soon(chan.controller.redirect_requested, chan)
        else:
            chan.moving = None
            self.soon(owner.join, chan)

    def serial(self) -> int:
        """A process-wide counter for ids that are not Uniqueids (MixMonitor, AGI threads …)."""
        self._serial += 1
        return self._serial

    def start_pbx(self, chan: Channel) -> Deferred[None]:
        """Run the dialplan on ``chan`` (at its goto target, if any)."""
        from .dialplan import run_pbx

        return Deferred.fromCoroutine(run_pbx(self, chan))
