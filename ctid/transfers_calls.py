"""What the transfer and conference commands share: whose call it is, its legs, targets, the receiver's pop.

Pure lookups on the call model and the agent board; every refusal is a
:class:`~ctid.protocols.ctiapi.CTIError` with a stable code (docs/cti-protocol.md
"Transfers and conferences").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ctid.agents import Agent, AgentBoard
from ctid.callevents import UP, Call
from ctid.calls import CallModel, Channel
from ctid.contexts import HIDDEN_VARIABLES
from ctid.customers import redact
from ctid.protocols.ctiapi import CTIError, CTISession, require_login

TARGET_KINDS = ("agent", "group", "queue", "flow", "number")
_NUMBER = re.compile(r"\+?[0-9]{1,32}\Z")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")


@dataclass(frozen=True)
class OwnCall:
    """The calling agent, the call it acts on and its own leg in that call."""

    agent: Agent
    call: Call
    leg: Channel

    @property
    def call_id(self) -> str:
        return self.call.linkedid


def own_call(session: CTISession, args: dict[str, Any], board: AgentBoard, model: CallModel,
             connected: bool = True) -> OwnCall:
    """The call named by ``args["call"]`` (default: the agent's current call), checked to be the agent's own.

    With ``connected`` the agent's leg must be up in a bridge (talking).
    """
    agent = board.get(require_login(session)["agent"])
    call_id = args.get("call", agent.call_id if agent else None)
    if call_id is not None and (not isinstance(call_id, str) or len(call_id) > 128):
        raise CTIError("bad_request", "call must be a call id (string)")
    if agent is None or agent.call_id is None:
        raise CTIError("no_call", "you have no call")
    if call_id != agent.call_id:
        raise CTIError("not_your_call", "that call is not yours")
    call = model.calls.get(call_id)
    leg = leg_of(call, agent.station) if call is not None else None
    if call is None or leg is None or (connected and (leg.state != UP or leg.bridge_id is None)):
        raise CTIError("not_connected", "your call is not connected (not answered yet, or on its way elsewhere)")
    return OwnCall(agent, call, leg)


def leg_of(call: Call, station: str) -> Channel | None:
    """The live leg of ``call`` on the phone ``station`` (``PJSIP/1001`` → ``PJSIP/1001-0000000b``)."""
    prefix = station + "-"
    return next((c for c in call.channels.values() if c.name.startswith(prefix)), None)


def bridged_peer(model: CallModel, leg: Channel) -> Channel | None:
    """The first other channel in ``leg``'s bridge (the customer, for an agent's leg)."""
    bridge = model.bridges.get(leg.bridge_id or "")
    if bridge is None:
        return None
    return next((model.channels[u] for u in bridge.channels if u != leg.uniqueid and u in model.channels), None)


def connected_leg(model: CallModel, leg: Channel | None) -> bool:
    """Whether ``leg`` is up in a bridge where it can talk to someone."""
    if leg is None or leg.state != UP:
        return False
    bridge = model.bridges.get(leg.bridge_id or "")
    return bridge is not None and bridge.talking


def target(args: dict[str, Any], kinds: tuple[str, ...] = TARGET_KINDS) -> tuple[str, str]:
    """The one destination in ``args``: (kind, value) for ``agent``, ``group``, ``queue``, ``flow`` or ``number``."""
    given = [(kind, args[kind]) for kind in TARGET_KINDS if kind in args]
    if len(given) != 1:
        raise CTIError("bad_request", f"give exactly one destination: {', '.join(kinds)}")
    kind, value = given[0]
    if kind not in kinds:
        raise CTIError("bad_target", f"cannot use a {kind} here; use one of {', '.join(kinds)}")
    pattern = _NUMBER if kind == "number" else _NAME
    if not isinstance(value, str) or not pattern.match(value):
        raise CTIError("bad_request", f"{kind} must be {'digits' if kind == 'number' else 'a name'}")
    return kind, value


def idle_agent(board: AgentBoard, agent_id: str, me: Agent) -> Agent:
    """``agent_id`` if it is another agent, logged in and available for a call."""
    other = board.get(agent_id)
    if other is None or other.state.value == "logged_out":
        raise CTIError("unknown_agent", f"agent {agent_id} is not signed in")
    if other is me:
        raise CTIError("bad_target", "you cannot transfer a call to yourself")
    if not other.available:
        raise CTIError("agent_not_available", f"agent {agent_id} is {other.state.value}, not ready for a call")
    return other


def idle_agents(board: AgentBoard, group: str | None, me: str | None = None) -> list[Agent]:
    """Available agents (of skill ``group`` when given), longest idle first, ``me`` left out."""
    agents = [a for a in board.available() if a.agent_id != me and (group is None or group in a.skills)]
    return sorted(agents, key=lambda a: (a.stats.idle_since or 0.0, a.agent_id))


def extension(station: str) -> str:
    """The dialable extension of a station (``PJSIP/1002`` → ``1002``)."""
    return station.rpartition("/")[2]


def call_data(model: CallModel, call: Call, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The data that travels with the call: its legs' ``CTID_*`` variables (ctid's own left out), then ``extra``."""
    data: dict[str, str] = {}
    for channel in call.channels.values():
        data.update((k, v) for k, v in channel.variables.items() if k.startswith("CTID_") and k not in HIDDEN_VARIABLES
                    and k != "CTID_CONFERENCE")
    data.update(extra or {})
    return data


def pop(call: Call, data: dict[str, str], queue: str | None, by: str, kind: str) -> dict[str, Any]:
    """The ``Delivered`` screen pop for an agent receiving a transferred or consulted call."""
    return {
        "call": call.linkedid, "ani": call.ani, "dnis": call.dnis, "queue": queue, "waited": 0.0, "priority": None,
        "callback": None, "data": {name: redact(value) for name, value in data.items()}, "customer": None,
        "transferred_by": by, "transfer": kind,
    }
