"""AMI list and variable actions: Getvar, Setvar, CoreShowChannels, Status, BridgeList, BridgeInfo."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctid.protocols.amiwire import Message

from .amiactions import action, find_channel, header
from .events import bridge_block, snapshot

if TYPE_CHECKING:  # pragma: no cover
    from .amiserver import AmiSession


@action("Getvar", "call,reporting", "Gets a channel variable or function value.")
def getvar(session: AmiSession, message: Message) -> None:
    name = header(message, "Variable")
    if not name:
        return session.error(message, "No variable specified")
    chan = None
    if header(message, "Channel"):
        chan = find_channel(session, message)
        if chan is None:
            return session.error(message, "No such channel")
    value = session.world.get_var(chan, name)
    session.ack(message, None, [("Variable", name), ("Value", value or "")])
    return None


@action("Setvar", "call", "Sets a channel variable or function value.")
def setvar(session: AmiSession, message: Message) -> None:
    name = header(message, "Variable")
    if not name:
        return session.error(message, "No variable specified")
    chan = None
    if header(message, "Channel"):
        chan = find_channel(session, message)
        if chan is None:
            return session.error(message, "No such channel")
    session.ack(message, "Variable Set")
    session.world.set_var(chan, name, message.get("Value") or "")
    return None



def _duration(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


@action("CoreShowChannels", "system,reporting", "List currently active channels.")
def core_show_channels(session: AmiSession, message: Message) -> None:
    world = session.world
    channels = world.live()
    session.list_start(message, "Channels will follow")
    for chan in channels:
        session.list_item(message, "CoreShowChannel", snapshot(chan) + [
            ("Application", chan.appl), ("ApplicationData", chan.data),
            ("Duration", _duration(world.now() - chan.created)),
            ("BridgeId", chan.bridge.uniqueid if chan.bridge is not None else ""),
        ])
    session.list_complete(message, "CoreShowChannelsComplete", len(channels))


@action("Status", "system,call,reporting", "List channel status.")
def status(session: AmiSession, message: Message) -> None:
    world = session.world
    name = header(message, "Channel")
    if name:
        chan = find_channel(session, message)
        if chan is None:
            return session.error(message, "No such channel")
        channels = [chan]
    else:
        channels = world.live()
    wanted = [v.strip() for v in (message.get("Variables") or "").split(",") if v.strip()]
    everything = header(message, "AllVariables").lower() in ("true", "yes", "1")
    session.list_start(message, "Channel status will follow")
    for chan in channels:
        body = [("Privilege", "Call")] + snapshot(chan) + [
            ("Type", chan.tech), ("DNID", chan.dnid),
            ("EffectiveConnectedLineNum", chan.connected_num or "<unknown>"),
            ("EffectiveConnectedLineName", chan.connected_name or "<unknown>"),
            ("TimeToHangup", 0), ("BridgeID", chan.bridge.uniqueid if chan.bridge is not None else ""),
            ("Application", chan.appl), ("Data", chan.data), ("Nativeformats", "(ulaw)"),
            ("Readformat", "ulaw"), ("Readtrans", ""), ("Writeformat", "ulaw"), ("Writetrans", ""),
            ("Callgroup", 0), ("Pickupgroup", 0), ("Seconds", int(world.now() - chan.created)),
        ]
        names = list(chan.variables) if everything else wanted
        body += [("Variable", f"{v}={world.get_var(chan, v) or ''}") for v in names]
        session.list_item(message, "Status", body, action_id_last=True)
    session.list_complete(message, "StatusComplete", len(channels), [("Items", len(channels))])
    return None


@action("BridgeList", "<none>", "Get a list of bridges in the system.")
def bridge_list(session: AmiSession, message: Message) -> None:
    kind = header(message, "BridgeType")
    bridges = [b for b in session.world.bridges.values() if not kind or b.kind == kind]
    session.list_start(message, "Bridge listing will follow")
    for item in bridges:
        session.list_item(message, "BridgeListItem", bridge_block(item))
    session.list_complete(message, "BridgeListComplete", len(bridges))


@action("BridgeInfo", "<none>", "Get information about a bridge.")
def bridge_info(session: AmiSession, message: Message) -> None:
    uid = header(message, "BridgeUniqueid")
    if not uid:
        return session.error(message, "BridgeUniqueid must be provided")
    item = session.world.bridges.get(uid)
    if item is None:
        return session.error(message, f"Bridge {uid} not found")
    session.list_start(message, "Details will follow")
    for chan in item.members:
        session.list_item(message, "BridgeInfoChannel", snapshot(chan))
    session.list_complete(message, "BridgeInfoComplete", len(item.members), bridge_block(item))
    return None
