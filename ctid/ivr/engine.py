"""The IVR engine: runs a caller's flow over the FastAGI session, one coroutine per call.

:class:`IVREngine` holds the loaded :class:`~ctid.ivr.model.FlowLibrary`
and serves one FastAGI script per flow (``agi://host/bank`` runs the flow
named ``bank``).  A call takes the flow object current when it starts and
keeps it: :meth:`IVREngine.update` (a reload) only affects new calls.

However a call leaves its flow — handed to an agent, hung up by the IVR, the
caller hanging up at any point, or an unexpected error — the engine closes
the core-banking session and reports a :class:`~ctid.ivr.call.FlowEnd` with
the node it stopped at.  An error hands the caller to an agent when the
channel is still up, rather than dropping the call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from ctid.banking import ICoreBanking
from ctid.ivr.call import CallInfo, IVRCall, IVRHooks
from ctid.ivr.model import Flow, FlowLibrary
from ctid.ivr.nodes import HANDLERS, Runtime
from ctid.ivr.prompts import ITextToSpeech
from ctid.protocols.agisession import AGISession
from ctid.protocols.agiwire import AGIError, AGIHangupError

log = Logger()


class IVREngine(Service):
    """Runs flows on calls; ``update`` swaps in reloaded flows for the calls that start afterwards.

    A named child (``ivr``) of the service tree so the manhole and tests find
    it; ``bank`` is the core-banking gateway the operations call.
    """

    name = "ivr"

    def __init__(self, library: FlowLibrary, bank: ICoreBanking | None, clock: IReactorTime, *,
                 hooks: IVRHooks | None = None, tts: ITextToSpeech | None = None, default_language: str = "zh",
                 operation_timeout: float = 10.0, voice_dir: str = "var/voice"):
        self.library = library
        self.bank = bank
        self.hooks = hooks or IVRHooks()
        self.default_language = default_language
        self._settings: dict[str, Any] = dict(clock=clock, operation_timeout=operation_timeout, voice_dir=voice_dir,
                                              tts=tts)
        self._router: Any = None
        #: Calls running now, by channel unique id.
        self.calls: dict[str, IVRCall] = {}

    @classmethod
    def from_settings(cls, settings: Any, bank: ICoreBanking | None, clock: IReactorTime,
                      hooks: IVRHooks | None = None, tts: ITextToSpeech | None = None) -> IVREngine:
        """An engine for the ``[ivr]`` settings (a :class:`ctid.config.IVRSettings` with its flows loaded), speaking
        text with ``tts`` when given."""
        return cls(settings.library, bank, clock, hooks=hooks, tts=tts, default_language=settings.default_language,
                   operation_timeout=settings.operation_timeout, voice_dir=settings.voice_dir)

    def configure(self, settings: Any) -> None:
        """Apply reloaded ``[ivr]`` settings: flows, prompts, language, timeout, recordings folder."""
        if settings.library is None:
            log.warn("IVR: [ivr] flows is now empty; the loaded flows stay until a restart")
            return
        self.update(settings.library, settings.default_language, operation_timeout=settings.operation_timeout,
                    voice_dir=settings.voice_dir)

    def update(self, library: FlowLibrary, default_language: str | None = None, **settings: Any) -> None:
        """Use ``library`` (and ``default_language``, ``operation_timeout``, ``voice_dir`` when given) for calls
        starting from now on; running calls keep their flow."""
        unknown = set(settings) - {"operation_timeout", "voice_dir"}
        if unknown:
            raise TypeError(f"unknown IVR setting {sorted(unknown)[0]!r}")
        old = set(self.library.flows)
        self.library = library
        self.default_language = default_language or self.default_language
        self._settings.update(settings)
        if self._router is not None:
            for name in old - set(library.flows):
                self._router.routes.pop(name, None)
            self._router.routes.update(self.scripts())
        log.info("IVR: flows loaded from {directory}: {flows}", directory=library.directory,
                 flows=", ".join(sorted(library.flows)))

    def scripts(self) -> dict[str, Callable[[AGISession], Any]]:
        """One FastAGI handler per loaded flow, by flow name."""
        return {name: functools.partial(self.run, name) for name in self.library.flows}

    def serve(self, router: Any) -> None:
        """Add the flows to ``router.routes`` (a :class:`~ctid.protocols.fastagi.ScriptRouter`) and keep them in
        step on :meth:`update`; the router's other scripts stay as they are."""
        self._router = router
        router.routes.update(self.scripts())

    async def run(self, name: str, session: AGISession) -> None:
        """Run flow ``name`` on the call behind ``session`` until it leaves the flow."""
        flow = self.library.flows.get(name)
        if flow is None:
            log.warn("IVR: flow {flow} is no longer loaded; returning the call to the dialplan", flow=name,
                     **session.log_fields())
            return
        call = self._new_call(flow, session)
        runtime = Runtime(self.library.manifest, self.bank, **self._settings)
        self.calls[call.info.uniqueid] = call
        try:
            await self._walk(call, session, runtime)
        except AGIHangupError:
            call.ending = "hangup"
        except Exception as error:
            call.ending = "error"
            await self._rescue(call, session, error)
        finally:
            self.calls.pop(call.info.uniqueid, None)
            self._close_banking(call, runtime)
            self._report(call)

    def _new_call(self, flow: Flow, session: AGISession) -> IVRCall:
        env = session.env
        language = self.default_language if self.default_language in flow.languages else flow.languages[0]
        info = CallInfo(env.channel, env.uniqueid, env.callerid or "", env.dnid or "", flow.name)
        return IVRCall(flow, info, language, node=flow.start, hooks=self.hooks)

    async def _walk(self, call: IVRCall, session: AGISession, runtime: Runtime) -> None:
        await session.answer()
        node: str | None = call.flow.start
        while node is not None:
            call.node = node
            spec = call.flow.nodes[node]
            node = await HANDLERS[spec.type](call, spec, session, runtime)

    async def _rescue(self, call: IVRCall, session: AGISession, error: Exception) -> None:
        """After an unexpected error, hand the caller to an agent if the channel is still there."""
        if isinstance(error, AGIError):
            log.warn("IVR: flow {flow} stopped at {node}: {error}", flow=call.flow.name, node=call.node,
                     error=str(error), **session.log_fields())
        else:
            log.failure("IVR: flow {flow} failed at {node}", None, LogLevel.critical, flow=call.flow.name,
                        node=call.node, **session.log_fields())
        if session.hung_up:
            return
        try:
            for name, value in call.handoff().items():
                await session.set_variable(name, value)
        except AGIError:
            log.info("IVR: could not hand {channel} to an agent after the error", channel=call.info.channel)

    def _close_banking(self, call: IVRCall, runtime: Runtime) -> None:
        if call.banking is None or runtime.bank is None:
            return
        closing = runtime.bank.close(call.banking)
        closing.addErrback(lambda failure: log.failure("IVR: closing the core-banking session failed", failure,
                                                       level=LogLevel.warn))

    def _report(self, call: IVRCall) -> None:
        try:
            call.hooks.on_flow_end(call.end(call.ending))
        except Exception:
            log.failure("IVR: the flow-end hook failed")
