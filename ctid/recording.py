"""Recording calls (AG-3): the policy, and the agents' StartRecording / StopRecording / Pause / Resume commands.

The customer's leg of a call is recorded with MixMonitor (both directions
of its bridge, so the recording survives a transfer of the agent's side);
pausing mutes the recording (``MixMonitorMute``) — while the customer gives
a card number, say — and resuming unmutes it.  Per ``[recording] record``
a call is recorded by itself as soon as it is answered: every call
(``all``) or the calls of the listed ``queues``; with ``on_demand`` agents
start and stop recording their own call at will.

The switch writes the file (``[recording] switch_directory`` + the
``file_name`` template); the recordings index (``recordings`` rows) is
written by :mod:`ctid.callrecords` from the call model's
``RecordingStarted``/``RecordingStopped`` events, so a recording started by
the dialplan is indexed too.  Every change reaches the agents on the call
as a ``RecordingChanged`` event, and every command is audited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ctid.callevents import Channel
from ctid.calls import CallAnswered, CallEnded, CallModel, RecordingStopped
from ctid.interfaces import IPBX, PBXError
from ctid.protocols.ctiapi import CTIError, CTISession, require_login
from ctid.recordingsettings import RecordingSettings, file_name

log = Logger()

#: The MixMonitor ``i(VAR)`` option: the switch puts the recording's id in this channel variable.
ID_VARIABLE = "MIXMONITOR_ID"


@dataclass
class Run:
    """One recording in progress on a call."""

    call_id: str
    channel: str
    uniqueid: str
    file: str
    started_by: str
    mixmonitor_id: str | None = None
    paused: bool = False


def customer_leg(model: CallModel, center: Any, call_id: str) -> Channel | None:
    """The customer's live leg of ``call_id``: the queued caller's channel, else the call's first live leg."""
    call = model.calls.get(call_id)
    if call is None:
        return None
    delivery = center.deliveries.get(call_id) if center is not None else None
    if delivery is not None and delivery.channel is not None:
        channel = model.find_channel(delivery.channel)
        if channel is not None and channel.uniqueid in call.channels:
            return channel
    if call.origin in call.channels:
        return call.channels[call.origin]
    return next(iter(call.channels.values()), None)


def role_of(identity: dict[str, Any]) -> str | None:
    """The strongest of a login identity's roles, for the audit log."""
    return next((role for role in ("admin", "supervisor", "leader", "agent") if role in identity["roles"]), None)


def agent_call(board: Any, model: CallModel, session: CTISession, args: dict[str, Any]) -> str:
    """The answered call of the session's agent (``call`` in ``args`` must name it when given)."""
    agent = board.get(require_login(session)["agent"])
    call_id = agent.call_id if agent is not None else None
    asked = args.get("call")
    if asked is not None and (not isinstance(asked, str) or len(asked) > 64):
        raise CTIError("bad_request", "call must be a call id")
    if call_id is None or model.calls.get(call_id) is None:
        raise CTIError("no_call", "you are not on a call")
    if asked is not None and asked != call_id:
        raise CTIError("not_your_call", "that call is not yours")
    if model.calls[call_id].answered_at is None:
        raise CTIError("no_call", "the call is not answered yet")
    return call_id


class RecordingDesk:
    """Starts, stops, pauses and resumes recordings, by policy and by the agents' commands (see the module doc)."""

    def __init__(self, settings: RecordingSettings, model: CallModel, board: Any, center: Any, pbx: IPBX,
                 desk: Any, records: Any, clock: Any):
        self.settings, self.model, self.board, self.center, self.pbx = settings, model, board, center, pbx
        self.desk, self.records, self.clock = desk, records, clock
        self.runs: dict[str, Run] = {}
        self._counts: dict[str, int] = {}
        for name, fn in (("StartRecording", self.start_command), ("StopRecording", self.stop_command),
                         ("PauseRecording", self.pause_command), ("ResumeRecording", self.resume_command)):
            desk.add(name, fn)
        model.subscribe(self._on_event)

    # -- the commands -----------------------------------------------------------------------------------

    async def start_command(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Record the agent's call."""
        run = await self._audited(session, args, "record_start",
                                  lambda call_id: self.start(call_id, require_login(session)["agent"]))
        return self.view(run, "recording")

    async def stop_command(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Stop recording the agent's call."""
        return self.view(await self._audited(session, args, "record_stop", self.stop), "stopped")

    async def pause_command(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Mute the recording (the call goes on unrecorded until ResumeRecording)."""
        run = await self._audited(session, args, "record_pause", lambda call_id: self.mute(call_id, True))
        return self.view(run, "paused")

    async def resume_command(self, session: CTISession, args: dict[str, Any]) -> dict[str, Any]:
        """Unmute the recording."""
        run = await self._audited(session, args, "record_resume", lambda call_id: self.mute(call_id, False))
        return self.view(run, "recording")

    async def _audited(self, session: CTISession, args: dict[str, Any], action: str,
                       work: Callable[[str], Awaitable[Run]]) -> Run:
        """Run ``work`` on the agent's own call; the outcome (``ok`` or the refusal's code) goes to the audit log."""
        identity = require_login(session)
        target = args.get("call") if isinstance(args.get("call"), str) else None
        try:
            if not self.settings.on_demand:
                raise CTIError("recording_disabled", "the recording policy does not let agents control recording")
            target = agent_call(self.board, self.model, session, args)
            run = await work(target)
        except CTIError as e:
            self.records.audit(identity["agent"], role_of(identity), session.peer, action, target, e.code)
            raise
        self.records.audit(identity["agent"], role_of(identity), session.peer, action, target, "ok", run.file)
        return run

    # -- what they do ---------------------------------------------------------------------------------

    async def start(self, call_id: str, by: str) -> Run:
        """Start MixMonitor on the customer's leg of ``call_id``; CTIError ``already_recording``, ``switch_error``."""
        if call_id in self.runs:
            raise CTIError("already_recording", "the call is already being recorded")
        leg = customer_leg(self.model, self.center, call_id)
        if leg is None:
            raise CTIError("no_call", "the call has no leg left to record")
        run = self.runs[call_id] = Run(call_id, leg.name, leg.uniqueid, self._file(call_id, leg.uniqueid), by)
        try:
            run.mixmonitor_id = await self.pbx.start_recording(leg.name, run.file, f"i({ID_VARIABLE})")
        except PBXError as e:
            self.runs.pop(call_id, None)
            raise CTIError("switch_error", f"the switch did not start recording: {e}") from None
        log.info("recording call {call_id} on {channel} into {file} (by {by})", call_id=call_id, channel=leg.name,
                 file=run.file, by=by)
        self._notify(run, "recording")
        return run

    async def stop(self, call_id: str) -> Run:
        """Stop the call's recording; CTIError ``not_recording``, ``switch_error``."""
        run = self._run(call_id)
        try:
            await self.pbx.stop_recording(run.channel, run.mixmonitor_id)
        except PBXError as e:
            raise CTIError("switch_error", f"the switch did not stop recording: {e}") from None
        if self.runs.pop(call_id, None) is run:
            self._notify(run, "stopped")
        return run

    async def mute(self, call_id: str, muted: bool) -> Run:
        """Pause (``muted``) or resume the call's recording; CTIError ``already_paused``, ``not_paused`` …"""
        run = self._run(call_id)
        if run.paused == muted:
            raise CTIError("already_paused" if muted else "not_paused",
                           "the recording is already paused" if muted else "the recording is not paused")
        try:
            await self.pbx.mute_recording(run.channel, muted, "both")
        except PBXError as e:
            raise CTIError("switch_error", f"the switch did not {'pause' if muted else 'resume'}: {e}") from None
        run.paused = muted
        self._notify(run, "paused" if muted else "recording")
        return run

    def _run(self, call_id: str) -> Run:
        run = self.runs.get(call_id)
        if run is None:
            raise CTIError("not_recording", "the call is not being recorded")
        return run

    def _file(self, call_id: str, uniqueid: str) -> str:
        count = self._counts[call_id] = self._counts.get(call_id, 0) + 1
        delivery = self.center.deliveries.get(call_id) if self.center is not None else None
        agent, queue = (delivery.agent_id, delivery.waiting.queue) if delivery is not None else (None, None)
        path = file_name(self.settings, self.clock.seconds(), call=call_id, leg=uniqueid, agent=agent, queue=queue)
        if count == 1:
            return path
        stem, dot, extension = path.rpartition(".")
        return f"{stem}-{count}{dot}{extension}"

    @staticmethod
    def view(run: Run, state: str) -> dict[str, Any]:
        """A recording as clients see it (command answers and ``RecordingChanged``)."""
        return {"call": run.call_id, "state": state, "file": run.file, "paused": run.paused,
                "started_by": run.started_by}

    def _notify(self, run: Run, state: str) -> None:
        data = self.view(run, state)
        for agent in self.board.all():
            if agent.call_id == run.call_id:
                self.desk.notify(agent.agent_id, "RecordingChanged", data)

    # -- the policy and the switch's own news -------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        if isinstance(event, CallAnswered):
            self._maybe_record(event.call_id)
        elif isinstance(event, RecordingStopped):
            run = self.runs.get(event.call_id)
            if run is not None and run.uniqueid == event.uniqueid:
                del self.runs[event.call_id]
                self._notify(run, "stopped")
        elif isinstance(event, CallEnded):
            self.runs.pop(event.call_id, None)
            self._counts.pop(event.call_id, None)

    def _maybe_record(self, call_id: str) -> None:
        delivery = self.center.deliveries.get(call_id) if self.center is not None else None
        if self.settings.record == "none" or call_id in self.runs:
            return
        if not self.settings.records_queue(delivery.waiting.queue if delivery is not None else None):
            return
        Deferred.fromCoroutine(self.start(call_id, "policy")).addErrback(
            lambda failure: log.warn("could not record call {call_id} by policy: {error}", call_id=call_id,
                                     error=failure.getErrorMessage()))
