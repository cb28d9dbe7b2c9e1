"""AMI call-control actions: Originate, Redirect, Hangup, transfers, Bridge, MixMonitor, PlayDTMF, UserEvent."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from ctid.protocols.amiwire import Message

from .amiactions import action, find_channel, header
from .dial import DialAttempt
from .features import mute_mixmonitor, play_dtmf, start_mixmonitor, stop_mixmonitor
from .originate import Originate, OriginateRequest, parse_callerid
from .transfer import AttendedTransfer, blind_transfer, bridge_channels

if TYPE_CHECKING:  # pragma: no cover
    from .amiserver import AmiSession


@action("Originate", "originate", "Originate a call.")
def originate(session: AmiSession, message: Message) -> Deferred[object] | None:
    world = session.world
    channel, context, exten = header(message, "Channel"), header(message, "Context"), header(message, "Exten")
    app, priority_text = header(message, "Application"), header(message, "Priority")
    timeout_text = header(message, "Timeout")
    if not channel:
        session.error(message, "Channel not specified")
        return None
    priority = 1
    if priority_text:
        if re.match(r"^-?\d+$", priority_text):
            priority = int(priority_text)
        else:
            match = world.dialplan.match(context, exten)
            if match is None or priority_text not in match.labels:
                session.error(message, "Invalid priority")
                return None
            priority = match.labels[priority_text]
    timeout = 30000
    if timeout_text:
        if not re.match(r"^-?\d+$", timeout_text):
            session.error(message, "Invalid timeout")
            return None
        timeout = int(timeout_text)
    if "/" not in channel:
        session.error(message, "Invalid channel")
        return None
    for key in ("ChannelId", "OtherChannelId"):
        if len(header(message, key)) > 149:
            session.error(message, "Uniqueid length exceeds maximum of 149")
            return None
    if not app:
        if not exten or not context:
            session.error(message, "Originate with 'Exten' requires 'Context' and 'Priority'")
            return None
        if not world.dialplan.exists(context, exten, priority):
            session.error(message, "Extension does not exist.")
            return None
    num, name = parse_callerid(message.get("CallerID") or "")
    variables = []
    for line in message.getall("Variable"):
        for item in line.split(","):
            key, sep, value = item.partition("=")
            if sep and key.strip():
                variables.append((key.strip(), value))
    req = OriginateRequest(
        channel=channel, context=context, exten=exten, priority=priority, application=app,
        data=message.get("Data") or "", timeout=max(timeout, 0) / 1000.0, caller_num=num, caller_name=name,
        variables=variables, account=header(message, "Account"), channel_id=header(message, "ChannelId") or None,
        other_channel_id=header(message, "OtherChannelId") or None, action_id=message.get("ActionID"),
    )
    if (message.get("Async") or "").strip().lower() in ("true", "yes", "1", "on", "y", "t"):
        session.ack(message, "Originate successfully queued")
        world.soon(Originate(world, req, lambda pairs: world.emit("OriginateResponse", "call", pairs)).start)
        return None
    done: Deferred[object] = Deferred()

    def finished(pairs: list[tuple[str, object]]) -> None:
        ok = dict(pairs).get("Response") == "Success"
        session.ack(message, "Originate successfully queued") if ok else session.error(message, "Originate failed")
        done.callback(None)

    world.soon(Originate(world, req, finished).start)
    return done


@action("Redirect", "call", "Redirect (transfer) a call.")
def redirect(session: AmiSession, message: Message) -> None:
    world = session.world
    for key, text in (("Channel", "Channel not specified"), ("Context", "Context not specified"),
                      ("Exten", "Exten not specified"), ("Priority", "Priority not specified")):
        if not header(message, key):
            return session.error(message, text)
    context, exten = header(message, "Context"), header(message, "Exten")
    priority = _priority(session, context, exten, header(message, "Priority"))
    if priority is None:
        return session.error(message, "Priority is invalid")
    chan = find_channel(session, message)
    if chan is None:
        return session.error(message, f"Channel does not exist: {header(message, 'Channel')}")
    if chan.hangup_pending:
        return session.error(message, "Redirect failed, channel not up.")
    extra_name = header(message, "ExtraChannel")
    if not extra_name:
        session.ack(message, "Redirect successful")
        world.redirect(chan, context, exten, priority)
        return None
    extra = world.find(extra_name)
    if extra is None:
        return session.error(message, f"ExtraChannel does not exist: {extra_name}")
    if extra.hangup_pending:
        return session.error(message, "Redirect failed, extra channel not up.")
    e_context = header(message, "ExtraContext") or context
    e_exten = header(message, "ExtraExten") or exten
    e_priority = _priority(session, e_context, e_exten, header(message, "ExtraPriority")) or priority
    session.ack(message, "Dual Redirect successful")
    # Like AST_FLAG_BRIDGE_DUAL_REDIRECT_WAIT: a leg with no dialplan of its own (a Dial's callee) is
    # released first, so its peer's Dial ending does not hang it up; both go where they were sent.
    moves = sorted([(chan, context, exten, priority), (extra, e_context, e_exten, e_priority)],
                   key=lambda move: move[0].running)
    for target, where_context, where_exten, where_priority in moves:
        world.redirect(target, where_context, where_exten, where_priority)
    return None


def _priority(session: AmiSession, context: str, exten: str, text: str) -> int | None:
    if not text:
        return None
    if re.match(r"^\d+$", text):
        return int(text) if int(text) > 0 else None
    match = session.world.dialplan.match(context, exten)
    return match.labels.get(text) if match is not None else None


@action("Hangup", "system,call", "Hangup channel.")
def hangup(session: AmiSession, message: Message) -> None:
    world, name = session.world, header(message, "Channel")
    if not name:
        return session.error(message, "No channel specified")
    cause_text = header(message, "Cause")
    cause = 0
    if cause_text:
        if not cause_text.isdigit():
            return session.error(message, f"Invalid cause: {cause_text}")
        cause = int(cause_text)
    if len(name) > 1 and name.startswith("/") and name.endswith("/"):
        try:
            pattern = re.compile(name[1:-1])
        except re.error:
            return session.error(message, "Invalid regex")
        session.list_start(message, "Channels hung up will follow")
        victims = [c for c in world.live() if pattern.search(c.name)]
        for victim in victims:
            session.list_item(message, "ChannelHungup", [("Channel", victim.name)])
            world.request_hangup(victim, cause or 16)
        session.list_complete(message, "ChannelsHungupListComplete", len(victims))
        return None
    chan = world.find(name) if name in world.channels else None
    if chan is None:
        return session.error(message, "No such channel")
    session.ack(message, "Channel Hungup")
    world.request_hangup(chan, cause or 16)
    return None


@action("Atxfer", "call", "Attended transfer.")
def atxfer(session: AmiSession, message: Message) -> None:
    world = session.world
    if not header(message, "Channel"):
        return session.error(message, "No channel specified")
    exten = header(message, "Exten")
    if not exten:
        return session.error(message, "No extension specified")
    chan = find_channel(session, message)
    if chan is None:
        return session.error(message, "Channel specified does not exist")
    context = header(message, "Context") or chan.context
    session.ack(message, "Atxfer successfully queued")
    attempt = chan.controller
    if isinstance(attempt, DialAttempt) and attempt.callee is chan and attempt.bridge is not None:
        transfer = AttendedTransfer(world, attempt, chan, exten, context)
        world.soon(transfer.start)
    return None


@action("BlindTransfer", "call", "Blind transfer channel(s) to the given destination")
def blind(session: AmiSession, message: Message) -> None:
    if not header(message, "Channel"):
        return session.error(message, "No channel specified")
    exten = header(message, "Exten")
    if not exten:
        return session.error(message, "No extension specified")
    chan = find_channel(session, message)
    if chan is None:
        return session.error(message, "Channel specified does not exist")
    context = header(message, "Context") or chan.context
    if blind_transfer(session.world, chan, exten, context) == "Success":
        session.ack(message, "Transfer succeeded")
    else:
        session.error(message, "Transfer invalid")
    return None


@action("Bridge", "call", "Bridge two channels already in the PBX.")
def bridge(session: AmiSession, message: Message) -> None:
    one_name, two_name = header(message, "Channel1"), header(message, "Channel2")
    if not one_name or not two_name:
        return session.error(message, "Missing channel parameter in request")
    one = session.world.find(one_name)
    if one is None:
        return session.error(message, f"Channel1 does not exist: {one_name}")
    two = session.world.find(two_name)
    if two is None:
        return session.error(message, f"Channel2 does not exist: {two_name}")
    session.ack(message, "Channels have been bridged")
    bridge_channels(session.world, one, two)
    return None


@action("PlayDTMF", "call", "Play DTMF signal on a specific channel.")
def play_dtmf_action(session: AmiSession, message: Message) -> None:
    chan = find_channel(session, message)
    if chan is None:
        return session.error(message, "Channel not found")
    digit = header(message, "Digit")
    if not digit:
        return session.error(message, "No digit specified")
    duration = int(header(message, "Duration")) if header(message, "Duration").isdigit() else 100
    receive = header(message, "Receive").lower() in ("true", "yes", "1", "on")
    play_dtmf(session.world, chan, digit, duration or 100, receive)
    session.ack(message, "DTMF successfully queued")
    return None


@action("MixMonitor", "system,call", "Record a call and mix the audio during the recording.")
def mixmonitor(session: AmiSession, message: Message) -> None:
    if not header(message, "Channel"):
        return session.error(message, "No channel specified")
    chan = find_channel(session, message)
    if chan is None:
        return session.error(message, "No such channel")
    options = message.get("Options") or ""
    ident = start_mixmonitor(session.world, chan, header(message, "File"), options)
    session.ack(message, None, [("MixMonitorID", ident)] if "i(" in options else [])
    return None


@action("StopMixMonitor", "system,call", "Stop a mixmonitor.")
def stopmixmonitor(session: AmiSession, message: Message) -> None:
    if not header(message, "Channel"):
        return session.error(message, "No channel specified")
    chan = find_channel(session, message)
    if chan is None:
        return session.error(message, "No such channel")
    if not stop_mixmonitor(session.world, chan, header(message, "MixMonitorID") or None):
        return session.error(message, "Could not stop monitoring channel")
    session.ack(message)
    return None


@action("MixMonitorMute", "system,call", "Mute / unMute a Mixmonitor recording.")
def mixmonitor_mute(session: AmiSession, message: Message) -> None:
    if not header(message, "Channel"):
        return session.error(message, "No channel specified")
    direction = header(message, "Direction").lower()
    if not direction:
        return session.error(message, "No direction specified. Must be read, write or both")
    if direction not in ("read", "write", "both"):
        return session.error(message, "Invalid direction specified. Must be read, write or both")
    chan = find_channel(session, message)
    if chan is None:
        return session.error(message, "No such channel")
    state = header(message, "State").lower() in ("1", "true", "yes", "on")
    mute_mixmonitor(session.world, chan, direction, state)
    session.ack(message)
    return None


@action("UserEvent", "user", "Send an arbitrary event.")
def user_event(session: AmiSession, message: Message) -> None:
    name = header(message, "UserEvent")
    if not name:
        return session.error(message, "UserEvent header missing")
    body = [(k, v) for k, v in message.pairs if k.lower() not in ("action", "userevent")]
    session.ack(message, "Event Sent")
    session.world.emit("UserEvent", "user", [("UserEvent", name)] + body)
    return None
