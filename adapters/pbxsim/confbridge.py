"""ConfBridge: the dialplan application and the AMI ``ConfbridgeKick`` action.

``ConfBridge(name[,bridge_profile[,user_profile]])`` answers the channel and
puts it in the conference ``name`` (created on the first join) until it
hangs up, is redirected or kicked.  Events as app_confbridge.c sends them
(Asterisk 22): ``BridgeCreate`` and ``ConfbridgeStart`` when the conference
is made, ``ConfbridgeJoin`` (Conference, bridge block, channel block,
Admin, Muted) then ``BridgeEnter`` for each user, ``BridgeLeave`` then
``ConfbridgeLeave`` (… Admin) when it goes, ``ConfbridgeEnd`` then
``BridgeDestroy`` after the last one.  The bridge is a ``base`` bridge with
``softmix`` technology, created by ``ConfBridge`` and named after the
conference; its members keep their own Linkedids (only basic bridges
re-link, bridge_basic.c).  A kicked user continues in the dialplan with
``CONFBRIDGE_RESULT=KICKED``.  Profiles are accepted by name, not read:
every user is a plain participant (``Admin: No``, ``Muted: No``).
"""

from __future__ import annotations

import uuid
import weakref
from typing import TYPE_CHECKING

from ctid.protocols.amiwire import Message

from .amiactions import action, header
from .apps import answer, application, interrupted, split_args
from .events import bridge_block, snapshot
from .world import Bridge

if TYPE_CHECKING:  # pragma: no cover
    from .amiserver import AmiSession
    from .world import Channel, World

_NAMESPACE = uuid.UUID("6f0c4b1e-9d4a-4c55-8a83-3c3b2f1b7a10")
_CONFERENCES: weakref.WeakKeyDictionary[World, dict[str, Conference]] = weakref.WeakKeyDictionary()


def conferences(world: World) -> dict[str, Conference]:
    """The live conferences of ``world`` by name."""
    return _CONFERENCES.setdefault(world, {})


class Conference:
    """One ConfBridge conference: its softmix bridge and its users."""

    def __init__(self, world: World, name: str):
        self.world, self.name = world, name
        bridge_id = str(uuid.uuid5(_NAMESPACE, f"{world.started}/{world.serial()}"))
        self.bridge = Bridge(bridge_id, owner=self)
        self.bridge.kind, self.bridge.technology = "base", "softmix"
        self.bridge.creator, self.bridge.name = "ConfBridge", name
        self.users: set[Channel] = set()
        self.kicked: set[Channel] = set()
        world.bridges[bridge_id] = self.bridge
        world.emit("BridgeCreate", "call", bridge_block(self.bridge))
        world.emit("ConfbridgeStart", "call", self._head())

    def _head(self) -> list[tuple[str, object]]:
        return [("Conference", self.name), *bridge_block(self.bridge)]

    def join(self, chan: Channel) -> None:
        """ConfbridgeJoin, then BridgeEnter (no Linkedid change)."""
        world, bridge = self.world, self.bridge
        world.emit("ConfbridgeJoin", "call", self._head() + snapshot(chan) + [("Admin", "No"), ("Muted", "No")])
        self.users.add(chan)
        bridge.members.append(chan)
        chan.bridge = bridge
        world.emit("BridgeEnter", "call", bridge_block(bridge) + snapshot(chan))
        for member in bridge.members:
            member.notify("on_bridged", bridge)

    def leave(self, chan: Channel) -> None:
        """BridgeLeave, ConfbridgeLeave; the last user out ends the conference."""
        world = self.world
        if chan not in self.users:
            return
        self.users.discard(chan)
        self.kicked.discard(chan)
        world.bridge_leave(self.bridge, chan)
        world.emit("ConfbridgeLeave", "call", self._head() + snapshot(chan) + [("Admin", "No")])
        if not self.users:
            world.emit("ConfbridgeEnd", "call", self._head())
            world.destroy_bridge(self.bridge)
            conferences(world).pop(self.name, None)

    def kick(self, who: str) -> int:
        """Remove the user named ``who`` (``all``, ``participants``: everyone); how many were kicked."""
        victims = [c for c in self.bridge.members if who in ("all", "participants") or c.name.lower() == who.lower()]
        for chan in victims:
            self.kicked.add(chan)
            self.world.wake(chan, "kick")
        return len(victims)

    def member_left(self, chan: Channel) -> None:
        """Bridge owner hook: a user hung up from outside the application (already out of the bridge)."""
        self.leave(chan)


@application("ConfBridge")
async def app_confbridge(world: World, chan: Channel, data: str) -> int:
    """Join the conference named by the first argument until hung up, redirected or kicked."""
    args = split_args(data)
    name = args[0] if args else ""
    if not name:
        return -1
    answer(world, chan)
    conference = conferences(world).get(name)
    if conference is None:
        conference = conferences(world)[name] = Conference(world, name)
    conference.join(chan)
    reason = await world.sleep(chan, None)
    if chan.dead:
        return -1
    kicked = chan in conference.kicked
    conference.leave(chan)
    if kicked or reason == "hangup":
        world.set_var(chan, "CONFBRIDGE_RESULT", "KICKED" if kicked else "HANGUP")
    return 0 if kicked else interrupted(reason)


@action("ConfbridgeKick", "call", "Kick a Confbridge user.")
def confbridge_kick(session: AmiSession, message: Message) -> None:
    name, who = header(message, "Conference"), header(message, "Channel")
    if not name:
        return session.error(message, "No Conference name provided.")
    if not who:
        return session.error(message, "No channel name provided.")
    conference = conferences(session.world).get(name)
    if conference is None:
        return session.error(message, "No Conference by that name found.")
    if not conference.kick(who):
        return session.error(message, "No Channel by that name found in Conference.")
    session.ack(message, "User kicked")
    return None
