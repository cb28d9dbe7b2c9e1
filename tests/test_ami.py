"""AMIProtocol: framing, ActionID correlation, list actions, events, timeouts, keepalive, helpers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from ctid.protocols.ami import (
    ActionResult,
    ActionTimeout,
    AMIConnectionLost,
    AMIError,
    AMIFactory,
    AMIProtocol,
    EventDispatcher,
)
from ctid.protocols.amiwire import Message, MessageParser, ProtocolViolation, format_message

CAPTURES = Path(__file__).parent / "data" / "captures"
SESSION = (CAPTURES / "ami-session.txt").read_bytes()
BANNER = b"Asterisk Call Manager/11.0.0\r\n"


class Link:
    """An AMIProtocol on a StringTransport with a Clock: feed bytes in, read actions out."""

    def __init__(self, banner: bytes = BANNER, **settings):
        self.clock = Clock()
        self.dispatcher = EventDispatcher()
        self.seen: list[Message] = []
        self.dispatcher.register(None, self.seen.append)
        self.protocol: AMIProtocol = AMIFactory(self.dispatcher, self.clock, **settings).buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        if banner:
            self.protocol.dataReceived(banner)

    def sent(self) -> list[Message]:
        """The actions written since the last call."""
        messages = MessageParser().feed(self.transport.value())
        self.transport.clear()
        return messages

    def last_id(self) -> str:
        return self.sent()[-1].action_id

    def feed(self, *pairs, **headers) -> None:
        self.protocol.dataReceived(format_message(list(pairs) + list(headers.items())))

    def reply(self, action_id: str, response: str = "Success", *pairs) -> None:
        self.feed(("Response", response), ("ActionID", action_id), *pairs)


def capture_block(start: bytes, end: bytes) -> bytes:
    """The bytes of the capture from ``start`` to the blank line after ``end``."""
    first = SESSION.index(start)
    last = SESSION.index(b"\r\n\r\n", SESSION.index(end, first)) + 4
    return SESSION[first:last]


def test_banner_and_version():
    """The banner sets banner/ami_version and whenBanner fires with the protocol."""
    link = Link(banner=b"")
    waiting = link.protocol.whenBanner()
    link.protocol.dataReceived(b"Asterisk Call Manager/10.0.0\r")
    assert not waiting.called
    link.protocol.dataReceived(b"\n")
    assert link.protocol.banner == "Asterisk Call Manager/10.0.0" and link.protocol.ami_version == "10.0.0"
    assert waiting.result is link.protocol
    assert link.protocol.whenBanner().result is link.protocol


@pytest.mark.allow_logged_errors
def test_foreign_banner_dropped():
    """A peer that is not an Asterisk manager is dropped with a logged error; nothing after it is read."""
    link = Link(banner=b"")
    waiting = link.protocol.whenBanner()
    link.protocol.dataReceived(b"SSH-2.0-OpenSSH_9.6\r\nEvent: Newchannel\r\n\r\n")
    assert link.transport.disconnecting and link.seen == []
    assert isinstance(waiting.result.value, ProtocolViolation)
    waiting.addErrback(lambda f: None)


@pytest.mark.allow_logged_errors
def test_huge_line_drops_connection(fail_on_logged_errors):
    """A line over 64 KiB drops the connection with a logged error naming the problem."""
    link = Link()
    pending = link.protocol.ping()
    link.protocol.dataReceived(b"Event: Flood\r\nData: " + b"x" * (70 * 1024))
    assert link.transport.disconnecting
    assert any("line longer" in str(event.get("error")) for event in fail_on_logged_errors)
    link.protocol.connectionLost(Failure(ConnectionDone()))
    assert isinstance(pending.result.value, AMIConnectionLost)
    pending.addErrback(lambda f: None)


def test_whole_capture_byte_by_byte():
    """The real capture fed one byte at a time dispatches every event, in order, exactly once."""
    link = Link(banner=b"")
    for index in range(len(SESSION)):
        link.protocol.dataReceived(SESSION[index : index + 1])
    expected = [m.event for m in MessageParser(banner=True).feed(SESSION) if m.event]
    assert [m.event for m in link.seen] == expected
    assert len(expected) > 150 and link.protocol.ami_version == "11.0.0"


def test_bare_lf_from_server():
    """Responses and events with bare LF endings are understood."""
    link = Link()
    pending = link.protocol.ping()
    link.protocol.dataReceived(f"Response: Success\nActionID: {link.last_id()}\nPing: Pong\n\n".encode())
    assert pending.result.get("Ping") == "Pong"


def test_send_action_frames_and_numbers():
    """sendAction writes a CRLF message with Action first and a fresh ActionID each time; pairs keep order."""
    link = Link()
    link.protocol.sendAction("Setvar", [("Variable", "A"), ("Value", "1")])
    link.protocol.sendAction("Setvar", {"Variable": "B", "Value": "2"})
    raw = link.transport.value()
    assert raw.startswith(b"Action: Setvar\r\nActionID: ") and raw.endswith(b"\r\n\r\n") and b"\n\n" not in raw
    first, second = link.sent()
    assert first.pairs[2:] == [("Variable", "A"), ("Value", "1")]
    assert first.action_id != second.action_id
    link.reply(first.action_id)
    link.reply(second.action_id)


def test_success_and_error_responses():
    """Success fires an ActionResult; Error fails with AMIError whose str is the Message header."""
    link = Link()
    good = link.protocol.sendAction("Ping")
    link.reply(link.last_id(), "Success", ("Ping", "Pong"))
    assert isinstance(good.result, ActionResult) and good.result.response.get("Ping") == "Pong"
    assert good.result.events == [] and good.result.complete is None
    bad = link.protocol.sendAction("Originate", {"Channel": "PJSIP/x"})
    link.reply(link.last_id(), "Error", ("Message", "Originate Access Forbidden"))
    error = bad.result.value
    assert isinstance(error, AMIError) and str(error) == "Originate Access Forbidden"
    assert error.response.get("Message") == "Originate Access Forbidden" and error.action == "Originate"
    bad.addErrback(lambda f: None)


def test_interleaved_responses_and_events():
    """Events between responses are dispatched; each response goes to its own action even out of order."""
    link = Link()
    first, second = link.protocol.ping(), link.protocol.getVar("X")
    one, two = (m.action_id for m in link.sent())
    link.feed(Event="Newchannel", Channel="PJSIP/1-1")
    link.reply(two, "Success", ("Variable", "X"), ("Value", "42"))
    link.feed(Event="SomethingNobodyKnows", Foo="bar")
    link.reply(one, "Success", ("Ping", "Pong"))
    assert second.result == "42" and first.result.get("Ping") == "Pong"
    assert [m.event for m in link.seen] == ["Newchannel", "SomethingNobodyKnows"]


def test_core_show_channels_from_capture():
    """CoreShowChannels collects the item events up to the Complete event; items are dispatched too."""
    link = Link()
    listing = link.protocol.coreShowChannels()
    action_id = link.last_id()
    block = capture_block(b"Response: Success\r\nActionID: csc", b"ListItems: 4")
    link.protocol.dataReceived(block.replace(b"ActionID: csc", b"ActionID: " + action_id.encode()))
    assert [m["Channel"] for m in listing.result] == [
        "Local/5555@dtmfsrc-00000001;1",
        "Local/5555@dtmfsrc-00000001;2",
        "Local/queue@callers-00000000;2",
        "Local/queue@callers-00000000;1",
    ]
    assert [m.event for m in link.seen] == ["CoreShowChannel"] * 4 + ["CoreShowChannelsComplete"]
    assert link.protocol._pending == {}


def test_list_result_and_completion_fallback():
    """A list completes on a …Complete event without EventList too; ActionResult carries it."""
    link = Link()
    pending = link.protocol.sendAction("QueueStatus")
    action_id = link.last_id()
    link.reply(action_id, "Success", ("EventList", "start"), ("Message", "Queue status will follow"))
    link.feed(Event="QueueParams", ActionID=action_id, Queue="support")
    assert not pending.called
    link.feed(Event="QueueStatusComplete", ActionID=action_id)
    result = pending.result
    assert [m.event for m in result.events] == ["QueueParams"] and result.complete.event == "QueueStatusComplete"


def test_cancelled_list_fails():
    """A list ending with EventList: cancelled fails with AMIError instead of passing as complete."""
    link = Link()
    pending = link.protocol.status()
    action_id = link.last_id()
    link.reply(action_id, "Success", ("EventList", "start"))
    link.feed(Event="StatusComplete", ActionID=action_id, EventList="cancelled")
    assert isinstance(pending.result.value, AMIError)
    pending.addErrback(lambda f: None)


def test_list_error_response_ends_at_once():
    """A list action answered with Error fails immediately."""
    link = Link()
    pending = link.protocol.bridgeList()
    link.reply(link.last_id(), "Error", ("Message", "Permission denied"))
    assert str(pending.result.value) == "Permission denied"
    pending.addErrback(lambda f: None)


def test_command_output_headers_from_capture():
    """command() returns the Output: lines of an Asterisk 14+ answer (capture)."""
    link = Link()
    output = link.protocol.command("core show version")
    block = capture_block(b"Response: Success\r\nActionID: cmd", b"Output: ")
    link.protocol.dataReceived(block.replace(b"ActionID: cmd", b"ActionID: " + link.last_id().encode()))
    assert output.result == ["Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-11-22 10:16:47 UTC"]


def test_command_legacy_follows():
    """command() returns the raw body of a legacy Response: Follows answer, fed in pieces."""
    link = Link()
    output = link.protocol.command("core show uptime")
    raw = (
        f"Response: Follows\r\nPrivilege: Command\r\nActionID: {link.last_id()}\r\n"
        "System uptime: 46 minutes\nLast reload: 46 minutes\n--END COMMAND--\r\n\r\n"
    ).encode()
    for index in range(0, len(raw), 5):
        link.protocol.dataReceived(raw[index : index + 5])
    assert output.result == ["System uptime: 46 minutes", "Last reload: 46 minutes"]


def test_md5_login():
    """MD5 login sends Challenge, then Login with Key = md5(challenge + secret); the secret never goes out."""
    link = Link()
    done = link.protocol.login("ctid", "s3cret", events="call,agent")
    challenge = link.sent()[0]
    assert (challenge.get("Action"), challenge.get("AuthType")) == ("Challenge", "MD5")
    link.reply(challenge.action_id, "Success", ("Challenge", "840319377"))
    login = link.sent()[0]
    assert login.get("Action") == "Login" and login.get("Username") == "ctid"
    assert login.get("AuthType") == "MD5" and login.get("Events") == "call,agent"
    assert login.get("Key") == hashlib.md5(b"840319377s3cret").hexdigest()
    assert "Secret" not in login
    link.reply(login.action_id, "Success", ("Message", "Authentication accepted"))
    assert done.result.get("Message") == "Authentication accepted" and link.protocol.logged_in


def test_plain_login():
    """Plain login sends Username and Secret in one Login action."""
    link = Link()
    done = link.protocol.login("ctid", "s3cret", md5=False, events=None)
    login = link.sent()[0]
    assert [k for k, _ in login.pairs] == ["Action", "ActionID", "Username", "Secret"]
    link.reply(login.action_id)
    assert done.called


def test_login_failure():
    """A refused login fails with AMIError 'Authentication failed' and starts no keepalive."""
    link = Link()
    done = link.protocol.login("ctid", "wrong", md5=False)
    link.reply(link.last_id(), "Error", ("Message", "Authentication failed"))
    assert str(done.result.value) == "Authentication failed"
    assert not link.protocol.logged_in and link.clock.getDelayedCalls() == []
    done.addErrback(lambda f: None)


def test_timeout():
    """An unanswered action fails with ActionTimeout after its timeout; a late answer is ignored."""
    link = Link(action_timeout=10.0)
    default, short = link.protocol.ping(), link.protocol.sendAction("Ping", timeout=2)
    first, second = (m.action_id for m in link.sent())
    link.clock.advance(2)
    assert isinstance(short.result.value, ActionTimeout) and not default.called
    link.clock.advance(8)
    error = default.result.value
    assert isinstance(error, ActionTimeout) and (error.action, error.action_id) == ("Ping", first)
    assert link.protocol._pending == {}
    link.reply(second)
    short.addErrback(lambda f: None)
    default.addErrback(lambda f: None)


def test_cancel():
    """Cancelling an action's Deferred forgets it and its timer; a later answer changes nothing."""
    link = Link()
    pending = link.protocol.ping()
    action_id = link.last_id()
    pending.cancel()
    assert pending.result.check(CancelledError)
    assert link.protocol._pending == {} and link.clock.getDelayedCalls() == []
    link.reply(action_id)
    pending.addErrback(lambda f: None)


def test_connection_lost_fails_pending_and_later_actions():
    """On connectionLost every pending action fails with AMIConnectionLost, and so does any later one."""
    link = Link()
    actions = [link.protocol.ping(), link.protocol.coreShowChannels(), link.protocol.originate("L/1", wait=True)]
    link.protocol.connectionLost(Failure(ConnectionDone()))
    for pending in actions:
        assert isinstance(pending.result.value, AMIConnectionLost)
        pending.addErrback(lambda f: None)
    later = link.protocol.ping()
    assert isinstance(later.result.value, AMIConnectionLost)
    later.addErrback(lambda f: None)
    assert link.clock.getDelayedCalls() == []


def test_crlf_in_value_is_a_failed_deferred():
    """A value containing CR/LF fails the Deferred with ValueError and writes nothing."""
    link = Link()
    pending = link.protocol.setVar("X", "1\r\nAction: Logoff")
    assert isinstance(pending.result.value, ValueError) and link.transport.value() == b""
    pending.addErrback(lambda f: None)


def test_dispatcher_by_name_and_catch_all():
    """Handlers get events by name (any case) and catch-alls get everything; deregister stops delivery."""
    dispatcher, calls = EventDispatcher(), []
    named = lambda m: calls.append(("named", m.event))  # noqa: E731
    dispatcher.register("Hangup", named)
    dispatcher.register(None, lambda m: calls.append(("all", m.event)))
    for name in ("Hangup", "HANGUP", "Newstate"):
        dispatcher.dispatch(Message.build({"Event": name}))
    dispatcher.deregister("hangup", named)
    dispatcher.dispatch(Message.build({"Event": "Hangup"}))
    assert calls == [
        ("named", "Hangup"),
        ("all", "Hangup"),
        ("named", "HANGUP"),
        ("all", "HANGUP"),
        ("all", "Newstate"),
        ("all", "Hangup"),
    ]


@pytest.mark.allow_logged_errors
def test_handler_exception_logged_not_raised(fail_on_logged_errors):
    """A failing handler (sync or async) is logged; other handlers and the connection carry on."""
    link, after = Link(), []

    def broken(message):
        raise RuntimeError("boom")

    async def broken_async(message):
        raise RuntimeError("async boom")

    link.dispatcher.register("Newstate", broken)
    link.dispatcher.register("Newstate", broken_async)
    link.dispatcher.register("Newstate", after.append)
    link.feed(Event="Newstate", Channel="PJSIP/1-1")
    assert len(after) == 1 and not link.transport.disconnecting
    failures = [e["log_failure"].value for e in fail_on_logged_errors if "log_failure" in e]
    assert sorted(str(f) for f in failures) == ["async boom", "boom"]


def test_originate_wait_resolved_by_originate_response():
    """originate(wait=True) stays pending after 'queued' and fires with the OriginateResponse event."""
    link = Link(action_timeout=10.0)
    pending = link.protocol.originate(
        "Local/queue@callers",
        application="Wait",
        data="8",
        callerid='"Zhang San" <13800138000>',
        variables={"A": "1", "B": "x,y"},
        channel_id="chan-1",
        wait=True,
    )
    sent = link.sent()[0]
    assert sent.getall("Variable") == ["A=1", "B=x,y"] and sent.get("Async") == "true"
    assert (sent.get("Timeout"), sent.get("ChannelId"), sent.get("Exten")) == ("30000", "chan-1", None)
    link.reply(sent.action_id, "Success", ("Message", "Originate successfully queued"))
    link.clock.advance(35)
    assert not pending.called
    link.feed(
        Event="OriginateResponse",
        Privilege="call,all",
        ActionID=sent.action_id,
        Response="Success",
        Channel="Local/queue@callers-00000000;1",
        Reason="4",
        Uniqueid="1795342906.0",
    )
    assert pending.result.event == "OriginateResponse" and pending.result["Uniqueid"] == "1795342906.0"
    assert [m.event for m in link.seen] == ["OriginateResponse"] and link.clock.getDelayedCalls() == []


def test_originate_wait_failure_and_no_wait():
    """A Failure OriginateResponse fails with AMIError; wait=False fires with the queued ActionResult."""
    link = Link()
    waiting = link.protocol.originate("PJSIP/nobody", "default", "100", 1, wait=True)
    action_id = link.last_id()
    link.reply(action_id, "Success")
    link.feed(Event="OriginateResponse", ActionID=action_id, Response="Failure", Reason="0")
    assert isinstance(waiting.result.value, AMIError) and "Reason 0" in str(waiting.result.value)
    waiting.addErrback(lambda f: None)
    queued = link.protocol.originate("PJSIP/1001", "default", "100", 1)
    link.reply(link.last_id(), "Success", ("Message", "Originate successfully queued"))
    assert queued.result.response.get("Message") == "Originate successfully queued"


def test_keepalive_ping_timeout_aborts():
    """After login a Ping goes out every ping_interval; an unanswered one aborts the transport."""
    link = Link(ping_interval=20.0, ping_timeout=5.0)
    link.protocol.login("ctid", "s", md5=False)
    link.reply(link.last_id())
    link.clock.advance(20)
    ping = link.sent()[0]
    assert ping.get("Action") == "Ping"
    link.reply(ping.action_id, "Success", ("Ping", "Pong"))
    link.clock.advance(20)
    assert link.sent()[0].get("Action") == "Ping" and not link.transport.disconnecting
    link.clock.advance(5)
    assert link.transport.disconnecting
    link.protocol.connectionLost(Failure(ConnectionDone()))
    assert link.clock.getDelayedCalls() == []


@pytest.mark.parametrize(
    "call, action, headers",
    [
        (
            lambda p: p.redirect("A", "ctx", "100", 2, extra_channel="B"),
            "Redirect",
            [("Channel", "A"), ("Context", "ctx"), ("Exten", "100"), ("Priority", "2"), ("ExtraChannel", "B")],
        ),
        (lambda p: p.hangup("A", 16), "Hangup", [("Channel", "A"), ("Cause", "16")]),
        (lambda p: p.atxfer("A", "200", "ctx"), "Atxfer", [("Channel", "A"), ("Exten", "200"), ("Context", "ctx")]),
        (lambda p: p.blindTransfer("A", "200"), "BlindTransfer", [("Channel", "A"), ("Exten", "200")]),
        (lambda p: p.bridge("A", "B", "Both"), "Bridge", [("Channel1", "A"), ("Channel2", "B"), ("Tone", "Both")]),
        (lambda p: p.stopMixMonitor("A", "0x1"), "StopMixMonitor", [("Channel", "A"), ("MixMonitorID", "0x1")]),
        (
            lambda p: p.mixMonitorMute("A", "read", False),
            "MixMonitorMute",
            [("Channel", "A"), ("Direction", "read"), ("State", "0")],
        ),
        (
            lambda p: p.playDTMF("A", "5", 250, receive=True),
            "PlayDTMF",
            [("Channel", "A"), ("Digit", "5"), ("Duration", "250"), ("Receive", "true")],
        ),
        (lambda p: p.setVar("V", "1"), "Setvar", [("Variable", "V"), ("Value", "1")]),
        (
            lambda p: p.userEvent("CtidHello", Agent="1001"),
            "UserEvent",
            [("UserEvent", "CtidHello"), ("Agent", "1001")],
        ),
        (lambda p: p.events("off"), "Events", [("EventMask", "off")]),
        (lambda p: p.logoff(), "Logoff", []),
        (
            lambda p: p.action("QueuePause", Interface="PJSIP/1001", Paused="true", Queue=None),
            "QueuePause",
            [("Interface", "PJSIP/1001"), ("Paused", "true")],
        ),
    ],
)
def test_helpers_send_the_right_action(call, action, headers):
    """Each helper sends its AMI action with exactly the given headers (None ones left out)."""
    link = Link()
    pending = call(link.protocol)
    sent = link.sent()[0]
    assert sent.get("Action") == action and sent.pairs[2:] == headers
    link.reply(sent.action_id, "Success", ("Message", "ok"))
    assert pending.called


def test_mixmonitor_returns_id_and_getvar_value():
    """mixMonitor fires with the MixMonitorID; getVar with Value ('' when unset, as Asterisk says)."""
    link = Link()
    started = link.protocol.mixMonitor("A", "/tmp/a.wav", "bi(MID)")
    link.reply(link.last_id(), "Success", ("MixMonitorID", "0x7f00"))
    value = link.protocol.getVar("UNSET", channel="A")
    link.reply(link.last_id(), "Success", ("Variable", "UNSET"), ("Value", ""))
    assert started.result == "0x7f00" and value.result == ""


def test_neither_event_nor_response_is_skipped():
    """A message with neither Event nor Response is skipped with a warning, and reading goes on."""
    link = Link()
    link.feed(Foo="bar")
    link.feed(Event="Newstate")
    assert [m.event for m in link.seen] == ["Newstate"]


def test_big_read_is_handled_over_several_reactor_turns():
    """One huge read is parsed in 256 KiB turns with the transport paused; order is kept throughout."""
    link = Link()
    pending = link.protocol.ping()
    action_id = link.last_id()
    event = b"Event: VarSet\r\nPrivilege: dialplan,all\r\nChannel: PJSIP/1-1\r\nVariable: X\r\nValue: " + b"v" * 400
    burst = b"".join(event + b"%d\r\n\r\n" % n for n in range(2000))
    link.protocol.dataReceived(burst)
    assert 0 < len(link.seen) < 2000 and link.transport.producerState == "paused"
    link.reply(action_id, "Success", ("Ping", "Pong"))
    link.feed(Event="Last")
    assert not pending.called
    while link.transport.producerState == "paused":
        link.clock.advance(0)
    assert [m.get("Value")[400:] for m in link.seen[:2000]] == [str(n) for n in range(2000)]
    assert link.seen[-1].event == "Last" and pending.result.get("Ping") == "Pong"


def test_handler_registered_during_dispatch_sees_next_event():
    """A handler registered by another handler starts with the next event (the routing cache is refreshed)."""
    link, late = Link(), []

    def first(message):
        link.dispatcher.register("Newstate", late.append)
        link.dispatcher.deregister("Newstate", first)

    link.dispatcher.register("Newstate", first)
    link.feed(Event="Newstate", N="1")
    link.feed(Event="Newstate", N="2")
    assert [m["N"] for m in late] == ["2"]


@pytest.mark.allow_logged_errors
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=300), max_size=15))
def test_garbage_never_escapes_data_received(chunks):
    """Whatever the peer sends after the banner, dataReceived never raises: bad input is logged or dropped."""
    link = Link()
    pending = link.protocol.ping()
    pending.addErrback(lambda f: None)
    for chunk in chunks:
        link.protocol.dataReceived(chunk)
    link.protocol.connectionLost(Failure(ConnectionDone()))
    assert pending.called
