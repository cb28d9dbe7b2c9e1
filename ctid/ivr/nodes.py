"""What each node type does on the call: one ``async`` handler per type.

A handler gets the call's state, the node, the AGI session and the
:class:`Runtime` (prompts, bank, clock, hooks), and returns the name of the
next node, or None when the flow ends (transfer to an agent, hang-up).
Handlers never block: every wait is an AGI command or a core-banking
Deferred, each with a timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from ctid.announce import VoiceMessage
from ctid.banking import CoreBankingError, ICoreBanking
from ctid.ivr import say
from ctid.ivr.call import IVRCall
from ctid.ivr.inputs import PARSERS
from ctid.ivr.model import Node
from ctid.ivr.operations import OPERATIONS, outcome_of
from ctid.ivr.prompts import ITextToSpeech, PromptManifest
from ctid.ivr.schema import choice_targets
from ctid.protocols.agisession import AGISession
from ctid.protocols.agiwire import AGIHangupError

log = Logger()

#: Seconds a concatenated Playback may take per piece before the command times out.
SECONDS_PER_PIECE = 10.0
#: Samples per second of the switch's recordings (endpos / rate = seconds).
SAMPLE_RATE = 8000


@dataclass(frozen=True)
class Runtime:
    """What the handlers share: prompt files, the bank, time, where recordings go, optional TTS."""

    manifest: PromptManifest
    bank: ICoreBanking | None
    clock: IReactorTime
    operation_timeout: float
    voice_dir: str
    tts: ITextToSpeech | None = None

    def file(self, call: IVRCall, prompt: str) -> str:
        """The sound file of ``prompt`` in the call's language."""
        return self.manifest.file(prompt, call.language)


async def menu(call: IVRCall, node: Node, session: AGISession, rt: Runtime) -> str | None:
    """Play the prompt, take one key; 0 goes to the agent unless the menu uses it; retry, then ``on_fail``."""
    choices = {digit: (target, label) for digit, target, label in choice_targets(node)}
    if call.flow.agent is not None:
        choices.setdefault("0", (call.flow.agent, "agent"))
    for attempt in range(node.get("retries", 2) + 1):
        await _invalid(call, node, session, rt, attempt)
        digits, _ = await session.get_data(rt.file(call, node.get("prompt")), node.get("timeout", 5000), 1)
        if digits in choices:
            target, label = choices[digits]
            call.choose(node.get("label", node.name), label)
            return target
    return node.get("on_fail", call.flow.agent)


async def input_(call: IVRCall, node: Node, session: AGISession, rt: Runtime) -> str | None:
    """Collect digits (``sensitive``: kept out of logs and variables), parse them, retry, then ``on_fail``."""
    terminator = node.get("terminator", "#")
    longest = node.get("max")
    max_digits = None if longest is None else longest + (1 if terminator else 0)
    sensitive = node.get("sensitive", False)
    parse = PARSERS[node.get("format", "digits")]
    today = datetime.fromtimestamp(rt.clock.seconds()).date()
    for attempt in range(node.get("retries", 2) + 1):
        await _invalid(call, node, session, rt, attempt)
        digits, _ = await session.get_data(rt.file(call, node.get("prompt")), node.get("timeout", 6000), max_digits,
                                           sensitive=sensitive)
        value = parse(digits, today) if node.get("min", 1) <= len(digits) <= (longest or 64) else None
        if value is not None:
            (call.secrets if sensitive else call.vars)[node.get("store")] = value
            return node.get("next")
    return node.get("on_fail", call.flow.agent)


async def _invalid(call: IVRCall, node: Node, session: AGISession, rt: Runtime, attempt: int) -> None:
    """Before asking again, say what was wrong (the node's ``invalid`` prompt), if it has one."""
    if attempt and "invalid" in node.fields:
        await session.stream_file(rt.file(call, node.get("invalid")))


async def prompt(call: IVRCall, node: Node, session: AGISession, rt: Runtime) -> str | None:
    """Play one prompt."""
    await session.stream_file(rt.file(call, node.get("prompt")))
    return node.get("next")


async def say_(call: IVRCall, node: Node, session: AGISession, rt: Runtime) -> str | None:
    """Say the items (once, or once per element of ``each`` as ``item``) by prompt concatenation."""
    if "each" not in node.fields:
        await _play(session, await _pieces(call, node, rt))
        return node.get("next")
    elements = call.value(node.get("each")) or ()
    if not elements and "empty" in node.fields:
        await session.stream_file(rt.file(call, node.get("empty")))
    for element in elements:
        call.vars["item"] = element
        await _play(session, await _pieces(call, node, rt))
    call.vars.pop("item", None)
    return node.get("next")


async def branch(call: IVRCall, node: Node, session: AGISession, rt: Runtime) -> str | None:
    """Go to the case matching a variable's value (true/false read as yes/no), else ``default``."""
    value = call.value(node.get("var"))
    text = ("yes" if value else "no") if isinstance(value, bool) else "" if value is None else str(value)
    return node.get("cases").get(text, node.get("default"))


async def set_(call: IVRCall, node: Node, session: AGISession, rt: Runtime) -> str | None:
    """Set variables; ``language`` switches the prompts' language."""
    for key, value in node.get("values").items():
        if key == "language":
            call.language = value
        else:
            call.vars[key] = value
    return node.get("next")


async def operation(call: IVRCall, node: Node, session: AGISession, rt: Runtime) -> str | None:
    """Call the core-banking operation; go where its outcome says (``default`` for the others)."""
    outcome = await _run_operation(call, node, rt)
    log.info("IVR: {channel} {op} -> {outcome}", channel=call.info.channel, op=node.get("op"), outcome=outcome,
             node=node.name, flow=call.flow.name, account=call.banking.account_masked if call.banking else "")
    return node.get("outcomes").get(outcome, node.get("default"))


async def _run_operation(call: IVRCall, node: Node, rt: Runtime) -> str:
    op = OPERATIONS[node.get("op")]
    if rt.bank is None:
        return "host_error"
    if op.needs_session and call.banking is None:
        return "not_verified"
    running = Deferred.fromCoroutine(op.run(call, rt.bank))
    running.addTimeout(rt.operation_timeout, rt.clock)
    try:
        return await running or "ok"
    except CoreBankingError as error:
        return outcome_of(error)
    except (TimeoutError, CancelledError):
        return "host_error"


async def transfer(call: IVRCall, node: Node, session: AGISession, rt: Runtime) -> None:
    """Hand the caller to an agent: set the ``CTID_*`` variables, then end the AGI (the dialplan parks the call)."""
    if "prompt" in node.fields:
        await session.stream_file(rt.file(call, node.get("prompt")))
    data = call.handoff()
    if "menu" in node.fields:
        data["CTID_MENU"] = node.get("menu")
    if "queue" in node.fields:
        data["CTID_QUEUE"] = node.get("queue")
    data.update({key: str(value) for key, value in node.get("data", {}).items()})
    for name, value in data.items():
        await session.set_variable(name, value)
    call.ending = "transfer"


async def record(call: IVRCall, node: Node, session: AGISession, rt: Runtime) -> str | None:
    """Play the prompt, record until # or ``max_seconds``, report the message (even if the caller hangs up)."""
    await session.stream_file(rt.file(call, node.get("prompt")))
    kind = node.get("kind")
    stamp = datetime.fromtimestamp(rt.clock.seconds()).strftime("%Y%m%d-%H%M%S")
    name = f"{rt.voice_dir}/{kind}-{stamp}-{call.info.uniqueid}"
    try:
        reply = await session.record_file(name, "wav", "#", node.get("max_seconds", 120) * 1000, silence_s=5)
    except AGIHangupError:
        _report(call, node, rt, name, session.last_reply.endpos if session.last_reply else None)
        raise
    _report(call, node, rt, name, reply.endpos)
    return node.get("next")


def _report(call: IVRCall, node: Node, rt: Runtime, name: str, endpos: int | None) -> None:
    if not endpos:
        return
    customer = call.banking.customer_id if call.banking else ""
    call.hooks.on_voice_message(VoiceMessage(call.info.uniqueid, call.info.caller, node.get("kind"), name, "wav",
                                             endpos / SAMPLE_RATE, rt.clock.seconds(), call.flow.name, node.name,
                                             customer))


async def hangup(call: IVRCall, node: Node, session: AGISession, rt: Runtime) -> None:
    """Play the optional goodbye, then hang up."""
    if "prompt" in node.fields:
        await session.stream_file(rt.file(call, node.get("prompt")))
    await session.hangup()
    call.ending = "completed"


HANDLERS = {
    "menu": menu, "input": input_, "prompt": prompt, "say": say_, "branch": branch, "set": set_,
    "operation": operation, "transfer": transfer, "record": record, "hangup": hangup,
}


# --- prompt concatenation ------------------------------------------------------------------------------------------


async def _play(session: AGISession, files: list[str]) -> None:
    if files:
        await session.execute("Playback", "&".join(files), timeout=SECONDS_PER_PIECE * (len(files) + 1))


async def _pieces(call: IVRCall, node: Node, rt: Runtime) -> list[str]:
    files: list[str] = []
    for item in node.get("items"):
        files += [rt.file(call, piece) for piece in _item_pieces(call, node, item, rt)]
        if "text" in item:
            files += await _text(call, item, rt)
    return files


def _item_pieces(call: IVRCall, node: Node, item: dict[str, Any], rt: Runtime) -> list[str]:
    if "prompt" in item:
        return [item["prompt"]]
    if "text" in item:
        return []
    kind = next(key for key in item if key in _SPEAKERS or key in ("key", "sign"))
    value = call.value(item[kind])
    if value is None:
        log.warn("IVR: flow {flow} node {node}: {var} has no value to say", flow=call.flow.name, node=node.name,
                 var=item[kind])
        return []
    if kind == "key":
        name = f"{item['prefix']}{str(value).lower()}"
        return [name] if name in rt.manifest else []
    if kind == "sign":
        return [item["minus"] if value < 0 else item["plus"]]
    return _SPEAKERS[kind](value, call.language)


_SPEAKERS: dict[str, Callable[[Any, str], list[str]]] = {
    "number": lambda value, language: say.number(int(value), language),
    "digits": lambda value, language: say.digits(str(value), language),
    "money": lambda value, language: say.money(abs(int(value)), language),
    "date": say.say_date,
    "percent": say.percent,
    "decimal": say.decimal,
}


async def _text(call: IVRCall, item: dict[str, Any], rt: Runtime) -> list[str]:
    """Dynamic text: spoken by the TTS engine where one is configured (and the call is in the text's
    ``language``, if the item names one), else the recorded fallback: ``fallback_key``'s prompt
    ``prefix+value`` when the manifest has it, then ``fallback``."""
    text = call.value(item["text"])
    if rt.tts is not None and text and item.get("language", call.language) == call.language:
        speaking = rt.tts.synthesize(str(text), call.language)
        speaking.addTimeout(rt.operation_timeout, rt.clock)
        try:
            return [await speaking]
        except Exception:
            log.failure("IVR: text to speech failed; using the fallback prompt", level=LogLevel.warn)
    if "fallback_key" in item:
        key = call.value(item["fallback_key"])
        name = f"{item['prefix']}{str(key).lower()}"
        if key is not None and name in rt.manifest:
            return [rt.file(call, name)]
    return [rt.file(call, item["fallback"])] if "fallback" in item else []
