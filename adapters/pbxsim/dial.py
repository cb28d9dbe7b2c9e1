"""The Dial application: request a callee, ring it, bridge on answer, tear down.

Event order follows app_dial as captured in park-redirect.txt: the eleven
``VarSet`` resets, the callee's creation block, ``DialBegin``,
``DialState RINGING``, ``DialEnd``, then ``BridgeCreate`` and ``BridgeEnter``
×2; at the end ``BridgeLeave`` ×2 before ``BridgeDestroy`` and ``Hangup``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .apps import application, split_args
from .events import RINGING, UP, bridge_block, snapshot

if TYPE_CHECKING:  # pragma: no cover
    from .world import Bridge, Channel, World

RESET_VARS = (
    "DIALSTATUS", "DIALEDPEERNUMBER", "DIALEDPEERNAME", "ANSWEREDTIME", "ANSWEREDTIME_MS",
    "DIALEDTIME", "DIALEDTIME_MS", "RINGTIME", "RINGTIME_MS", "PROGRESSTIME", "PROGRESSTIME_MS",
)
CAUSE_STATUS = {17: "BUSY", 34: "CONGESTION", 1: "CHANUNAVAIL", 3: "CHANUNAVAIL", 20: "CHANUNAVAIL"}


class Target:
    """A parsed dial string: ``PJSIP/1001``, ``PJSIP/138…@trunk``, ``Local/x@ctx[/n]``."""

    def __init__(self, text: str):
        self.text = text.strip()
        tech, _, resource = self.text.partition("/")
        self.tech = {"pjsip": "PJSIP", "local": "Local"}.get(tech.lower(), tech)
        if self.tech == "Local" and resource.endswith("/n"):
            resource = resource[:-2]
        self.resource = resource

    @property
    def dialstring(self) -> str:
        return self.resource


def request(world: World, target: Target, requestor: Channel | None,
            ids: tuple[str | None, str | None] = (None, None)) -> Channel | None:
    """``ast_request``: make the outgoing channel (Newchannel), or None if unavailable."""
    if target.tech == "PJSIP":
        ext, _, host = target.resource.partition("@")
        if host == "trunk" and world.trunk is not None and ext:
            device = world.trunk(ext)
            name = "trunk"
        elif not host and ext in world.devices:
            device, name = world.devices[ext], ext
        else:
            return None
        chan = world.new_channel("PJSIP", name, context=getattr(device, "context", "default"),
                                 exten="s", requestor=requestor, uniqueid=ids[0])
        chan.device = device
        chan.dnid = ext
        return chan
    if target.tech == "Local":
        exten, _, context = target.resource.partition("@")
        if not world.dialplan.exists(context or "default", exten):
            return None
        one, _two = world.local_pair(exten, context or "default", requestor, ids)
        return one
    return None


def ring(world: World, chan: Channel) -> None:
    """Start ringing a PJSIP callee (its device decides); Local ;2 runs its dialplan instead."""
    if chan.tech == "PJSIP" and chan.device is not None:
        chan.device.ring(world, chan)
    elif chan.local_peer is not None:
        world.start_pbx(chan.local_peer)


class DialAttempt:
    """One Dial() from ``caller`` to a single target; drives the callee until it is gone."""

    def __init__(self, world: World, caller: Channel, target: Target, timeout: float | None):
        self.world = world
        self.caller = caller
        self.target = target
        self.timeout = timeout
        self.callee: Channel | None = None
        self.bridge: Bridge | None = None
        self.started = world.now()
        self.answered_at = 0.0
        self.rang = False
        self.callee_left = ""
        self.go_on = False  # Dial's g option
        self.early = ""
        self.transfer: Any = None

    # -- callee hooks (the attempt is the callee's controller and observer) --------------

    def on_state(self, chan: Channel, state: int) -> None:
        world = self.world
        if state == RINGING and not self.rang:
            self.rang = True
            elapsed = world.now() - self.started
            world.set_var(self.caller, "RINGTIME", int(elapsed))
            world.set_var(self.caller, "RINGTIME_MS", int(elapsed * 1000))
            world.soon(self._dial_state, "RINGING")
        elif state == UP and self.bridge is None:
            self._signal("answer")

    def on_control(self, chan: Channel, what: str) -> None:
        if self.bridge is None:
            self._signal(what)

    def hangup_requested(self, chan: Channel) -> None:
        if not self.caller.dead:
            self.callee_left = "hangup"
            self._signal("peer" if self.bridge is not None else "gone")

    def redirect_requested(self, chan: Channel) -> None:
        if self.bridge is not None and not self.caller.dead:
            self.callee_left = "goto"
            self._signal("peer")

    def _signal(self, reason: str) -> None:
        """Wake the Dial; if it is not waiting yet, keep the news for when it does."""
        if not self.world.wake_now(self.caller, reason) and not self.early:
            self.early = reason

    def _dial_state(self, status: str) -> None:
        if self.callee is not None and not self.callee.dead and self.bridge is None:
            self.world.emit("DialState", "call", snapshot(self.caller) + snapshot(self.callee, "Dest")
                            + [("DialStatus", status)])

    # -- the dial -----------------------------------------------------------------------

    async def run(self) -> int:
        world, caller = self.world, self.caller
        callee = request(world, self.target, caller)
        if callee is None:
            world.set_var(caller, "DIALSTATUS", "CHANUNAVAIL")
            return 0
        self.callee = callee
        callee.controller = self
        callee.observers.append(self)
        self._announce(callee)
        world.calls_processed += 1
        if callee.tech == "Local":
            ring(world, callee)
        self._dial_event("DialBegin", [("DialString", self.target.dialstring)])
        if callee.tech != "Local":
            ring(world, callee)
        reason = self.early or await world.sleep(caller, self.timeout)
        self.early = ""
        if reason == "answer" and not callee.dead:
            return await self._connected()
        return await self._failed(reason)

    def _announce(self, callee: Channel) -> None:
        """The callee's creation block as app_dial emits it."""
        world, caller = self.world, self.caller
        number = self.target.dialstring
        world.set_var(callee, "DIALEDPEERNUMBER", number)
        callee.exten = caller.exten
        callee.caller_num, callee.caller_name = caller.exten, ""
        callee.connected_num, callee.connected_name = caller.caller_num, caller.caller_name
        world.newexten(callee, "AppDial", "(Outgoing Line)")
        world.set_caller(callee, callee.caller_num, callee.caller_name)
        world.set_connected(callee, callee.connected_num, callee.connected_name)
        two = callee.local_peer
        if two is not None:
            world.set_var(two, "DIALEDPEERNUMBER", number)
            two.connected_num, two.connected_name = caller.exten, ""
            world.set_caller(two, caller.caller_num, caller.caller_name)
            world.set_connected(two, two.connected_num, two.connected_name)
            local_bridge(world, callee, two)

    def _dial_event(self, name: str, extra: list[tuple[str, object]]) -> None:
        assert self.callee is not None
        self.world.emit(name, "call", snapshot(self.caller) + snapshot(self.callee, "Dest") + extra)

    async def _failed(self, reason: str) -> int:
        world, caller, callee = self.world, self.caller, self.callee
        assert callee is not None
        if reason == "gone":
            status = CAUSE_STATUS.get(callee.hangupcause, "NOANSWER")
        else:
            status = {"timeout": "NOANSWER", "busy": "BUSY", "congestion": "CONGESTION"}.get(reason, "CANCEL")
        if not callee.dead:
            self._dial_event("DialEnd", [("DialStatus", status)])
            if reason != "gone":
                callee.hangupcause = {"busy": 17, "congestion": 34}.get(reason, 0)
            world.hangup(callee)
        world.set_var(caller, "DIALSTATUS", status)
        if reason == "hangup":
            return -1
        await world.pause()
        return 0

    async def _connected(self) -> int:
        world, caller, callee = self.world, self.caller, self.callee
        assert callee is not None
        self.answered_at = world.now()
        world.set_var(caller, "DIALSTATUS", "ANSWER")
        world.set_var(caller, "DIALEDPEERNAME", callee.name)
        world.set_var(caller, "DIALEDPEERNUMBER", self.target.dialstring)
        callee.exten = ""
        self._dial_event("DialEnd", [("DialStatus", "ANSWER")])
        if caller.state != UP:
            world.set_state(caller, UP)
        bridge = self.bridge = world.new_bridge(owner=self)
        world.newexten(callee, "AppDial", "(Outgoing Line)")
        world.bridge_enter(bridge, callee)
        world.bridge_enter(bridge, caller)
        world.set_var(callee, "BRIDGEPEER", caller.name)
        world.set_var(caller, "BRIDGEPEER", callee.name)
        reason = self.early or await world.sleep(caller, None)
        return self._teardown(reason)

    def _teardown(self, reason: str) -> int:
        world, caller, callee, bridge = self.world, self.caller, self.callee, self.bridge
        assert bridge is not None
        leaver, stayer = (callee, caller) if reason == "peer" else (caller, callee)
        for chan in (leaver, stayer):
            if chan is not None and chan.bridge is not None and not (chan is leaver and chan.hangup_pending):
                world.set_var(chan, "BRIDGEPEER", "")
        for chan in (leaver, stayer):
            if chan is not None:
                world.bridge_leave(bridge, chan)
        talked, dialed = world.now() - self.answered_at, world.now() - self.started
        world.set_var(caller, "ANSWEREDTIME", int(talked))
        world.set_var(caller, "ANSWEREDTIME_MS", int(talked * 1000))
        world.set_var(caller, "DIALEDTIME", int(dialed))
        world.set_var(caller, "DIALEDTIME_MS", int(dialed * 1000))
        world.destroy_bridge(bridge)
        cause = self._release(callee)
        if self.transfer is not None:
            self.transfer.transferee_gone()
        world.set_var(caller, "DIALSTATUS", "ANSWER")
        if caller.goto is not None or caller.moving is not None or (reason == "peer" and self.go_on):
            return 0
        caller.hangupcause = caller.hangupcause or cause or 16
        return -1

    def _release(self, callee: Channel | None) -> int:
        """Let the callee go: hang it up, or hand it to where it was redirected/moved."""
        if callee is None or callee.dead:
            return callee.hangupcause if callee is not None else 0
        world = self.world
        callee.controller = None
        if self in callee.observers:
            callee.observers.remove(self)
        if self.callee_left == "goto" and callee.moving is not None:
            owner, callee.moving = callee.moving, None
            owner.join(callee)
        elif self.callee_left == "goto":
            world.start_pbx(callee)
        else:
            callee.hangupcause = callee.hangupcause or 16
            world.hangup(callee)
        return callee.hangupcause

    # -- attended transfer support -------------------------------------------------------

    def suspend(self, chan: Channel) -> None:
        """The callee steps out of the bridge to consult (the caller stays, on hold)."""
        assert self.bridge is not None
        self.world.bridge_leave(self.bridge, chan)
        if self in chan.observers:
            chan.observers.remove(self)
        chan.controller = None
        self.callee = None

    def resume(self, chan: Channel | None, swap: Channel | None) -> None:
        """A callee (the old one or the transfer target) takes the bridge seat again."""
        self.transfer = None
        if chan is None or self.bridge is None or self.caller.dead:
            self._signal("peer")
            return
        self.callee = chan
        chan.controller = self
        chan.observers.append(self)
        world = self.world
        world.bridge_enter(self.bridge, chan, swap=swap)
        world.set_var(chan, "BRIDGEPEER", self.caller.name)
        world.set_var(self.caller, "BRIDGEPEER", chan.name)

    def member_left(self, chan: Channel) -> None:
        """Bridge owner hook: a callee that vanished without asking ends the call like a hangup."""
        if chan is self.callee and not self.caller.dead:
            self.callee_left = "hangup"
            self._signal("peer")


def local_bridge(world: World, one: Channel, two: Channel) -> None:
    """The LocalBridge event linking the two halves of a Local channel."""
    world.emit("LocalBridge", "call", snapshot(one, "LocalOne") + snapshot(two, "LocalTwo")
               + [("Context", two.context), ("Exten", two.exten), ("LocalOptimization", "Yes")])


@application("Dial")
async def app_dial(world: World, chan: Channel, data: str) -> int:
    """Dial(target[,timeout[,options]]): one target; of the options only ``g`` (go on when the callee hangs up)."""
    args = split_args(data)
    for name in RESET_VARS:
        world.set_var(chan, name, "")
    timeout = None
    if len(args) > 1 and args[1]:
        try:
            timeout = float(args[1]) if float(args[1]) > 0 else None
        except ValueError:
            timeout = None
    target = Target(args[0] if args else "")
    attempt = DialAttempt(world, chan, target, timeout)
    attempt.go_on = len(args) > 2 and "g" in args[2]
    return await attempt.run()


__all__ = ["DialAttempt", "Target", "app_dial", "bridge_block", "local_bridge", "request", "ring"]
