"""ctid-agent's typed commands: a line such as ``pause lunch`` into a CTI command and its arguments (pure).

:data:`COMMANDS` is the table — a new console command is one line there —
and :func:`parse_command` reads a line through it; :func:`help_lines` is
the ``help`` text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NamedTuple

_CTI_NAME = re.compile(r"[A-Z][A-Za-z0-9]{0,63}\Z")
#: Spoken by the client library itself; ``raw`` refuses them.
_TRANSPORT_COMMANDS = frozenset({"Hello", "Resume", "Bye"})


class UsageError(ValueError):
    """A typed line that is not a valid command; the message says how to type it."""


class Parsed(NamedTuple):
    """A parsed line: the console command, the CTI command (None: the console's own), its arguments."""

    name: str
    cmd: str | None
    args: dict[str, Any]


#: Builds ``(cti command, args)`` from the table's CTI command and the rest of the line; UsageError if bad.
Builder = Callable[[str | None, str], tuple[str | None, dict[str, Any]]]


class Command(NamedTuple):
    """A console command: the CTI command it sends (None: handled by the console), its arguments, its help."""

    cti: str | None
    build: Builder
    syntax: str
    help: str


def _fixed(**args: Any) -> Builder:
    """A command taking nothing after its name, sending ``args``."""

    def build(cti: str | None, rest: str) -> tuple[str | None, dict[str, Any]]:
        if rest:
            raise UsageError("it takes no arguments")
        return cti, dict(args)

    return build


def _pause(after_call: bool) -> Builder:
    """SetAgentState not_ready, with the rest of the line as the reason code."""

    def build(cti: str | None, rest: str) -> tuple[str | None, dict[str, Any]]:
        args: dict[str, Any] = {"state": "not_ready"}
        if rest:
            args["reason"] = rest
        if after_call:
            args["after_call"] = True
        return cti, args

    return build


def _destination(cti: str | None, rest: str) -> tuple[str | None, dict[str, Any]]:
    """``<agent|group|queue|flow|number> <id>``: where a transfer or consultation goes."""
    kind, _, value = rest.partition(" ")
    if kind not in ("agent", "group", "queue", "flow", "number") or not value.strip():
        raise UsageError("say where: agent, group, queue, flow or number, then its id")
    return cti, {kind: value.strip()}


def _idle(cti: str | None, rest: str) -> tuple[str | None, dict[str, Any]]:
    """``[group]``: the ready agents, of one skill group when given."""
    return cti, {"group": rest} if rest else {}


def _word(key: str) -> Builder:
    """A command taking one word after its name, sent as argument ``key``."""

    def build(cti: str | None, rest: str) -> tuple[str | None, dict[str, Any]]:
        if not rest or " " in rest:
            raise UsageError(f"give one {key}")
        return cti, {key: rest}

    return build


def _call_data(cti: str | None, rest: str) -> tuple[str | None, dict[str, Any]]:
    """``CTID_KEY=value``: one item of call data."""
    key, sep, value = rest.partition("=")
    if not sep or not key.strip():
        raise UsageError("give CTID_KEY=value")
    return cti, {"data": {key.strip(): value.strip()}}


def _words(*names: str, **fixed: Any) -> Builder:
    """Arguments from the words after the command, in ``names`` order (the last takes the rest), plus ``fixed``.

    A name ending in ``?`` is optional; ``#`` after it makes it an integer.
    """

    def build(cti: str | None, rest: str) -> tuple[str | None, dict[str, Any]]:
        words = rest.split(None, len(names) - 1) if rest else []
        args: dict[str, Any] = dict(fixed)
        for index, spec in enumerate(names):
            name = spec.rstrip("?#")
            if index >= len(words):
                if not spec.rstrip("#").endswith("?"):
                    raise UsageError(f"give the {name}")
                continue
            if spec.endswith("#"):
                try:
                    args[name] = int(words[index])
                except ValueError:
                    raise UsageError(f"the {name} must be a whole number") from None
            else:
                args[name] = words[index]
        return cti, args

    return build


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _raw(cti: str | None, rest: str) -> tuple[str | None, dict[str, Any]]:
    """``<Command> [json-object]``: any CTI command with any arguments."""
    name, _, text = rest.partition(" ")
    if not _CTI_NAME.match(name):
        raise UsageError("give a CTI command name such as SnapshotAgent")
    if name in _TRANSPORT_COMMANDS:
        raise UsageError(f"{name} belongs to the client library; use quit to leave")
    try:
        args = json.loads(text, parse_constant=_no_constants) if text.strip() else {}
    except ValueError as error:
        raise UsageError(f"the arguments are not JSON: {error}") from None
    if not isinstance(args, dict):
        raise UsageError("the arguments must be a JSON object")
    return name, args


#: Console command -> (CTI command, argument builder, syntax, help).  Call control goes here, one line each.
COMMANDS: dict[str, Command] = {
    "ready": Command("SetAgentState", _fixed(state="ready"), "", "become ready for calls"),
    "pause": Command("SetAgentState", _pause(after_call=False), "[reason]", "pause now (not ready), with a reason"),
    "pause-after": Command("SetAgentState", _pause(after_call=True), "[reason]", "pause once this call is over"),
    "logout": Command("Logout", _fixed(), "", "sign out"),
    "logout-after": Command("Logout", _fixed(after_call=True), "", "sign out once this call is over"),
    "state": Command("SnapshotAgent", _fixed(), "", "show the agent's state"),
    "queues": Command("SnapshotQueues", _fixed(), "", "show your queues: waiting calls, estimated wait"),
    "idle": Command("GetIdleAgents", _idle, "[group]", "list the agents ready for a call (to transfer to)"),
    "transfer": Command("SingleStepTransfer", _destination, "<agent|group|queue|flow|number> <id>",
                        "blind-transfer your call"),
    "consult": Command("ConsultationCall", _destination, "<agent|group|number> <id>",
                       "consult someone while the caller holds"),
    "reconnect": Command("ReconnectCall", _fixed(), "", "cancel the consultation, back to the caller"),
    "complete": Command("TransferCall", _fixed(), "", "complete the consultation: the caller goes over"),
    "conference": Command("ConferenceCall", _fixed(), "", "three-party call: you, the caller and the consulted party"),
    "conference-with": Command("ConferenceCall", _destination, "<agent|number> <id>",
                               "three-party call with the caller and someone new"),
    "add-party": Command("AddParty", _destination, "<agent|number> <id>", "call someone into your conference"),
    "drop-party": Command("DropParty", _destination, "<agent|number> <id>", "take someone out of your conference"),
    "answer": Command("AnswerCall", _fixed(), "", "answer the ringing phone (needs auto-answer)"),
    "auto-answer": Command("SetAutoAnswer", _fixed(enabled=True), "", "declare that this phone answers on request"),
    "hangup": Command("ClearConnection", _fixed(), "", "hang up the current call"),
    "hold": Command("HoldCall", _fixed(), "", "put the current call on hold (music to the caller)"),
    "retrieve": Command("RetrieveCall", _fixed(), "", "take the current call off hold"),
    "dtmf": Command("SendDTMF", _word("digits"), "<digits>", "send DTMF digits to the other party"),
    "data": Command("SetCallData", _call_data, "CTID_KEY=value", "attach data to the current call"),
    "category": Command("SetCallCategory", _word("category"), "<category>",
                        "classify your call (talking or in wrap-up): consultation, complaint, transaction …"),
    "dial": Command("MakeCall", _word("to"), "<number>", "call a number (your phone rings first)"),
    "call-agent": Command("MakeCall", _word("agent"), "<agent>", "call another agent"),
    "pickup": Command("PickupCall", _word("agent"), "<agent>", "take the call ringing at that agent's seat"),
    "floor": Command("SnapshotFloor", _fixed(), "", "supervisors: the calls, agents and queues you manage"),
    "watch-floor": Command("SubscribeFloor", _fixed(), "", "supervisors: follow the floor (Floor… events)"),
    "unwatch-floor": Command("UnsubscribeFloor", _fixed(), "", "supervisors: stop following the floor"),
    "listen": Command("MonitorCall", _words("agent", mode="listen"), "<agent>", "supervisors: listen to a call"),
    "whisper": Command("MonitorCall", _words("agent", mode="whisper"), "<agent>", "supervisors: coach the agent"),
    "barge": Command("MonitorCall", _words("agent", mode="barge"), "<agent>", "supervisors: talk to both sides"),
    "monitor-mode": Command("SetMonitorMode", _words("monitor", "mode"), "<monitor> listen|whisper|barge",
                            "supervisors: switch a monitor's mode"),
    "stop-monitor": Command("StopMonitor", _words("monitor"), "<monitor>", "supervisors: stop monitoring"),
    "release": Command("ForceRelease", _words("agent"), "<agent>", "supervisors: hang up the agent's call"),
    "force-pause": Command("ForcePause", _words("agent", "reason?"), "<agent> [reason]",
                           "supervisors: pause an agent"),
    "force-logout": Command("ForceLogout", _words("agent"), "<agent>", "supervisors: sign an agent out"),
    "unlock": Command("UnlockAgent", _words("agent"), "<agent>", "supervisors: unlock a locked agent"),
    "priority": Command("SetCallPriority", _words("call", "priority#"), "<call> <priority>",
                        "supervisors: change a waiting call's priority"),
    "move": Command("MoveCall", _words("call", "queue"), "<call> <queue>",
                    "supervisors: move a waiting call to another queue"),
    "record": Command("StartRecording", _fixed(), "", "record your call"),
    "record-stop": Command("StopRecording", _fixed(), "", "stop recording your call"),
    "record-pause": Command("PauseRecording", _fixed(), "", "pause the recording (e.g. while a card number is given)"),
    "record-resume": Command("ResumeRecording", _fixed(), "", "resume the recording"),
    "survey": Command("Survey", _fixed(), "", "hand the caller to the satisfaction survey"),
    "raw": Command(None, _raw, "<Command> [json-object]", "send any CTI command, e.g. raw SnapshotAgent {}"),
    "login": Command(None, _fixed(), "", "sign in again (after logout)"),
    "help": Command(None, _fixed(), "", "list the commands"),
    "quit": Command(None, _fixed(), "", "say Bye (the agent is signed out) and exit"),
}


def parse_command(line: str) -> Parsed | None:
    """The command typed on ``line`` (None for a blank line); UsageError with a usage message if it is wrong."""
    word, _, rest = line.strip().partition(" ")
    if not word:
        return None
    name = word.lower()
    command = COMMANDS.get(name)
    if command is None:
        raise UsageError(f"unknown command {word!r}; type help for the list")
    try:
        cmd, args = command.build(command.cti, rest.strip())
    except UsageError as error:
        raise UsageError(f"usage: {name} {command.syntax}".rstrip() + f" — {error}") from None
    return Parsed(name, cmd, args)


def help_lines() -> list[str]:
    """The ``help`` text, one line per command."""
    return ["commands:"] + [f"  {f'{name} {c.syntax}'.rstrip():34} {c.help}" for name, c in COMMANDS.items()]
