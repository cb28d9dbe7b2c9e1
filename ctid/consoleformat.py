"""ctid-agent's output: events, snapshots, answers and errors as one readable line each (pure).

:func:`format_event` reads the events known by name through
:data:`EVENT_FORMATS` and shows any other (or a malformed one) as compact
JSON; times are ``HH:MM:SS`` in the zone given (None: local time).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import Any

from ctid.clientconnection import CTIClientError
from ctid.consolecommands import Parsed
from ctid.protocols.cticodec import CTIError, Event


def compact(value: Any) -> str:
    """Compact JSON with raw Unicode text."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def clock_time(at: Any, tz: tzinfo | None = None) -> str:
    """``HH:MM:SS`` of epoch seconds ``at`` in ``tz`` (None: local time)."""
    try:
        return datetime.fromtimestamp(float(at), tz).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "--:--:--"


def _state(data: Mapping[str, Any]) -> str:
    reason = data.get("reason")
    return f"{data.get('state', '?')} {reason}" if reason else str(data.get("state", "?"))


def _pending(data: Mapping[str, Any]) -> str:
    pending = data.get("pending")
    if not isinstance(pending, Mapping) or not pending.get("state"):
        return ""
    reason = pending.get("reason")
    return f"; then {pending['state']}" + (f" {reason}" if reason else "")


def _agent_state_changed(data: Mapping[str, Any]) -> str:
    how = [f"was {data.get('previous', '?')}", f"trigger {data.get('trigger', '?')}"]
    if data.get("forced_by"):
        how.append(f"by {data['forced_by']}")
    return f"{_state(data)} ({', '.join(how)}){_pending(data)}"


def _agent_phone_warning(data: Mapping[str, Any]) -> str:
    if data.get("not_hung_up"):
        return "phone off hook with no call: no calls are offered until it is hung up"
    return "phone hung up: calls can be offered again"


def _delivered(data: Mapping[str, Any]) -> str:
    """The screen pop: who is calling, what they dialled, from which queue after how long."""
    extra = " ".join(f"{k}={v}" for k, v in sorted(dict(data.get("data") or {}).items()))
    return (f"call {data.get('call')} from {data.get('ani') or 'unknown'} to {data.get('dnis') or '?'} "
            f"via {data.get('queue')} after {data.get('waited')}s {extra}").rstrip()


#: Event name -> its readable text; other events print as compact JSON.
EVENT_FORMATS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "Delivered": _delivered,
    "AgentStateChanged": _agent_state_changed,
    "AgentPhoneWarning": _agent_phone_warning,
}


def format_event(event: Event, tz: tzinfo | None = None) -> str:
    """One line: ``12:03:04 #5 AgentStateChanged ready (was not_ready, trigger ready)``."""
    body = None
    formatter = EVENT_FORMATS.get(event.name)
    if formatter is not None:
        try:
            body = formatter(event.data)
        except (AttributeError, KeyError, TypeError, ValueError):
            body = None  # malformed for its kind: show the JSON
    return f"{clock_time(event.at, tz)} #{event.seq} {event.name} {compact(event.data) if body is None else body}"


def format_agent(agent: Mapping[str, Any], tz: tzinfo | None = None) -> str:
    """An agent object in one line: id, name, station, state and reason, since, call, pending change."""
    name = f" ({agent['name']})" if agent.get("name") else ""
    text = f"agent {agent.get('agent', '?')}{name} on {agent.get('station', '?')}: {_state(agent)}"
    if agent.get("since") is not None:
        text += f" since {clock_time(agent['since'], tz)}"
    if agent.get("call"):
        text += f", call {agent['call']}"
    return text + _pending(agent)


def format_login(result: Mapping[str, Any], tz: tzinfo | None = None) -> str:
    """The Login snapshot: the agent, roles, skills and calls."""
    agent = result.get("agent")
    if not isinstance(agent, Mapping):
        agent = {}
    parts = [format_agent(agent, tz)]
    if result.get("roles"):
        parts.append("roles " + ", ".join(map(str, result["roles"])))
    if isinstance(agent.get("skills"), Mapping) and agent["skills"]:
        parts.append("skills " + ", ".join(f"{group}={level}" for group, level in agent["skills"].items()))
    if result.get("calls"):
        parts.append(f"calls {compact(result['calls'])}")
    return "; ".join(parts)


def format_result(parsed: Parsed, result: Mapping[str, Any], tz: tzinfo | None = None) -> str:
    """A command's answer: the agent line when it holds one, else (and always for raw) compact JSON."""
    agent = result.get("agent")
    if parsed.name != "raw" and isinstance(agent, Mapping):
        return "ok: " + format_agent(agent, tz)
    return "ok: " + compact(result)


def format_error(error: CTIClientError | CTIError) -> str:
    """``error <code>: <message>``."""
    return f"error {error.code}: {error.message}"
