"""Simulated agent desktops: the simulator's agents sign in to ctid over the real CTI protocol.

With them ``make run`` shows the whole path of a call: caller → IVR → queue
→ an agent's phone rings → talk → wrap-up → ready again.  Each desktop is a
:class:`ctid.client.CTIClient` that logs in on its phone's station, becomes
ready, and stays ready (after wrap-up the agent board makes it ready again).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.logger import Logger

from ctid.client import CTIClient, CTIClientError

log = Logger(namespace="ctid.pbxsim")


#: Seconds before a desktop whose sign-in was refused tries again.
RETRY = 2.0


class SimulatedDesktops(Service):
    """Signs ``agents`` in at ``endpoint`` with ``password`` and sets them ready, retrying until it works."""

    name = "desktops"

    def __init__(self, reactor: Any, endpoint: str, agents: tuple[str, ...], password: str, delay: float = 1.0):
        self.reactor = reactor
        self.endpoint = endpoint
        self.agents = agents
        self._password = password
        self.delay = delay
        self.clients: dict[str, CTIClient] = {}

    def startService(self) -> None:
        super().startService()
        for agent in self.agents:
            self.reactor.callLater(self.delay, self._open, agent)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        clients, self.clients = list(self.clients.values()), {}
        return DeferredList([client.close() for client in clients], consumeErrors=True)

    def _open(self, agent: str) -> None:
        if not self.running:
            return

        async def sign_in(connection: Any) -> None:
            try:
                await connection.call("Login", agent=agent, password=self._password, station=agent)
                await connection.call("SetAgentState", state="ready")
            except CTIClientError as e:
                log.warn("pbxsim: desktop of agent {agent} could not sign in: {code}; trying again in {retry:.0f}s",
                         agent=agent, code=e.code, retry=RETRY)
                self.reactor.callLater(RETRY, self._retry, agent)
                return
            log.info("pbxsim: desktop of agent {agent} signed in and ready", agent=agent)

        client = CTIClient(self.reactor, name="pbxsim-desktop/1", setup=sign_in)
        self.clients[agent] = client
        client.connect(self.endpoint, fail_after=None).addErrback(self._gave_up, agent)

    def _retry(self, agent: str) -> None:
        """Sign ``agent`` in again on a new connection (a person would try again too)."""
        client = self.clients.pop(agent, None)
        if client is not None:
            client.close()
        self._open(agent)

    def _gave_up(self, failure: Any, agent: str) -> None:
        if not failure.check(CancelledError):  # CancelledError: the simulator is stopping
            log.warn("pbxsim: desktop of agent {agent} cannot reach ctid: {error}", agent=agent,
                     error=failure.getErrorMessage())
