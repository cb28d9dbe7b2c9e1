"""The dialplan: extensions.conf text, pattern matching, ``${}`` substitution, the pbx loop.

The simulator runs the very dialplan ctid ships for a real Asterisk
(``CTID_DIALPLAN`` here is kept identical to conf/asterisk/extensions_ctid.conf;
a test holds them together).  Applications live in :mod:`.apps`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.logger import Logger

if TYPE_CHECKING:  # pragma: no cover
    from .world import Channel, World

log = Logger(namespace="ctid.pbxsim")

CTID_DIALPLAN = """\
; ctid dialplan: Asterisk only holds and connects; ctid owns the ACD.
; Calls from the trunk endpoint arrive in [ctid-in] with the called number
; (DNIS) as the extension; agent phones' endpoint context is [ctid-out].

[globals]
CTID_AGI=agi://127.0.0.1:4573/bank
CTID_AGI_HOST=agi://127.0.0.1:4573
CTID_DIRECT_RING=30

[ctid-in]
; Direct lines: 8 + agent extension rings that phone.
exten => _8X.,1,Answer()
 same => n,Dial(PJSIP/${EXTEN:1},${CTID_DIRECT_RING})
 same => n,Hangup()
; Service numbers: the FastAGI IVR, then wait for ctid to pick an agent.
exten => _X.,1,Answer()
 same => n,AGI(${CTID_AGI})
 same => n,Goto(ctid-wait,s,1)

[ctid-wait]
; Parked: music until ctid sends the caller to ctid-deliver (AMI Redirect).
exten => s,1,Answer()
 same => n,Set(CTID_PARKED=1)
 same => n,MusicOnHold(default)

[ctid-announce]
; A waiting caller now and then: place in line, estimated wait, choices.
exten => s,1,AGI(${CTID_AGI_HOST}/wait)
 same => n,Goto(ctid-wait,s,1)

[ctid-ivr]
; A route rule's IVR target: ctid sets CTID_FLOW (the flow's name) first.
exten => s,1,AGI(${CTID_AGI_HOST}/${CTID_FLOW})
 same => n,Goto(ctid-wait,s,1)

[ctid-voicemail]
; A route rule's voicemail target: ctid sets CTID_MAILBOX first.
exten => s,1,AGI(${CTID_AGI_HOST}/voicemail)
 same => n,Hangup()

[ctid-deliver]
; ctid sets CTID_TARGET (e.g. PJSIP/1001) and CTID_RING (seconds) first.
; g: the caller goes on when the agent hangs up (ANSWER in ctid-dialed).
exten => s,1,Dial(${CTID_TARGET},${CTID_RING},g)
 same => n,Goto(ctid-dialed,${DIALSTATUS},1)

[ctid-dialed]
; After ctid-deliver's Dial.  ANSWER: the agent hung up the call.
exten => ANSWER,1,Goto(ctid-answered,s${CTID_SURVEY},1)
exten => _[A-Z].,1,UserEvent(CtidDeliveryFailed,Dialstatus: ${DIALSTATUS})
 same => n,Goto(ctid-wait,s,1)

[ctid-answered]
; The agent hung up: the caller hangs up too, or (CTID_SURVEY=1) rates the service.
exten => s,1,Hangup()
exten => s1,1,Set(CTID_SURVEY=started)
 same => n,Goto(ctid-ivr,s,1)

[ctid-agents]
; A phone by extension (transfers and consultations: Local/1002@ctid-agents).
exten => _X.,1,Dial(PJSIP/${EXTEN},30)
 same => n,Hangup()

[ctid-hold]
; CTI HoldCall (AMI Redirect with ExtraChannel): the held party hears music
; (s), the agent's leg waits in silence (agent); RetrieveCall bridges them
; again (AMI Bridge), after which each carries on to Hangup().
exten => s,1,MusicOnHold(default,3600)
 same => n,Hangup()
exten => agent,1,Wait(3600)
 same => n,Hangup()

[ctid-conference]
; Conferences: ctid sets CTID_CONFERENCE on each leg and redirects (or
; originates) them here; a kicked party hangs up.
exten => s,1,Answer()
 same => n,ConfBridge(${CTID_CONFERENCE},default_bridge,default_user)
 same => n,Hangup()

[ctid-out]
; Calls placed by agent phones go out on the trunk.
exten => _X.,1,Dial(PJSIP/${EXTEN}@trunk,60)
 same => n,Hangup()
"""


class DialplanError(ValueError):
    """The extensions.conf text could not be parsed."""


@dataclass
class Extension:
    """One extension (or pattern) of a context: priority -> (application, data)."""

    name: str
    steps: dict[int, tuple[str, str]] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)


@dataclass
class Dialplan:
    """Contexts of extensions plus the ``[globals]`` section."""

    contexts: dict[str, dict[str, Extension]] = field(default_factory=dict)
    globals: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Dialplan:
        """Parse extensions.conf syntax (``exten =>``, ``same =>``, ``[globals]``)."""
        plan = cls()
        section: str | None = None
        current: Extension | None = None
        last = 0
        for number, raw in enumerate(text.splitlines(), 1):
            line = _strip_comment(raw).strip()
            if not line:
                continue
            if line.startswith("[") and line.endswith("]"):
                section, current = line[1:-1].strip(), None
                if section not in ("general", "globals"):
                    plan.contexts.setdefault(section, {})
                continue
            if section is None:
                raise DialplanError(f"line {number}: outside any context")
            if section == "general":
                continue
            if section == "globals":
                name, _, value = line.partition("=")
                plan.globals[name.strip()] = value.strip()
                continue
            key, arrow, rest = line.partition("=>")
            key = key.strip().lower()
            if not arrow or key not in ("exten", "same"):
                continue  # include =>, switch =>, ignorepat => … are not simulated
            if key == "exten":
                name, _, rest = rest.strip().partition(",")
                current = plan.contexts[section].setdefault(name.strip(), Extension(name.strip()))
                last = 0
            elif current is None:
                raise DialplanError(f"line {number}: 'same =>' without an extension")
            prio_text, _, app_text = rest.strip().partition(",")
            last = _priority(prio_text.strip(), last, current, number)
            current.steps[last] = _application(app_text.strip())
        return plan

    @classmethod
    def ctid(cls, extra: str = "") -> Dialplan:
        """The shipped ctid dialplan, plus optional extra contexts (tests, labs)."""
        plan = cls.parse(CTID_DIALPLAN)
        if extra:
            other = cls.parse(extra)
            plan.contexts.update(other.contexts)
            plan.globals.update(other.globals)
        return plan

    def find(self, context: str, exten: str, priority: int) -> tuple[str, str] | None:
        """The (application, data) at a location, or None when it does not exist."""
        extension = self.match(context, exten)
        return None if extension is None else extension.steps.get(priority)

    def exists(self, context: str, exten: str, priority: int = 1) -> bool:
        return self.find(context, exten, priority) is not None

    def match(self, context: str, exten: str) -> Extension | None:
        """Exact extension first, then the most specific matching pattern."""
        extensions = self.contexts.get(context)
        if not extensions:
            return None
        if exten in extensions:
            return extensions[exten]
        candidates = [e for name, e in extensions.items() if name.startswith("_") and pattern_matches(name, exten)]
        if not candidates:
            return None
        return min(candidates, key=lambda e: _specificity(e.name))


def _strip_comment(line: str) -> str:
    out = []
    escaped = False
    for char in line:
        if char == ";" and not escaped:
            break
        escaped = char == "\\" and not escaped
        out.append(char)
    return "".join(out)


def _priority(text: str, last: int, ext: Extension, number: int) -> int:
    label = None
    match = re.match(r"^(\w+)\((\w+)\)$", text)
    if match:
        text, label = match.group(1), match.group(2)
    if text == "n":
        value = last + 1
    elif text.isdigit():
        value = int(text)
    else:
        raise DialplanError(f"line {number}: bad priority {text!r}")
    if label:
        ext.labels[label] = value
    return value


def _application(text: str) -> tuple[str, str]:
    if "(" not in text:
        return text.strip(), ""
    name = text[: text.index("(")].strip()
    end = text.rfind(")")
    data = text[text.index("(") + 1 : end if end > text.index("(") else len(text)]
    return name, data


_CLASSES = {"X": "0123456789", "Z": "123456789", "N": "23456789"}


def _pattern_items(pattern: str) -> list[str]:
    """A pattern (without ``_``) as a list of character sets; ``.``/``!`` stay as is."""
    items: list[str] = []
    index = 0
    body = pattern[1:]
    while index < len(body):
        char = body[index]
        if char.upper() in _CLASSES:
            items.append(_CLASSES[char.upper()])
        elif char == "[":
            end = body.find("]", index)
            end = len(body) if end < 0 else end
            items.append(_expand_set(body[index + 1 : end]))
            index = end
        else:
            items.append(char)
        index += 1
    return items


def _expand_set(text: str) -> str:
    out = ""
    index = 0
    while index < len(text):
        if index + 2 < len(text) and text[index + 1] == "-":
            out += "".join(chr(c) for c in range(ord(text[index]), ord(text[index + 2]) + 1))
            index += 3
        else:
            out += text[index]
            index += 1
    return out


def pattern_matches(pattern: str, exten: str) -> bool:
    """Asterisk extension pattern matching (``_X.``, ``_8XXXX``, ``_[1-5]!`` …)."""
    items = _pattern_items(pattern)
    position = 0
    for index, item in enumerate(items):
        if item == "." and index == len(items) - 1:
            return len(exten) > position
        if item == "!" and index == len(items) - 1:
            return True
        if position >= len(exten) or exten[position] not in item:
            return False
        position += 1
    return position == len(exten)


def _specificity(pattern: str) -> tuple[int, ...]:
    return tuple(1000 if item in (".", "!") else len(item) for item in _pattern_items(pattern))


# -- ${} substitution ---------------------------------------------------------------------


def substitute(world: World, chan: Channel | None, text: str) -> str:
    """Expand ``${VAR}``, ``${VAR:offset:length}`` and ``${FUNC(args)}``."""
    out = []
    index = 0
    while index < len(text):
        start = text.find("${", index)
        if start < 0:
            out.append(text[index:])
            break
        out.append(text[index:start])
        depth, end = 1, start + 2
        while end < len(text) and depth:
            if text.startswith("${", end):
                depth, end = depth + 1, end + 2
                continue
            depth -= text[end] == "}"
            end += 1
        inner = substitute(world, chan, text[start + 2 : end - 1])
        out.append(_evaluate(world, chan, inner))
        index = end
    return "".join(out)


def _evaluate(world: World, chan: Channel | None, expr: str) -> str:
    name, offset, length = expr, None, None
    if "(" not in expr and ":" in expr:
        name, _, rest = expr.partition(":")
        parts = rest.split(":")
        offset = _int(parts[0])
        length = _int(parts[1]) if len(parts) > 1 else None
    value = world.get_var(chan, name) or ""
    if offset is not None:
        value = value[offset:] if offset >= 0 else value[len(value) + offset :]
        if length is not None:
            value = value[:length] if length >= 0 else value[:length]
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def builtin_value(world: World, chan: Channel, name: str) -> str | None:
    """Built-in variables and the few dialplan functions the simulator knows."""
    simple = {
        "EXTEN": chan.exten, "CONTEXT": chan.context, "PRIORITY": str(chan.priority),
        "CHANNEL": chan.name, "UNIQUEID": chan.uniqueid, "HANGUPCAUSE": str(chan.hangupcause),
        "EPOCH": str(int(world.now())), "CALLERIDNUM": chan.caller_num, "CALLERIDNAME": chan.caller_name,
    }
    if name in simple:
        return simple[name]
    match = re.match(r"^([A-Z_]+)\((.*)\)$", name)
    if not match:
        return None
    func, arg = match.group(1), match.group(2).strip().lower()
    if func == "CALLERID":
        return {"num": chan.caller_num, "name": chan.caller_name, "dnid": chan.dnid,
                "all": f'"{chan.caller_name}" <{chan.caller_num}>'}.get(arg, "")
    if func == "CONNECTEDLINE":
        return {"num": chan.connected_num, "name": chan.connected_name}.get(arg, "")
    if func == "CHANNEL":
        return {"name": chan.name, "uniqueid": chan.uniqueid, "linkedid": chan.linkedid,
                "state": str(chan.state), "language": chan.language, "context": chan.context,
                "exten": chan.exten, "channeltype": chan.tech}.get(arg, "")
    if func == "DB":
        return world.astdb.get(match.group(2).strip(), "")
    return None


# -- the pbx loop -------------------------------------------------------------------------


async def run_pbx(world: World, chan: Channel) -> None:
    """Execute the dialplan on ``chan`` until it hangs up or falls off the end."""
    from .apps import execute

    if chan.dead or chan.running:
        return
    chan.running, chan.controller = True, None
    while True:
        if chan.moving is not None:
            owner, chan.moving = chan.moving, None
            if await owner.hold(chan) < 0 or chan.dead:
                if chan.dead:
                    return
                break
            if chan.goto is None:
                chan.priority += 1
            continue
        if chan.goto is not None:
            chan.context, chan.exten, chan.priority = chan.goto
            chan.goto = None
        if chan.hangup_pending:
            break
        step = world.dialplan.find(chan.context, chan.exten, chan.priority)
        if step is None:
            log.info("pbxsim: {channel} sent to invalid extension {exten}@{context}:{priority}",
                     channel=chan.name, exten=chan.exten, context=chan.context, priority=chan.priority)
            break
        app, data = step[0], substitute(world, chan, step[1])
        world.newexten(chan, app, data)
        await world.pause()
        if chan.dead:
            return
        if chan.goto is not None or chan.moving is not None:
            continue
        result = await execute(world, chan, app, data)
        if chan.dead:
            return
        if chan.goto is not None or (chan.moving is not None and result >= 0):
            continue
        if result < 0 or chan.hangup_pending:
            break
        chan.priority += 1
    end_pbx(world, chan)


def end_pbx(world: World, chan: Channel) -> None:
    """The channel's thread is done: SoftHangupRequest (AST_SOFTHANGUP_APPUNLOAD), then Hangup."""
    if chan.dead:
        return
    chan.running = False
    if not chan.hangup_pending and not chan.hangupcause:
        chan.hangupcause = 16
    world.chan_event("SoftHangupRequest", chan, [("Cause", 16)])
    world.hangup(chan)
