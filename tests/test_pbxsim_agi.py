"""The simulator's FastAGI side against a tiny FastAGI server over real loopback TCP.

Network I/O runs on the real reactor; the simulated channel's time (prompts,
key presses, patience) runs on a Clock that the tests pump while they wait
for a reply.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.protocols.basic import LineOnlyReceiver

from ctid.adapters.pbxsim.agiclient import EndpointAgiRunner
from ctid.adapters.pbxsim.agicommands import parse_args
from ctid.adapters.pbxsim.population import Caller, ScriptedDtmf
from ctid.adapters.pbxsim.settings import SimulatorSettings
from ctid.adapters.pbxsim.testing import EventRecorder, ScriptedCaller, advance, inbound_call, make_world

CAPTURES = Path(__file__).parent / "data" / "captures"
FASTAGI_KEYS = [
    "agi_network", "agi_network_script", "agi_request", "agi_channel", "agi_language", "agi_type", "agi_uniqueid",
    "agi_version", "agi_callerid", "agi_calleridname", "agi_callingpres", "agi_callingani2", "agi_callington",
    "agi_callingtns", "agi_dnid", "agi_rdnis", "agi_context", "agi_extension", "agi_priority", "agi_enhanced",
    "agi_accountcode", "agi_threadid",
]


class TinyAgiServer(LineOnlyReceiver):
    """Reads the agi_ block, then lets the test send commands and read reply lines; counts HANGUP lines."""

    delimiter = b"\n"

    def __init__(self) -> None:
        self.env: list[str] = []
        self.ready: Deferred[TinyAgiServer] = Deferred()
        self.lines: DeferredQueue[str] = DeferredQueue()
        self.hangups = 0
        self.closed: Deferred[None] = Deferred()
        self._in_env = True

    def lineReceived(self, line: bytes) -> None:
        text = line.decode()
        if self._in_env:
            if text == "":
                self._in_env = False
                self.ready.callback(self)
            else:
                self.env.append(text)
        elif text == "HANGUP":
            self.hangups += 1
        else:
            self.lines.put(text)

    def command(self, text: str) -> None:
        self.transport.write(text.encode() + b"\n")

    def connectionLost(self, reason: object = None) -> None:
        self.closed.callback(None)


class Harness:
    """A listening TinyAgiServer plus a World whose AGI() connects to it."""

    def __init__(self) -> None:
        self.world, self.clock = make_world()
        self.events = EventRecorder(self.world)
        self.servers: DeferredQueue[TinyAgiServer] = DeferredQueue()
        self.port = None

    async def listen(self) -> None:
        factory = Factory.forProtocol(TinyAgiServer)
        build = factory.buildProtocol

        def buildProtocol(addr):  # type: ignore[no-untyped-def]
            proto = build(addr)
            proto.ready.addCallback(self.servers.put)
            return proto

        factory.buildProtocol = buildProtocol
        self.port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        number = self.port.getHost().port
        self.world.agi = EndpointAgiRunner(reactor, f"tcp:127.0.0.1:{number}", timeout=2)
        self.world.globals["CTID_AGI"] = f"agi://127.0.0.1:{number}/bank"

    async def pump(self, d: Deferred, limit: float = 60.0, step: float = 0.05):  # type: ignore[type-arg]
        """Advance simulated time in small steps, letting real I/O run between them, until ``d`` fires."""
        spent = 0.0
        while not d.called:
            await deferLater(reactor, 0.001)
            if d.called:
                break
            if spent >= limit:
                raise AssertionError(f"nothing after {limit} simulated seconds")
            advance(self.clock, step)
            spent += step
        return await d

    async def call(self, number: str = "13800138000", script: str = "", device=None) -> TinyAgiServer:  # type: ignore[no-untyped-def]
        self.chan = inbound_call(self.world, number, "95566", device or ScriptedCaller(ScriptedDtmf(script)))
        return await self.pump(self.servers.get(), limit=5)

    async def ask(self, server: TinyAgiServer, command: str, limit: float = 60.0) -> str:
        server.command(command)
        return await self.pump(server.lines.get(), limit)

    async def close(self) -> None:
        if self.port is not None:
            await self.port.stopListening()


@pytest.fixture
def harness():
    h = Harness()
    yield h
    pytest_twisted.blockon(Deferred.fromCoroutine(h.close()))


@pytest_twisted.ensureDeferred
async def test_agi_block_has_the_shape_of_fastagi_capture(harness):
    """The agi_ block lists the keys of fastagi.txt in the same order, ends with a blank line, real values."""
    await harness.listen()
    server = await harness.call()
    keys = [line.split(":", 1)[0] for line in server.env]
    captured = [line[3:].split(":", 1)[0] for line in (CAPTURES / "fastagi.txt").read_text().splitlines()
                if line.startswith("<< agi_")]
    assert captured == FASTAGI_KEYS
    assert keys == FASTAGI_KEYS
    env = dict(line.split(": ", 1) if ": " in line else (line[:-1], "") for line in server.env)
    assert env["agi_network_script"] == "bank" and env["agi_request"].endswith("/bank")
    assert (env["agi_channel"], env["agi_type"], env["agi_callerid"]) == ("PJSIP/trunk-00000000", "PJSIP",
                                                                           "13800138000")
    assert (env["agi_context"], env["agi_extension"], env["agi_priority"], env["agi_dnid"]) == (
        "ctid-in", "95566", "2", "95566")
    assert env["agi_uniqueid"] == harness.chan.uniqueid and env["agi_accountcode"] == ""
    server.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_commands_answered_from_the_callers_dtmf_script(harness):
    """GET DATA, WAIT FOR DIGIT, STREAM FILE escapes, variables, 510/520, quoting, and a CR kept in the argument."""
    await harness.listen()
    server = await harness.call(script="123456#789")
    ask = harness.ask
    assert await ask(server, "ANSWER") == "200 result=0"
    assert await ask(server, "GET DATA beep 3000 7") == "200 result=123456"
    assert await ask(server, "GET DATA beep 3000 2") == "200 result=78"
    assert (await ask(server, 'STREAM FILE welcome "12"')).startswith("200 result=0 endpos=")
    assert (await ask(server, 'STREAM FILE welcome "89"')).startswith("200 result=57 endpos=")
    assert await ask(server, "WAIT FOR DIGIT 1000") == "200 result=0"
    assert await ask(server, "GET DATA beep 1000 4") == "200 result= (timeout)"
    assert await ask(server, 'SAY DIGITS 42 ""') == "200 result=0"
    assert await ask(server, "GET VARIABLE CALLERID(num)") == "200 result=1 (13800138000)"
    assert await ask(server, 'SET VARIABLE CTID_NOTE "a b\\"c"') == "200 result=1"
    assert await ask(server, "GET VARIABLE CTID_NOTE") == '200 result=1 (a b"c)'
    assert await ask(server, "GET VARIABLE NOT_SET") == "200 result=0"
    assert await ask(server, "EXEC NoSuchApp x") == "200 result=-2"
    assert await ask(server, 'NOOP "x"') == "200 result=0"
    assert await ask(server, "FLY TO MOON") == "510 Invalid or unknown command"
    assert await ask(server, "NOOP x\r") == "200 result=0"
    assert await ask(server, "ANSWER\r") == "510 Invalid or unknown command"
    usage = [await ask(server, "GET DATA")]
    while not usage[-1].startswith("520 "):
        usage.append(await server.lines.get())
    assert usage[0] == "520-Invalid command syntax.  Proper usage follows:"
    assert usage[1].startswith("Usage: GET DATA") and usage[-1] == "520 End of proper usage."
    digits = [e.get("Digit") for e in harness.events.of("DTMFBegin")]
    assert digits == list("123456#789")
    assert harness.events.of("VarSet", Variable="CTID_NOTE")[0].get("Value") == 'a b"c'
    assert harness.events.of("AGIExecStart")[0].get("Command") == "ANSWER"
    server.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_server_closing_sends_the_caller_to_ctid_wait(harness):
    """When the FastAGI server closes the socket the dialplan continues: Goto ctid-wait, music."""
    await harness.listen()
    server = await harness.call()
    assert await harness.ask(server, "SET VARIABLE CTID_SEGMENT retail") == "200 result=1"
    server.transport.loseConnection()
    await server.closed
    await harness.pump(_until(lambda: harness.events.of("MusicOnHoldStart")), limit=5)
    assert harness.chan.variables["AGISTATUS"] == "SUCCESS" and harness.chan.context == "ctid-wait"
    assert server.hangups == 0


@pytest_twisted.ensureDeferred
async def test_hangup_command_then_unsolicited_hangup_line(harness):
    """HANGUP answers 200 result=1, then Asterisk's own HANGUP line (fastagi.txt); the channel goes on close."""
    await harness.listen()
    server = await harness.call()
    assert await harness.ask(server, "HANGUP") == "200 result=1"
    await harness.pump(_until(lambda: server.hangups == 1), limit=2)
    assert harness.events.of("SoftHangupRequest")[0].get("Cause") == "32"
    assert await harness.ask(server, "ANSWER") == "511 Command Not Permitted on a dead channel or intercept routine"
    server.transport.loseConnection()
    await harness.pump(_until(lambda: harness.chan.dead), limit=5)
    assert harness.chan.variables["AGISTATUS"] == "HANGUP"


@pytest_twisted.ensureDeferred
async def test_patience_running_out_during_the_ivr(harness):
    """The caller gives up mid-GET DATA: result -1, then HANGUP unsolicited, then 511 for media, GET VARIABLE works."""
    await harness.listen()
    settings = SimulatorSettings(talk_time=(30.0, 30.0))
    caller = Caller(harness.world, random.Random(7), settings, "02112345678", "95566", patience=4.0, script="")
    caller.call()
    harness.chan = caller.chan
    server = await harness.pump(harness.servers.get(), limit=2)
    assert await harness.ask(server, "GET DATA menu 10000 4") == "200 result=-1"
    await harness.pump(_until(lambda: server.hangups == 1), limit=2)
    assert harness.events.of("HangupRequest")[0].get("Cause") == "16"
    assert await harness.ask(server, 'STREAM FILE goodbye ""') == (
        "511 Command Not Permitted on a dead channel or intercept routine")
    assert await harness.ask(server, "GET VARIABLE CALLERID(num)") == "200 result=1 (02112345678)"
    assert not harness.chan.dead
    server.transport.loseConnection()
    await harness.pump(_until(lambda: harness.chan.dead), limit=5)
    hangup = harness.events.of("Hangup")[0]
    assert hangup.get("Cause") == "16" and harness.chan.variables["AGISTATUS"] == "HANGUP"


@pytest_twisted.ensureDeferred
async def test_a_second_command_abandons_a_playing_prompt_without_reply(harness):
    """res_agi.c: input during STREAM FILE abandons it with no result line; only the new command answers."""
    await harness.listen()
    server = await harness.call()
    server.command('STREAM FILE long-prompt ""')
    await deferLater(reactor, 0.05)
    assert await harness.ask(server, "NOOP") == "200 result=0"
    advance(harness.clock, 10)
    await deferLater(reactor, 0.05)
    assert server.lines.pending == []
    server.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_unreachable_fastagi_server_sends_the_caller_to_wait(harness):
    """Connection refused: a warning, AGISTATUS=FAILURE, and the caller parks in ctid-wait."""
    await harness.listen()
    number = harness.port.getHost().port
    await harness.port.stopListening()
    harness.port = None
    harness.world.agi = EndpointAgiRunner(reactor, f"tcp:127.0.0.1:{number}", timeout=1)
    chan = inbound_call(harness.world, "13800138000", "95566")
    await harness.pump(_until(lambda: harness.events.of("MusicOnHoldStart")), limit=10)
    assert chan.variables["AGISTATUS"] == "FAILURE"


def _until(predicate) -> Deferred:  # type: ignore[no-untyped-def, type-arg]
    """A Deferred that fires once ``predicate()`` is true (checked every millisecond of real time)."""
    d: Deferred[None] = Deferred()

    def check() -> None:
        if predicate():
            d.callback(None)
        else:
            reactor.callLater(0.001, check)

    check()
    return d


@pytest.mark.parametrize("line,argv", [
    ("ANSWER", ["ANSWER"]),
    ('STREAM FILE beep ""', ["STREAM", "FILE", "beep", ""]),
    ('SET VARIABLE X "a b"', ["SET", "VARIABLE", "X", "a b"]),
    ('SET VARIABLE X a\\ b\\"c\\\\', ["SET", "VARIABLE", "X", 'a b"c\\']),
    ('EXEC Dial "PJSIP/1001,20"', ["EXEC", "Dial", "PJSIP/1001,20"]),
    ("GET  DATA\tbeep", ["GET", "DATA", "beep"]),
    ('NOOP ab"c d"e', ["NOOP", "abc de"]),
    ("NOOP x\r", ["NOOP", "x\r"]),
])
def test_parse_args_like_res_agi(line, argv):
    """Quotes group and vanish, backslash escapes, "" is an empty argument, a trailing CR is kept."""
    assert parse_args(line) == argv


@pytest_twisted.ensureDeferred
async def test_redirect_during_the_ivr_ends_the_agi_session(harness):
    """A Redirect of a caller in the IVR: HANGUP is written, the socket closes, the caller moves on."""
    await harness.listen()
    server = await harness.call()
    assert await harness.ask(server, "ANSWER") == "200 result=0"
    harness.world.redirect(harness.chan, "ctid-wait", "s", 1)
    await harness.pump(server.closed, limit=2)
    assert server.hangups == 1
    await harness.pump(_until(lambda: harness.events.of("MusicOnHoldStart")), limit=2)
    assert not harness.chan.dead and harness.chan.context == "ctid-wait"
