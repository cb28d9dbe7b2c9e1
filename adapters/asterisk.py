"""Asterisk over AMI: feeds the call model and carries out PBX actions (``IPBX``).

On every (re)connection the adapter rebuilds the call model from
``CoreShowChannels`` and ``BridgeList`` so calls in progress survive a ctid or
link restart; events that arrive while the snapshot is being taken are held
and applied after it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ctid.calls import CallModel
from ctid.interfaces import IPBX, PBXError
from ctid.protocols.ami import (
    ActionTimeout,
    AMIClientService,
    AMIConnectionLost,
    AMIError,
    AMIProtocol,
    EventDispatcher,
)
from ctid.protocols.amiwire import Message

T = TypeVar("T")

#: ChanSpy options per mode (PROTOCOLS.md 4.1); ``d`` lets DTMF 4/5/6 switch the mode during the session.
SPY_OPTIONS = {"listen": "qEud", "whisper": "qEudw", "barge": "qEudB"}
SPY_MODE_DIGITS = {"listen": "4", "whisper": "5", "barge": "6"}


@implementer(IPBX)
class AsteriskPBX(Service):
    """The switch as ctid sees it: a call model kept current, and call control.

    ``synced`` is True once the model has been rebuilt after the latest (re)connection.
    """

    log = Logger()

    def __init__(self, ami: AMIClientService, dispatcher: EventDispatcher, model: CallModel):
        self.ami = ami
        self.dispatcher = dispatcher
        self.model = model
        self._held: list[Message] | None = None
        self.synced = False

    @property
    def connected(self) -> bool:
        """True while the AMI link is up and logged in."""
        return self.ami.protocol is not None

    def startService(self) -> None:
        super().startService()
        self.dispatcher.register(None, self._on_event)
        self.ami.add_connected_callback(self._on_connected)
        self.ami.add_disconnected_callback(self._on_disconnected)

    def stopService(self) -> None:
        self.dispatcher.deregister(None, self._on_event)
        return super().stopService()

    def _on_event(self, message: Message) -> None:
        if self._held is not None:
            self._held.append(message)
        else:
            self.model.apply(message)

    def _on_connected(self, protocol: AMIProtocol) -> None:
        self._held = []
        Deferred.fromCoroutine(self._resync(protocol)).addErrback(self._resync_failed, protocol)

    def _on_disconnected(self, reason: Failure) -> None:
        self._held = None
        self.synced = False

    async def _resync(self, protocol: AMIProtocol) -> None:
        channels = await protocol.coreShowChannels()
        bridges = await protocol.bridgeList()
        held, self._held = self._held or [], None
        self.model.rebuild(channels, bridges)
        for message in held:
            self.model.apply(message)
        self.synced = True
        self.log.info(
            "call model rebuilt from the switch: {channels} channels, {bridges} bridges, {calls} calls",
            channels=len(channels),
            bridges=len(bridges),
            calls=len(self.model.calls),
        )

    def _resync_failed(self, failure: Failure, protocol: AMIProtocol) -> None:
        held, self._held = self._held or [], None
        for message in held:
            self.model.apply(message)
        self.log.error("could not rebuild the call model after connecting: {error}", error=failure.getErrorMessage())
        if protocol.transport is not None:
            protocol.transport.loseConnection()

    def _call(self, what: str, action: Callable[[AMIProtocol], Awaitable[T]]) -> Deferred[T]:
        async def run() -> T:
            protocol = self.ami.protocol
            if protocol is None:
                raise PBXError(f"{what}: the switch link is down")
            try:
                return await action(protocol)
            except AMIError as e:
                raise PBXError(f"{what}: switch refused: {e}") from None
            except ActionTimeout:
                raise PBXError(f"{what}: no answer from the switch in time") from None
            except AMIConnectionLost:
                raise PBXError(f"{what}: the switch link was lost") from None

        return Deferred.fromCoroutine(run())

    def originate(self, channel, context=None, exten=None, priority=1, application=None, data=None,
                  caller_id=None, timeout=30.0, variables=None, channel_id=None):
        async def go(ami: AMIProtocol) -> str | None:
            await ami.originate(
                channel,
                context=context,
                exten=exten,
                priority=priority if application is None else None,
                application=application,
                data=data,
                timeout=int(timeout * 1000),
                callerid=caller_id,
                variables=variables,
                channel_id=channel_id,
            )
            return channel_id

        return self._call(f"originate {channel}", go)

    def redirect(self, channel, context, exten, priority=1, extra_channel=None, extra_context=None, extra_exten=None):
        extra_priority = 1 if extra_channel is not None and (extra_context or extra_exten) else None
        return self._call(
            f"redirect {channel}",
            lambda ami: _none(ami.redirect(channel, context, exten, priority, extra_channel=extra_channel,
                                           extra_context=extra_context, extra_exten=extra_exten,
                                           extra_priority=extra_priority)),
        )

    def hangup(self, channel, cause=None):
        return self._call(f"hangup {channel}", lambda ami: _none(ami.hangup(channel, cause)))

    def blind_transfer(self, channel, exten, context):
        return self._call(f"blind transfer {channel}", lambda ami: _none(ami.blindTransfer(channel, exten, context)))

    def attended_transfer(self, channel, exten, context):
        return self._call(f"attended transfer {channel}", lambda ami: _none(ami.atxfer(channel, exten, context)))

    def bridge(self, channel1, channel2):
        return self._call(f"bridge {channel1} {channel2}", lambda ami: _none(ami.bridge(channel1, channel2)))

    def kick_from_conference(self, conference, channel):
        return self._call(f"kick {channel} from {conference}",
                          lambda ami: _none(ami.confbridgeKick(conference, channel)))

    def start_recording(self, channel, filename, options=""):
        return self._call(f"record {channel}", lambda ami: ami.mixMonitor(channel, filename, options or None))

    def stop_recording(self, channel, mixmonitor_id=None):
        return self._call(f"stop recording {channel}", lambda ami: _none(ami.stopMixMonitor(channel, mixmonitor_id)))

    def mute_recording(self, channel, muted, direction="both"):
        return self._call(
            f"mute recording {channel}", lambda ami: _none(ami.mixMonitorMute(channel, direction, bool(muted)))
        )

    def spy(self, spier_channel, target_uniqueid, mode, caller_id=None):
        if mode not in SPY_OPTIONS:
            raise PBXError(f"spy: unknown mode {mode!r} (listen, whisper or barge)")
        channel_id = f"ctid-spy-{uuid.uuid4().hex}"
        return self.originate(
            spier_channel,
            application="ChanSpy",
            data=f"{target_uniqueid},{SPY_OPTIONS[mode]}",
            caller_id=caller_id,
            channel_id=channel_id,
        )

    def spy_mode(self, spier_channel, mode):
        if mode not in SPY_MODE_DIGITS:
            raise PBXError(f"spy: unknown mode {mode!r} (listen, whisper or barge)")
        return self._call(f"spy mode {spier_channel}",
                          lambda ami: _none(ami.playDTMF(spier_channel, SPY_MODE_DIGITS[mode], receive=True)))

    def answer(self, channel):
        return self._call(f"answer {channel}", lambda ami: _none(ami.pjsipNotify(channel, {"Event": "talk"})))

    def send_dtmf(self, channel, digits, duration_ms=None):
        async def go(ami: AMIProtocol) -> None:
            for digit in digits:
                await ami.playDTMF(channel, digit, duration_ms)

        return self._call(f"send DTMF to {channel}", go)

    def set_variable(self, channel, name, value):
        return self._call(f"set {name}", lambda ami: _none(ami.setVar(name, value, channel)))

    def get_variable(self, channel, name):
        return self._call(f"get {name}", lambda ami: ami.getVar(name, channel))


async def _none(result: Awaitable[Any]) -> None:
    await result

