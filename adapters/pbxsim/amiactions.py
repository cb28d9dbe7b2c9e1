"""AMI actions: the registry, dispatch, session actions (Login, Ping, Events …) and Command.

Call control lives in :mod:`.amicalls`, list and variable actions in
:mod:`.amilists`; each module registers its handlers with :func:`action`.

``dispatch(session, message)`` looks the action up (case-insensitive),
enforces "Permission denied" before login, and calls it.  A handler may
return a Deferred; the session then waits for it before the next action
(a synchronous Originate blocks the connection, as in Asterisk).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ctid.protocols.amiwire import Message

from .amiserver import peer_text
from .events import AMI_VERSION, ASTERISK_VERSION, STATE_DESC, parse_mask

if TYPE_CHECKING:  # pragma: no cover
    from .amiserver import AmiSession
    from .world import Channel

log = Logger(namespace="ctid.pbxsim")
Handler = Callable[["AmiSession", Message], "Deferred[object] | None"]
ACTIONS: dict[str, tuple[str, str, str]] = {}  # action -> (name, privilege, synopsis)
PRE_LOGIN = ("login", "challenge", "logoff")


_HANDLERS: dict[str, Handler] = {}


def action(name: str, privilege: str, synopsis: str) -> Callable[[Handler], Handler]:
    """Register an action handler with its ListCommands privilege and synopsis."""

    def register(fn: Handler) -> Handler:
        ACTIONS[name.lower()] = (name, privilege if privilege == "<none>" else f"{privilege},all", synopsis)
        _HANDLERS[name.lower()] = fn
        return fn

    return register


def dispatch(session: AmiSession, message: Message) -> Deferred[object] | None:
    """Run one action for ``session`` (errors answered here)."""
    from . import amicalls, amilists, confbridge, phonenotify  # noqa: F401  (they register their actions)

    name = (message.get("Action") or "").strip()
    if not name:
        session.error(message, "Missing action in request")
        return None
    if not session.authenticated and name.lower() not in PRE_LOGIN:
        session.error(message, "Permission denied")
        return None
    handler = _HANDLERS.get(name.lower())
    if handler is None:
        session.error(message, f"Invalid/unknown command: {name}. Use Action: ListCommands to show available "
                               "commands.")
        return None
    return handler(session, message)


def header(message: Message, key: str) -> str:
    """A header value, stripped ("" when absent)."""
    return (message.get(key) or "").strip()


def find_channel(session: AmiSession, message: Message, key: str = "Channel") -> Channel | None:
    """The live channel named by ``key`` (exact name or Uniqueid)."""
    return session.world.find(header(message, key))


# -- session ------------------------------------------------------------------------------


@action("Login", "<none>", "Login Manager.")
def login(session: AmiSession, message: Message) -> None:
    if session.authenticated:
        session.ack(message, "Already authenticated")
        return
    settings = session.settings
    username = header(message, "Username")
    if header(message, "AuthType").lower() == "md5":
        expected = hashlib.md5((session.challenge + settings.secret).encode("utf-8")).hexdigest()
        ok = bool(session.challenge) and header(message, "Key").lower() == expected
    else:
        ok = secrets.compare_digest((message.get("Secret") or "").encode("utf-8"), settings.secret.encode("utf-8"))
    ok = ok and username.lower() == settings.username.lower()
    if not ok:
        log.warn("pbxsim: AMI login refused for {user!r} from {peer}", user=username[:64],
                 peer=peer_text(session.proto.transport))
        _security(session, "InvalidPassword" if username.lower() == settings.username.lower()
                  else "InvalidAccountID", username, "Error")
        session.closing = True
        session.world.clock.callLater(1.0, _refuse, session, message)
        return
    session.authenticated, session.username = True, username
    session.proto.logged_in()
    log.info("pbxsim: AMI client {peer} logged in as {user}", peer=peer_text(session.proto.transport), user=username)
    if message.get("Events") is not None:
        session.event_mask = parse_mask(message.get("Events"))
    session.ack(message, "Authentication accepted")
    if session.event_mask & 1:
        uptime = int(session.world.now() - session.world.started)
        session.send([("Event", "FullyBooted"), ("Privilege", "system,all"), ("Uptime", uptime),
                      ("LastReload", uptime), ("Status", "Fully Booted")])
    session.world.soon(_security, session, "SuccessfulAuth", username, "Informational")


def _refuse(session: AmiSession, message: Message) -> None:
    session.error(message, "Authentication failed")
    session.proto.transport.loseConnection()


def _security(session: AmiSession, name: str, username: str, severity: str) -> None:
    world = session.world
    now = world.now()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}+0000"
    host, peer = session.proto.transport.getHost(), session.proto.transport.getPeer()
    pairs: list[tuple[str, object]] = [
        ("EventTV", stamp), ("Severity", severity), ("Service", "AMI"),
        ("EventVersion", 1 if name == "SuccessfulAuth" else 2), ("AccountID", username),
        ("SessionID", f"0x{id(session) & 0xffffffffffff:x}"),
        ("LocalAddress", f"IPV4/TCP/{getattr(host, 'host', '127.0.0.1')}/{getattr(host, 'port', 5038)}"),
        ("RemoteAddress", f"IPV4/TCP/{getattr(peer, 'host', '127.0.0.1')}/{getattr(peer, 'port', 0)}"),
    ]
    if name == "SuccessfulAuth":
        pairs.append(("UsingPassword", 0))
    pairs.append(("SessionTV", stamp))
    world.emit(name, "security", pairs)


@action("Challenge", "<none>", "Generate Challenge for MD5 Auth.")
def challenge(session: AmiSession, message: Message) -> None:
    if header(message, "AuthType").lower() != "md5":
        session.error(message, "Must specify AuthType")
        return
    if not session.challenge:
        session.challenge = str(secrets.randbelow(2**31))
    session.ack(message, None, [("Challenge", session.challenge)])


@action("Logoff", "<none>", "Logoff Manager.")
def logoff(session: AmiSession, message: Message) -> None:
    session.response(message, "Goodbye", "Thanks for all the fish.")
    session.close()


@action("Ping", "<none>", "Keepalive command.")
def ping(session: AmiSession, message: Message) -> None:
    now = session.world.now()
    session.ack(message, None, [("Ping", "Pong"), ("Timestamp", f"{now:.6f}")])


@action("Events", "<none>", "Control Event Flow.")
def events(session: AmiSession, message: Message) -> None:
    if not header(message, "EventMask"):
        return session.error(message, "Invalid event mask")
    session.event_mask = parse_mask(message.get("EventMask"))
    pairs = [("Response", "Success")]
    if message.get("ActionID"):
        pairs.append(("ActionID", header(message, "ActionID")))
    session.send(pairs + [("Events", "On" if session.event_mask else "Off")])


@action("Filter", "system", "Dynamically add filters for the current manager session.")
def filter_(session: AmiSession, message: Message) -> None:
    text = message.get("Filter") or ""
    if header(message, "Operation").lower() != "add" or not text:
        session.error(message, "Unknown operation" if text else "Filter can not be empty")
        return
    keep = not text.startswith("!")
    try:
        session.filters.append((keep, re.compile(text if keep else text[1:])))
    except re.error:
        session.error(message, "Filter Not Added")
        return
    session.ack(message, "Success")


@action("ListCommands", "<none>", "List available manager commands.")
def list_commands(session: AmiSession, message: Message) -> None:
    pairs = [(name, f"{synopsis} (Priv: {priv})") for name, priv, synopsis in sorted(ACTIONS.values())]
    session.ack(message, None, pairs)


@action("CoreSettings", "system", "Show PBX core settings (version etc).")
def core_settings(session: AmiSession, message: Message) -> None:
    session.ack(message, None, [
        ("AMIversion", AMI_VERSION), ("AsteriskVersion", ASTERISK_VERSION), ("SystemName", session.world.system_name),
        ("CoreMaxCalls", 0), ("CoreMaxLoadAvg", "0.000000"), ("CoreRunUser", ""), ("CoreRunGroup", ""),
        ("CoreMaxFilehandles", 0), ("CoreRealTimeEnabled", "No"), ("CoreCDRenabled", "Yes"),
        ("CoreHTTPenabled", "No"), ("SoundsSearchCustomDir", "No"),
    ])


@action("CoreStatus", "system", "Show PBX core status variables.")
def core_status(session: AmiSession, message: Message) -> None:
    world = session.world
    started = time.gmtime(world.started)
    session.ack(message, None, [
        ("CoreStartupDate", time.strftime("%Y-%m-%d", started)),
        ("CoreStartupTime", time.strftime("%H:%M:%S", started)),
        ("CoreReloadDate", time.strftime("%Y-%m-%d", started)),
        ("CoreReloadTime", time.strftime("%H:%M:%S", started)),
        ("CoreCurrentCalls", len(world.channels)),
    ])


# -- CLI ------------------------------------------------------------------------------------


@action("Command", "command", "Execute Asterisk CLI Command.")
def command(session: AmiSession, message: Message) -> None:
    text = " ".join(header(message, "Command").split())
    output = _cli(session, text)
    result = "Success" if output is not None else "Error"
    if output is None:
        output = [f"No such command '{text}' (type 'core show help {text}' for other possible commands)"]
    session.response(message, result, "Command output follows", [("Output", line) for line in output])


def _cli(session: AmiSession, text: str) -> list[str] | None:
    world = session.world
    if text == "core show version":
        built = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(world.started))
        return [f"Asterisk {ASTERISK_VERSION} built by ctid-pbxsim @ pbxsim on a x86_64 running Linux on {built}"]
    if text == "core show uptime":
        up = int(world.now() - world.started)
        return [f"System uptime: {up // 60} minutes, {up % 60} seconds",
                f"Last reload: {up // 60} minutes, {up % 60} seconds"]
    if text in ("core show channels", "core show channels concise"):
        channels = world.live()
        if text.endswith("concise"):
            return [f"{c.name}!{c.context}!{c.exten}!{c.priority}!{STATE_DESC[c.state]}!{c.appl}!{c.data}!"
                    f"{c.caller_num}!{c.accountcode}!!3!{int(world.now() - c.created)}!"
                    f"{c.bridge.uniqueid if c.bridge else '(None)'}!{c.uniqueid}" for c in channels]
        lines = [f"{'Channel':<32} {'Location':<24} {'State':<7} Application(Data)"]
        for c in channels:
            lines.append(f"{c.name[:32]:<32} {(c.exten + '@' + c.context + ':' + str(c.priority))[:24]:<24} "
                         f"{STATE_DESC[c.state][:7]:<7} {c.appl}({c.data})")
        calls = len({c.linkedid for c in channels})
        lines += [f"{len(channels)} active channel{'s' if len(channels) != 1 else ''}",
                  f"{calls} active call{'s' if calls != 1 else ''}",
                  f"{world.calls_processed} call{'s' if world.calls_processed != 1 else ''} processed"]
        return lines
    return None
