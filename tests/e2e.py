"""Helpers for end-to-end tests: the whole daemon against the simulator over loopback TCP."""

from __future__ import annotations

import pathlib
import random
import socket
from collections.abc import Callable
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater

from ctid import config
from ctid.adapters.customers import SQLCustomers
from ctid.adapters.directory import SQLDirectory
from ctid.adapters.pbxsim.population import Caller
from ctid.service import makeService

PASSWORD = "e2e-agent-pw"
CONF = pathlib.Path(__file__).resolve().parent.parent / "conf"
ACCOUNT_KEY = "e2e-account-key-0123"
#: Seeded supervisors and what they manage (groups and cities; ``*`` the whole centre).
SUPERVISORS = {"1900": "accounts,Shanghai", "1901": "accounts,Beijing", "1902": "consultation", "1909": "*"}


#: Listening ports for tests come from below Linux's ephemeral range (32768–60999), where the kernel picks the
#: local ports of outgoing connections: a port handed out here cannot be taken by a client socket meanwhile.
_LISTEN_PORTS = (20000, 32000)
_ports = random.Random()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (outside the ephemeral range)."""
    while True:
        port = _ports.randint(*_LISTEN_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def daemon_config(tmp_path, routes: str | None = None, queue: str = "", ivr: bool = False, extra: str = "",
                  **sim: str) -> config.Config:
    """A configuration running the simulator on free ports, with no generated traffic.

    ``routes``: the text of a route rules file for ``[acd] routes``; ``queue``: extra lines for the
    ``[queue:general]`` section (skill group ``accounts``); ``ivr``: run the bank's IVR flows (conf/ivr) instead
    of parking callers at once; ``extra``: more ini text appended as is (whole sections, e.g. ``[corebank]``).
    """
    ami, agi, manhole, cti = free_port(), free_port(), free_port(), free_port()
    settings = {
        "calls_per_minute": "0",
        "answer_delay": "0.1 0.2",
        "no_answer_rate": "0",
        "talk_time": "0.5 0.5",
        "patience": "0.5 0.5",
        "cti_endpoint": f"tcp:127.0.0.1:{cti}",
        "desktop_password": PASSWORD,
        "media_speed": "4",
        # without the IVR, service numbers go straight to the queue (the built-in "queue" script)
        **({} if ivr else {"agi_script": "queue"}),
        **sim,
    }
    text = (
        f"[ami]\nendpoint = tcp:127.0.0.1:{ami}:timeout=2\nsecret = e2e-secret\n"
        "ping_interval = 1\nping_timeout = 1\naction_timeout = 2\n"
        f"[fastagi]\nendpoint = tcp:{agi}:interface=127.0.0.1\ncommand_timeout = 5\n"
        f"[database]\nurl = sqlite:///{tmp_path / 'ctid.sqlite'}\n"
        f"[cti]\nendpoint = tcp:{cti}:interface=127.0.0.1\nheartbeat = 1\nresume_grace = 1\n"
        "[agents]\nwrap_up_time = 0.5\n[acd]\nring_time = 1\n"
        + ("routes = routes.toml\n" if routes else "")
        +
        f"[customers]\naccount_key = {ACCOUNT_KEY}\n"
        + (f"[ivr]\nflows = {CONF / 'ivr'}\nprompts = {CONF / 'prompts' / 'manifest.yaml'}\n"
           f"voice_dir = {tmp_path}\n" if ivr else "")
        +
        f"[queue:general]\ngroup = accounts\n{queue}\n"
        f"[manhole]\nenabled = yes\nendpoint = tcp:{manhole}:interface=127.0.0.1\npassword = e2e-manhole\n"
        f"[pbxsim]\nenabled = yes\nami_endpoint = tcp:{ami}:interface=127.0.0.1\n"
        f"agi_endpoint = tcp:127.0.0.1:{agi}:timeout=2\nsecret = e2e-secret\n"
        + "".join(f"{k} = {v}\n" for k, v in settings.items())
        + extra
    )
    if routes:
        (tmp_path / "routes.toml").write_text(routes)
    path = tmp_path / "ctid.ini"
    path.write_text(text)
    return config.load(str(path))


class Daemon:
    """A running service tree, with handles on its parts."""

    def __init__(self, settings: config.Config):
        self.config = settings
        self.root = makeService(settings, reactor)
        self.ami = self.root.getServiceNamed("ami")
        self.pbx = self.root.getServiceNamed("pbx")
        self.model = self.pbx.model
        self.sim = self.root.getServiceNamed("pbxsim")
        self.world = self.sim.world
        self.events: list[Any] = []
        self.model.subscribe(self.events.append)

    def port(self, section: str) -> int:
        return int(getattr(self.config, section).endpoint.split(":")[1])

    async def start(self) -> None:
        self.root.startService()
        await self.root.getServiceNamed("schema").done
        await self.seed()
        await self.ami.whenConnected()
        await self.until(lambda: self.pbx.synced, "the first resync")

    async def seed(self) -> None:
        """Agents 1001–1004 (password PASSWORD) in the directory, like scripts/ctid-seed."""
        directory = SQLDirectory(self.root.getServiceNamed("db"))
        for group in ("accounts", "consultation"):
            await directory.add_skill_group(group)
        for n, city in ((1001, "Shanghai"), (1002, "Shanghai"), (1003, "Beijing"), (1004, "Beijing")):
            await directory.add_agent(str(n), f"Agent {n}", PASSWORD, skills={"accounts": 5}, city=city)
        await directory.add_agent("1005", "Gone", PASSWORD, enabled=False)
        for supervisor, manages in SUPERVISORS.items():  # supervisors: no skills, so no calls are offered to them
            await directory.add_agent(supervisor, f"Supervisor {supervisor}", PASSWORD, roles=("agent", "supervisor"),
                                      city="Shanghai", manages=manages)
        customers = SQLCustomers(self.root.getServiceNamed("db"), ACCOUNT_KEY)
        await customers.add_customer("C-1", "张三", segment="private", city="Shanghai")
        await customers.add_phone("C-1", "13800138000")
        await customers.add_account("C-1", "6222021234567891234")

    async def stop(self) -> None:
        await self.root.stopService()

    async def restart_switch_link(self, while_down: Callable[[], Any] = lambda: None) -> None:
        """Close the simulator's AMI port and connections, run ``while_down``, listen again, wait for the resync."""
        old = self.sim.getServiceNamed("ami")
        await old.disownServiceParent()
        self.sim.factory.disconnect_all()
        await self.until(lambda: not self.pbx.connected, "ctid to notice the link is down")
        while_down()
        endpoint = serverFromString(reactor, self.sim.settings.ami_endpoint)
        new = StreamServerEndpointService(endpoint, self.sim.factory)
        new.setName("ami")
        new.setServiceParent(self.sim)
        await self.until(lambda: self.pbx.synced, "ctid to reconnect and resync")

    def call_in(self, number: str, dialed: str, script: str = "", patience: float = 0.5) -> Any:
        """A simulated customer calls ``dialed`` from ``number``; returns the trunk channel."""
        caller = Caller(self.world, random.Random(7), self.sim.settings, number, dialed, patience, script)
        return caller.call()

    def of(self, kind: type, **fields: Any) -> list[Any]:
        """Domain events of ``kind`` whose fields equal ``fields``."""
        return [e for e in self.events if isinstance(e, kind) and all(getattr(e, k) == v for k, v in fields.items())]

    async def until(self, condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
        """Wait (polling the reactor every 20 ms) until ``condition()`` is truthy."""
        waited = 0.0
        while True:
            value = condition()
            if value:
                return value
            if waited >= timeout:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            await deferLater(reactor, 0.02, lambda: None)
            waited += 0.02


def connect_and_send(port: int, data: bytes) -> Deferred[bytes]:
    """Open a raw TCP connection, send ``data``, collect what comes back until the peer closes or 1 s passes."""
    from twisted.internet.protocol import ClientFactory, Protocol

    done: Deferred[bytes] = Deferred()

    class Raw(Protocol):
        def __init__(self) -> None:
            self.received = b""

        def connectionMade(self) -> None:
            self.transport.write(data)
            self.timer = reactor.callLater(1.0, self.transport.loseConnection)

        def dataReceived(self, chunk: bytes) -> None:
            self.received += chunk

        def connectionLost(self, reason: Any) -> None:
            if self.timer.active():
                self.timer.cancel()
            done.callback(self.received)

    factory = ClientFactory()
    factory.protocol = Raw
    reactor.connectTCP("127.0.0.1", port, factory, timeout=2)
    return done


def telnet_session(port: int, steps: list[tuple[bytes, bytes]], timeout: float = 5.0) -> Deferred[bytes]:
    """A telnet client: for each (prompt, answer) wait for ``prompt`` in the output, then send ``answer``.

    Option negotiation is answered like a plain terminal client (the server
    may echo and suppress go-ahead; nothing else).  Fires with the text
    received, once every step is done and 0.5 s more has passed, or when the
    peer closes, or after ``timeout``.
    """
    from twisted.conch import telnet
    from twisted.internet.protocol import ClientFactory

    done: Deferred[bytes] = Deferred()

    class Scripted(telnet.Telnet):
        def connectionMade(self) -> None:
            super().connectionMade()
            self.received, self.pending, self.seen = b"", list(steps), 0
            self.timer = reactor.callLater(timeout, self.transport.loseConnection)

        def enableRemote(self, option: bytes) -> bool:
            return option in (telnet.ECHO, telnet.SGA)

        def enableLocal(self, option: bytes) -> bool:
            return option in (telnet.SGA, telnet.NAWS, telnet.LINEMODE)

        def disableRemote(self, option: bytes) -> None:
            pass

        def applicationDataReceived(self, chunk: bytes) -> None:
            self.received += chunk
            while self.pending and self.pending[0][0] in self.received[self.seen:]:
                prompt, answer = self.pending.pop(0)
                self.seen = self.received.index(prompt, self.seen) + len(prompt)
                self.transport.write(answer)
                if not self.pending:
                    self.timer.reset(0.5)

        def connectionLost(self, reason: Any) -> None:
            if self.timer.active():
                self.timer.cancel()
            done.callback(self.received)

    factory = ClientFactory()
    factory.protocol = Scripted
    reactor.connectTCP("127.0.0.1", port, factory, timeout=2)
    return done
