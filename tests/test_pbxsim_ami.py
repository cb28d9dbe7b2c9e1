"""The simulator's AMI server over StringTransport: login, every action, list shapes, hostile input."""

from __future__ import annotations

import hashlib

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ctid.adapters.pbxsim.amiserver import AmiServerFactory
from ctid.adapters.pbxsim.service import build_world
from ctid.adapters.pbxsim.settings import SimulatorSettings
from ctid.adapters.pbxsim.testing import START, ScriptedPhone, advance, inbound_call
from ctid.protocols.amiwire import MessageParser, format_message

SETTINGS = SimulatorSettings(secret="s3cret", ami_write_buffer=64 * 1024)


class Client:
    """One AMI connection to the simulator through a StringTransport."""

    def __init__(self, factory: AmiServerFactory):
        self.proto = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.parser = MessageParser(banner=True)
        self.seen = []

    def send(self, *pairs, **headers):
        self.proto.dataReceived(format_message(list(pairs) or list(headers.items())))

    def read(self):
        """Messages written since the last read."""
        data = self.transport.value()
        self.transport.clear()
        messages = self.parser.feed(data)
        self.seen += messages
        return messages

    def login(self, **extra):
        self.send(Action="Login", Username="ctid", Secret="s3cret", **extra)
        return self.read()


@pytest.fixture
def sim():
    """A World on a Clock (with phones 1001 answering, 1002 never answering) and an AMI factory."""
    clock = Clock()
    clock.advance(START)
    world = build_world(SETTINGS, clock)
    world.devices["1001"] = ScriptedPhone(answer_after=1.0)
    world.devices["1002"] = ScriptedPhone(answer_after=None)
    world.devices["1900"] = ScriptedPhone(answer_after=0.5)
    return world, clock, AmiServerFactory(world, SETTINGS)


@pytest.fixture
def client(sim):
    """A logged-in client."""
    world, clock, factory = sim
    c = Client(factory)
    c.login()
    clock.advance(0)
    c.read()
    return c


def responses(messages):
    return [m for m in messages if m.event is None]


def events(messages, name=None):
    return [m for m in messages if m.event is not None and (name is None or m.event == name)]


def test_banner_has_no_blank_line(sim):
    """The first bytes are exactly the banner line; nothing else until the client speaks."""
    world, clock, factory = sim
    c = Client(factory)
    assert c.transport.value() == b"Asterisk Call Manager/11.0.0\r\n"


def test_plain_login_then_fully_booted_and_security_event(sim):
    """Login answers 'Authentication accepted', then FullyBooted; SuccessfulAuth follows (no secret in it)."""
    world, clock, factory = sim
    c = Client(factory)
    c.send(("Action", "Login"), ("ActionID", "l1"), ("Username", "ctid"), ("Secret", "s3cret"))
    clock.advance(0)
    first, booted, auth = c.read()
    assert first.pairs == [("Response", "Success"), ("ActionID", "l1"), ("Message", "Authentication accepted")]
    assert [k for k, _ in booted.pairs] == ["Event", "Privilege", "Uptime", "LastReload", "Status"]
    assert booted.get("Privilege") == "system,all"
    assert auth.event == "SuccessfulAuth" and auth.get("AccountID") == "ctid" and b"s3cret" not in auth.text.encode()


def test_md5_login(sim):
    """Challenge gives a decimal number; Key = md5(challenge + secret) logs in."""
    world, clock, factory = sim
    c = Client(factory)
    c.send(Action="Challenge", AuthType="MD5", ActionID="ch")
    (answer,) = c.read()
    assert answer.pairs[:2] == [("Response", "Success"), ("ActionID", "ch")] and answer["Challenge"].isdigit()
    key = hashlib.md5((answer["Challenge"] + "s3cret").encode()).hexdigest()
    c.send(Action="Login", AuthType="MD5", Username="ctid", Key=key)
    assert c.read()[0].get("Message") == "Authentication accepted"


@pytest.mark.parametrize("secret,user", [("wrong", "ctid"), ("s3cret", "nobody")])
def test_bad_credentials_fail_after_one_second_then_close(sim, secret, user):
    """Wrong secret or user: 'Authentication failed' only after ~1 s, then the socket closes."""
    world, clock, factory = sim
    c = Client(factory)
    c.send(Action="Login", Username=user, Secret=secret)
    c.send(Action="Ping")
    assert c.read() == []
    clock.advance(1.0)
    (failed,) = responses(c.read())
    assert failed.pairs == [("Response", "Error"), ("Message", "Authentication failed")]
    assert c.transport.disconnecting


def test_md5_login_with_wrong_key_fails(sim):
    """A wrong MD5 key is refused like a wrong secret."""
    world, clock, factory = sim
    c = Client(factory)
    c.send(Action="Challenge", AuthType="MD5")
    c.read()
    c.send(Action="Login", AuthType="MD5", Username="ctid", Key="0" * 32)
    clock.advance(1.0)
    assert c.read()[-1].get("Message") == "Authentication failed"


def test_permission_denied_before_login(sim):
    """Before login only Login/Challenge/Logoff are accepted."""
    world, clock, factory = sim
    c = Client(factory)
    c.send(Action="Ping", ActionID="p")
    assert c.read()[0].pairs == [("Response", "Error"), ("ActionID", "p"), ("Message", "Permission denied")]
    assert not c.transport.disconnecting


def test_already_authenticated_and_logoff(client):
    """A second Login is acknowledged; Logoff says goodbye and closes."""
    client.login()
    assert client.seen[-1].get("Message") == "Already authenticated"
    client.send(Action="Logoff", ActionID="bye")
    assert client.read()[0].pairs == [("Response", "Goodbye"), ("ActionID", "bye"),
                                      ("Message", "Thanks for all the fish.")]
    assert client.transport.disconnecting


def test_generic_errors(client):
    """No Action header and an unknown action get manager.c's messages, with the ActionID."""
    client.send(ActionID="x1", Foo="bar")
    client.send(Action="Frobnicate", ActionID="x2")
    missing, unknown = client.read()
    assert missing.pairs == [("Response", "Error"), ("ActionID", "x1"), ("Message", "Missing action in request")]
    assert unknown["Message"] == ("Invalid/unknown command: Frobnicate. Use Action: ListCommands to show "
                                  "available commands.")


def test_ping(client, sim):
    """Ping answers Ping: Pong and a microsecond timestamp, after the ActionID."""
    client.send(Action="Ping", ActionID="p1")
    (pong,) = client.read()
    assert [k for k, _ in pong.pairs] == ["Response", "ActionID", "Ping", "Timestamp"]
    assert pong["Ping"] == "Pong" and pong["Timestamp"] == f"{START:.6f}"


def test_events_mask_off_and_on(client, sim):
    """Events off silences the event stream for this session; on brings it back."""
    world, clock, factory = sim
    client.send(Action="Events", EventMask="off", ActionID="e")
    assert client.read()[0].pairs == [("Response", "Success"), ("ActionID", "e"), ("Events", "Off")]
    inbound_call(world, "13800138000", "95566")
    clock.advance(1)
    assert client.read() == []
    client.send(Action="Events")
    assert client.read()[0]["Message"] == "Invalid event mask"
    client.send(Action="Events", EventMask="call")
    assert client.read()[0]["Events"] == "On"
    inbound_call(world, "13900001111", "95566")
    clock.advance(1)
    got = client.read()
    assert events(got, "Newchannel") and not events(got, "Newexten")


def test_login_events_off_suppresses_fully_booted(sim):
    """Login with Events: off gets no FullyBooted and no call events."""
    world, clock, factory = sim
    c = Client(factory)
    c.login(Events="off")
    inbound_call(world, "13800138000", "95566")
    clock.advance(1)
    assert [m.event for m in c.seen + c.read()] == [None]


def test_originate_async_then_originate_response_with_action_id(client, sim):
    """Async Originate: 'successfully queued' first, OriginateResponse with the same ActionID on answer."""
    world, clock, factory = sim
    client.send(("Action", "Originate"), ("ActionID", "o1"), ("Channel", "PJSIP/1001"),
                ("Application", "Wait"), ("Data", "10"), ("CallerID", '"Desk" <1001>'), ("Async", "true"),
                ("ChannelId", "abc-123"))
    first = client.read()
    assert first[0].pairs == [("Response", "Success"), ("ActionID", "o1"),
                              ("Message", "Originate successfully queued")]
    advance(clock, 2)
    (resp,) = events(client.read(), "OriginateResponse")
    assert [k for k, _ in resp.pairs] == ["Event", "Privilege", "ActionID", "Response", "Channel", "Application",
                                          "Data", "Reason", "Uniqueid", "CallerIDNum", "CallerIDName"]
    assert (resp["ActionID"], resp["Response"], resp["Reason"], resp["Uniqueid"]) == ("o1", "Success", "4", "abc-123")
    assert (resp["CallerIDNum"], resp["CallerIDName"]) == ("1001", "Desk")


def test_originate_local_channel_into_context(client, sim):
    """Originate Local/s@ctid-wait with Exten/Context: the ;2 half parks (MusicOnHoldStart)."""
    world, clock, factory = sim
    client.send(Action="Originate", Channel="Local/s@ctid-wait", Context="ctid-wait", Exten="s", Priority="1",
                Async="yes", ActionID="o2")
    advance(clock, 1)
    got = client.read()
    assert events(got, "OriginateResponse")[0]["Channel"] == "Local/s@ctid-wait-00000000;1"
    assert events(got, "LocalBridge") and {m["Channel"] for m in events(got, "MusicOnHoldStart")} == {
        "Local/s@ctid-wait-00000000;1", "Local/s@ctid-wait-00000000;2"}


@pytest.mark.parametrize("headers,message", [
    ({}, "Channel not specified"),
    ({"Channel": "PJSIP/1001", "Priority": "x", "Context": "ctid-out", "Exten": "1"}, "Invalid priority"),
    ({"Channel": "PJSIP/1001", "Timeout": "soon", "Application": "Wait"}, "Invalid timeout"),
    ({"Channel": "nonsense", "Application": "Wait"}, "Invalid channel"),
    ({"Channel": "PJSIP/1001", "Exten": "s"}, "Originate with 'Exten' requires 'Context' and 'Priority'"),
    ({"Channel": "PJSIP/1001", "Context": "nowhere", "Exten": "s", "Priority": "1"}, "Extension does not exist."),
])
def test_originate_errors(client, headers, message):
    """Originate validation answers with manager.c's messages."""
    client.send(Action="Originate", ActionID="bad", Async="true", **headers)
    assert client.read()[0].pairs == [("Response", "Error"), ("ActionID", "bad"), ("Message", message)]


def test_sync_originate_blocks_the_session(client, sim):
    """Without Async the answer comes only when the call is answered; later actions wait behind it."""
    world, clock, factory = sim
    client.send(Action="Originate", Channel="PJSIP/1001", Application="Wait", Data="5", ActionID="sync")
    client.send(Action="Ping", ActionID="after")
    clock.advance(0)
    assert responses(client.read()) == []
    advance(clock, 2)
    got = responses(client.read())
    assert [m["ActionID"] for m in got] == ["sync", "after"]
    assert got[0]["Message"] == "Originate successfully queued"
    assert not events(client.seen, "OriginateResponse")


def test_setvar_redirect_deliver_via_ami(client, sim):
    """The park-and-redirect conversation over AMI: Variable Set, Redirect successful, DialEnd ANSWER."""
    world, clock, factory = sim
    caller = inbound_call(world, "13800138000", "95566")
    advance(clock, 1)
    client.read()
    client.send(Action="Setvar", Channel=caller.name, Variable="CTID_TARGET", Value="PJSIP/1001", ActionID="v1")
    client.send(Action="Setvar", Channel=caller.name, Variable="CTID_RING", Value="15", ActionID="v2")
    client.send(Action="Redirect", Channel=caller.name, Context="ctid-deliver", Exten="s", Priority="1",
                ActionID="r1")
    got = client.read()
    assert [(m["ActionID"], m["Message"]) for m in responses(got)] == [
        ("v1", "Variable Set"), ("v2", "Variable Set"), ("r1", "Redirect successful")]
    assert [m["Variable"] for m in events(got, "VarSet")] == ["CTID_TARGET", "CTID_RING"]
    advance(clock, 3)
    got = client.read()
    assert events(got, "DialEnd")[0]["DialStatus"] == "ANSWER"
    assert [m["Channel"] for m in events(got, "BridgeEnter")] == ["PJSIP/1001-00000001", caller.name]


def test_redirect_errors_and_dual_redirect(client, sim):
    """Missing fields, an unknown channel, and ExtraChannel moving two channels at once."""
    world, clock, factory = sim
    a = inbound_call(world, "13800138000", "95566")
    b = inbound_call(world, "13900001111", "95566")
    advance(clock, 1)
    client.read()
    client.send(Action="Redirect", Channel=a.name)
    client.send(Action="Redirect", Channel="PJSIP/nope-1", Context="ctid-wait", Exten="s", Priority="1")
    client.send(Action="Redirect", Channel=a.name, ExtraChannel=b.name, Context="ctid-wait", Exten="s",
                Priority="2")
    got = responses(client.read())
    assert [m["Message"] for m in got] == ["Context not specified", "Channel does not exist: PJSIP/nope-1",
                                           "Dual Redirect successful"]
    advance(clock, 1)
    assert {m["Channel"] for m in events(client.read(), "MusicOnHoldStart")} == {a.name, b.name}


def test_hangup_exact_name_regex_and_unknown(client, sim):
    """Hangup by exact name ('Channel Hungup'), by /regex/ (a list), and 'No such channel'."""
    world, clock, factory = sim
    a = inbound_call(world, "13800138000", "95566")
    b = inbound_call(world, "13900001111", "95566")
    advance(clock, 1)
    client.read()
    client.send(Action="Hangup", Channel="PJSIP/trunk", ActionID="h0")
    client.send(Action="Hangup", Channel=a.name, ActionID="h1")
    assert [m["Message"] for m in client.read()] == ["No such channel", "Channel Hungup"]
    advance(clock, 1)
    assert events(client.read(), "Hangup")[0]["Channel"] == a.name
    client.send(Action="Hangup", Channel="/^PJSIP/trunk-/", ActionID="h2")
    got = client.read()
    assert got[0]["EventList"] == "start" and events(got, "ChannelHungup")[0]["Channel"] == b.name
    done = events(got, "ChannelsHungupListComplete")[0]
    assert (done["ActionID"], done["EventList"], done["ListItems"]) == ("h2", "Complete", "1")
    advance(clock, 1)
    assert world.channels == {}


def test_core_show_channels_list_shape(client, sim):
    """CoreShowChannels: start, one item per channel (ActionID second, fields as in the capture), Complete."""
    world, clock, factory = sim
    inbound_call(world, "13800138000", "95566")
    advance(clock, 61)
    client.read()
    client.send(Action="CoreShowChannels", ActionID="csc")
    start, item, done = client.read()
    assert start.pairs == [("Response", "Success"), ("ActionID", "csc"), ("EventList", "start"),
                           ("Message", "Channels will follow")]
    assert [k for k, _ in item.pairs] == [
        "Event", "ActionID", "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
        "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context", "Exten", "Priority",
        "Uniqueid", "Linkedid", "Application", "ApplicationData", "Duration", "BridgeId"]
    assert (item["Application"], item["ApplicationData"], item["Duration"]) == ("MusicOnHold", "default", "00:01:01")
    assert done.pairs == [("Event", "CoreShowChannelsComplete"), ("ActionID", "csc"), ("EventList", "Complete"),
                          ("ListItems", "1")]


def test_bridge_list_and_info(client, sim):
    """BridgeList items carry the bridge block; BridgeInfo lists the members."""
    world, clock, factory = sim
    caller = inbound_call(world, "13800138000", "81001")
    advance(clock, 3)
    client.read()
    client.send(Action="BridgeList", ActionID="bl")
    start, item, done = client.read()
    assert start["Message"] == "Bridge listing will follow"
    assert [k for k, _ in item.pairs] == ["Event", "ActionID", "BridgeUniqueid", "BridgeType", "BridgeTechnology",
                                          "BridgeCreator", "BridgeName", "BridgeNumChannels", "BridgeVideoSourceMode"]
    assert (item["BridgeType"], item["BridgeNumChannels"], done["ListItems"]) == ("basic", "2", "1")
    client.send(Action="BridgeInfo", BridgeUniqueid=item["BridgeUniqueid"])
    got = client.read()
    assert {m["Channel"] for m in events(got, "BridgeInfoChannel")} == {caller.name, "PJSIP/1001-00000001"}
    assert events(got, "BridgeInfoComplete")[0]["BridgeUniqueid"] == item["BridgeUniqueid"]


def test_status_with_variables(client, sim):
    """Status: one item per channel, Variable lines when asked, ActionID last; StatusComplete with Items."""
    world, clock, factory = sim
    caller = inbound_call(world, "13800138000", "95566")
    advance(clock, 1)
    client.read()
    client.send(Action="Status", Channel=caller.name, Variables="CTID_PARKED,NOPE", ActionID="st")
    start, item, done = client.read()
    assert start["Message"] == "Channel status will follow"
    assert item.getall("Variable") == ["CTID_PARKED=1", "NOPE="]
    assert item.pairs[-1] == ("ActionID", "st") and item["Type"] == "PJSIP" and item["DNID"] == "95566"
    assert (done["ListItems"], done["Items"]) == ("1", "1")
    client.send(Action="Status", Channel="PJSIP/none-00000000")
    assert client.read()[0]["Message"] == "No such channel"


def test_getvar_setvar_channel_and_global(client, sim):
    """Setvar/Getvar on a channel and globally (VarSet with Channel: none), and CALLERID(num)."""
    world, clock, factory = sim
    caller = inbound_call(world, "13800138000", "95566")
    advance(clock, 1)
    client.read()
    client.send(Action="Setvar", Variable="SITE", Value="SH")
    client.send(Action="Getvar", Variable="SITE", ActionID="g1")
    client.send(Action="Getvar", Channel=caller.name, Variable="CALLERID(num)")
    client.send(Action="Getvar", Channel=caller.name, Variable="UNSET_ONE")
    client.send(Action="Getvar", Channel="PJSIP/x-1", Variable="A")
    client.send(Action="Setvar", Channel=caller.name)
    got = client.read()
    varset = events(got, "VarSet")[0]
    assert (varset["Channel"], varset["Uniqueid"], varset["Variable"]) == ("none", "none", "SITE")
    answers = responses(got)
    assert answers[1].pairs == [("Response", "Success"), ("ActionID", "g1"), ("Variable", "SITE"), ("Value", "SH")]
    assert answers[2]["Value"] == "13800138000" and answers[3]["Value"] == ""
    assert [answers[4]["Message"], answers[5]["Message"]] == ["No such channel", "No variable specified"]


def test_blind_transfer(client, sim):
    """BlindTransfer of an agent's call sends the caller to the target; BlindTransfer event names both."""
    world, clock, factory = sim
    caller = inbound_call(world, "13800138000", "81001")
    advance(clock, 3)
    client.read()
    client.send(Action="BlindTransfer", Channel="PJSIP/1001-00000001", Exten="s", Context="ctid-wait")
    got = client.read()
    assert responses(got)[0]["Message"] == "Transfer succeeded"
    event = events(got, "BlindTransfer")[0]
    assert (event["Result"], event["TransfererChannel"], event["TransfereeChannel"]) == (
        "Success", "PJSIP/1001-00000001", caller.name)
    assert (event["Context"], event["Extension"], event["IsExternal"]) == ("ctid-wait", "s", "No")
    advance(clock, 1)
    got = client.read()
    assert events(got, "Hangup")[0]["Channel"] == "PJSIP/1001-00000001"
    assert events(got, "MusicOnHoldStart")[0]["Channel"] == caller.name
    client.send(Action="BlindTransfer", Channel=caller.name, Exten="s", Context="ctid-wait")
    assert responses(client.read())[0]["Message"] == "Transfer invalid"


def test_attended_transfer_completes_when_transferer_hangs_up(client, sim):
    """Atxfer: caller on hold, consultation bridge, then the target takes the agent's seat (SwapUniqueid)."""
    world, clock, factory = sim
    world.devices["1003"] = ScriptedPhone(answer_after=1.0)
    caller = inbound_call(world, "13800138000", "81001")
    advance(clock, 3)
    agent = world.find("PJSIP/1001-00000001")
    client.read()
    client.send(Action="Atxfer", Channel=agent.name, Exten="1003", Context="ctid-agents", ActionID="ax")
    assert responses(client.read())[0]["Message"] == "Atxfer successfully queued"
    advance(clock, 3)
    got = client.read()
    assert events(got, "MusicOnHoldStart")[0]["Channel"] == caller.name
    target = "Local/1003@ctid-agents-00000000;1"
    consult = {m["Channel"]: m["BridgeUniqueid"] for m in events(got, "BridgeEnter")}
    assert consult[agent.name] == consult[target] != caller.bridge.uniqueid
    world.remote_hangup(agent, 16)
    advance(clock, 1)
    got = client.read()
    done = events(got, "AttendedTransfer")[0]
    assert (done["Result"], done["TransfereeChannel"], done["TransferTargetChannel"]) == (
        "Success", caller.name, target)
    swap = [m for m in events(got, "BridgeEnter") if m.get("SwapUniqueid")][0]
    assert swap["SwapUniqueid"] == agent.uniqueid and swap["BridgeUniqueid"] == done["OrigBridgeUniqueid"]
    assert caller.bridge is not None and not caller.dead and agent.dead


def test_bridge_action(client, sim):
    """Bridge takes two parked callers off music into one basic bridge."""
    world, clock, factory = sim
    a = inbound_call(world, "13800138000", "95566")
    b = inbound_call(world, "13900001111", "95566")
    advance(clock, 1)
    client.read()
    client.send(Action="Bridge", Channel1=a.name, Channel2=b.name, ActionID="br")
    client.send(Action="Bridge", Channel1=a.name, Channel2="PJSIP/x-1")
    got = client.read()
    assert [m["Message"] for m in responses(got)] == [
        "Channels have been bridged", "Channel2 does not exist: PJSIP/x-1"]
    advance(clock, 1)
    got = client.read()
    assert len(events(got, "MusicOnHoldStop")) == 2 and len(events(got, "BridgeEnter")) == 2


def test_mixmonitor_start_mute_stop(client, sim):
    """MixMonitor with i(VAR) returns MixMonitorID; MixMonitorStart/Mute/Stop events follow."""
    world, clock, factory = sim
    caller = inbound_call(world, "13800138000", "95566")
    advance(clock, 1)
    client.read()
    client.send(Action="MixMonitor", Channel=caller.name, File="/rec/a.wav", Options="b i(MID)", ActionID="m1")
    got = client.read()
    answer = responses(got)[0]
    assert [k for k, _ in answer.pairs] == ["Response", "ActionID", "MixMonitorID"]
    assert events(got, "MixMonitorStart") and events(got, "VarSet")[-1]["Value"] == answer["MixMonitorID"]
    client.send(Action="MixMonitorMute", Channel=caller.name, Direction="both", State="1")
    client.send(Action="MixMonitorMute", Channel=caller.name, Direction="sideways", State="1")
    client.send(Action="StopMixMonitor", Channel=caller.name, MixMonitorID=answer["MixMonitorID"])
    client.send(Action="StopMixMonitor", Channel=caller.name)
    got = client.read()
    assert [m.get("Message") for m in responses(got)] == [
        None, "Invalid direction specified. Must be read, write or both", None, "Could not stop monitoring channel"]
    mute = events(got, "MixMonitorMute")[0]
    assert (mute["Direction"], mute["State"]) == ("both", "1") and events(got, "MixMonitorStop")


def test_play_dtmf(client, sim):
    """PlayDTMF queues the digits; DTMFBegin/DTMFEnd appear on the channel with DurationMs."""
    world, clock, factory = sim
    caller = inbound_call(world, "13800138000", "95566")
    advance(clock, 1)
    client.read()
    client.send(Action="PlayDTMF", Channel=caller.name, Digit="5", Duration="120")
    client.send(Action="PlayDTMF", Channel="PJSIP/x-1", Digit="5")
    assert [m["Message"] for m in client.read()] == ["DTMF successfully queued", "Channel not found"]
    advance(clock, 1)
    got = client.read()
    begin, end = events(got, "DTMFBegin")[0], events(got, "DTMFEnd")[0]
    assert (begin["Digit"], begin["Direction"], begin["Privilege"]) == ("5", "Sent", "dtmf,all")
    assert end["DurationMs"] == "120"


def test_chanspy_originate(client, sim):
    """Originate a supervisor phone into ChanSpy on an agent's channel: ChanSpyStart with Spyer/Spyee."""
    world, clock, factory = sim
    inbound_call(world, "13800138000", "81001")
    advance(clock, 3)
    client.read()
    client.send(Action="Originate", Channel="PJSIP/1900", Application="ChanSpy", Data="PJSIP/1001,qE",
                Async="true", ActionID="spy")
    advance(clock, 2)
    start = events(client.read(), "ChanSpyStart")[0]
    assert start["SpyerChannel"].startswith("PJSIP/1900-") and start["SpyeeChannel"] == "PJSIP/1001-00000001"


def test_user_event_command_and_listcommands(client):
    """UserEvent is acknowledged then broadcast with its headers; Command answers 14+-style Output lines."""
    client.send(("Action", "UserEvent"), ("UserEvent", "CtidPing"), ("ActionID", "u1"), ("Seq", "7"))
    client.send(Action="Command", Command="core show version", ActionID="cmd")
    client.send(Action="Command", Command="frob nicate", ActionID="cmd2")
    client.send(Action="ListCommands")
    ack, user, version, bad, listing = client.read()
    assert ack.pairs == [("Response", "Success"), ("ActionID", "u1"), ("Message", "Event Sent")]
    assert user.pairs == [("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", "CtidPing"),
                          ("ActionID", "u1"), ("Seq", "7")]
    assert [k for k, _ in version.pairs] == ["Response", "ActionID", "Message", "Output"]
    assert version["Output"].startswith("Asterisk 22.10.1 built by")
    assert bad["Response"] == "Error" and bad["Output"].startswith("No such command 'frob nicate'")
    assert listing["Originate"] == "Originate a call. (Priv: originate,all)"


def test_line_too_long_is_an_error_not_a_disconnect(client):
    """A header line over 1024 bytes: 'Failed to parse message: line too long', the session goes on."""
    client.send(("Action", "Ping"), ("ActionID", "long"), ("X", "a" * 2000))
    assert client.read()[0].pairs == [("Response", "Error"), ("ActionID", "long"),
                                      ("Message", "Failed to parse message: line too long")]
    client.send(Action="Ping")
    assert client.read()[0]["Ping"] == "Pong"
    assert not client.transport.disconnecting


def test_too_many_header_lines(client):
    """More than 128 header lines get manager.c's error."""
    client.send(*([("Action", "Ping")] + [(f"H{i}", "x") for i in range(200)]))
    assert client.read()[0]["Message"] == "Too many lines in message or allocation failure"


@pytest.mark.parametrize("garbage", [b"\x00\x01\x02binary\r\n\r\n", b"A" * 20000, b"K: v\r\n" * 50000])
def test_hostile_input_closes_only_that_connection(sim, garbage):
    """Binary data, a huge line or a huge message drop that client; another client is not affected."""
    world, clock, factory = sim
    bad, good = Client(factory), Client(factory)
    good.login()
    bad.proto.dataReceived(garbage)
    assert bad.transport.disconnected or bad.transport.disconnecting
    good.send(Action="Ping", ActionID="still")
    assert good.read()[-1]["ActionID"] == "still"


def test_repeated_garbage_messages_drop_the_client(client):
    """Ten unparseable messages in a row close the connection."""
    for _ in range(10):
        client.proto.dataReceived(b"this is not ami\r\n\r\n")
    assert client.transport.disconnected


def test_client_that_stops_reading_is_dropped(client, sim):
    """Output piling up beyond ami_write_buffer while the transport is paused drops the client."""
    world, clock, factory = sim
    client.proto.pauseProducing()
    for n in range(400):
        world.emit("UserEvent", "user", [("UserEvent", "Flood"), ("N", n), ("Pad", "x" * 200)])
    assert client.transport.disconnected


def test_unauthenticated_socket_dropped_after_auth_timeout(sim):
    """A client that never logs in is closed after ami_auth_timeout seconds."""
    world, clock, factory = sim
    c = Client(factory)
    clock.advance(29)
    assert not c.transport.disconnecting
    clock.advance(1.5)
    assert c.transport.disconnecting
