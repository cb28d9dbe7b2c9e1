"""Agent call control end to end: the whole daemon, the simulated switch, desktops through the client library."""

import pytest
import pytest_twisted

from ctid.adapters.pbxsim.testing import EventRecorder
from ctid.callcontrolargs import data_arg, device_of, digits_arg, far_party, number_arg
from ctid.calls import CallEnded
from ctid.client import CTIClientError
from ctid.protocols.ctiapi import CTIError
from tests.test_center import board, signed_in

pytestmark = pytest.mark.sim(talk_time="60 60", patience="60 60")


def record_actions(daemon):
    """The AMI actions ctid sends from now on, as (action, headers dict), passed through unchanged.

    The link's keepalive ``Ping`` is left out: it goes whenever its timer says.
    """
    protocol = daemon.ami.protocol
    sent = []
    original = protocol.sendAction

    def spy(action, headers=(), timeout=None):
        if action != "Ping":
            sent.append((action, {key: value for key, value in headers}))
        return original(action, headers, timeout)

    protocol.sendAction = spy
    return sent


def names(events):
    return [event.name for event in events]


async def refused(client, command, **args):
    with pytest.raises(CTIClientError) as caught:
        await client.call(command, **args)
    return caught.value.code


async def delivered_call(daemon, agent="1001"):
    """A customer call delivered to ``agent`` and answered; returns (client, events, trunk channel, agent leg)."""
    client, events = await signed_in(daemon, agent)
    trunk = daemon.call_in("13800138000", "95566", script="1", patience=60)
    await daemon.until(lambda: board(daemon).get(agent).state.value == "talking", f"agent {agent} to talk")
    leg = next(c for c in daemon.world.live() if c.name.startswith(f"PJSIP/{agent}-"))
    return client, events, trunk, leg


@pytest_twisted.ensureDeferred
async def test_hold_and_retrieve_move_both_legs_and_end_the_hold_interval(daemon):
    """HoldCall: one dual Redirect (music / silence), agent on hold; RetrieveCall: Bridge, talking, interval closed."""
    client, events, trunk, leg = await delivered_call(daemon)
    call_id = trunk.linkedid
    sent, recorder = record_actions(daemon), EventRecorder(daemon.world)
    held = await client.call("HoldCall")
    assert held["call"] == call_id
    assert sent == [("Redirect", {"Channel": trunk.name, "Context": "ctid-hold", "Exten": "s", "Priority": 1,
                                  "ExtraChannel": leg.name, "ExtraContext": "ctid-hold", "ExtraExten": "agent",
                                  "ExtraPriority": 1})]
    await daemon.until(lambda: trunk.appl == "MusicOnHold" and leg.appl == "Wait", "both legs in ctid-hold")
    assert recorder.of("MusicOnHoldStart", Channel=trunk.name)
    assert board(daemon).get("1001").state.value == "hold"
    call = daemon.model.calls[call_id]
    assert call.on_hold and call.holds[-1].end is None
    sent.clear()
    retrieved = await client.call("RetrieveCall", call=call_id)
    assert sent == [("Bridge", {"Channel1": trunk.name, "Channel2": leg.name})]
    await daemon.until(lambda: trunk.bridge is not None and trunk.bridge is leg.bridge, "the legs bridged again")
    assert board(daemon).get("1001").state.value == "talking"
    assert not call.on_hold and call.holds[-1].end is not None and retrieved["held"] >= 0
    await daemon.until(lambda: "Retrieved" in names(events), "the Retrieved event")
    assert [e.data["call"] for e in events if e.name in ("Held", "Retrieved")] == [call_id, call_id]
    await client.call("ClearConnection")
    await daemon.until(lambda: daemon.of(CallEnded, call_id=call_id), "the call to end")
    await daemon.until(lambda: board(daemon).get("1001").state.value == "ready", "wrap-up to end")
    assert "ConnectionCleared" in names(events)
    await client.close()


@pytest_twisted.ensureDeferred
async def test_hang_up_while_held_clears_both_legs_and_the_hold(daemon):
    """ClearConnection on a held call hangs up the agent's leg and the held customer; the hold interval ends."""
    client, events, trunk, leg = await delivered_call(daemon)
    await client.call("HoldCall")
    await daemon.until(lambda: trunk.appl == "MusicOnHold", "the customer on hold")
    snapshot = []
    daemon.model.subscribe(lambda e: snapshot.append(daemon.model.snapshot(e.call_id))
                           if isinstance(e, CallEnded) else None)
    await client.call("ClearConnection")
    await daemon.until(lambda: snapshot, "the call to end")
    (ended,) = snapshot
    assert len(ended.holds) == 1 and ended.holds[0].end is not None
    await daemon.until(lambda: board(daemon).get("1001").state.value in ("wrap_up", "ready"), "wrap-up")
    await client.close()


@pytest_twisted.ensureDeferred
async def test_an_agent_acts_only_on_its_own_calls(daemon):
    """Another agent's call: not_your_call; unknown: no_such_call; the other agent gets none of the events."""
    client, events, trunk, _ = await delivered_call(daemon)
    other, other_events = await signed_in(daemon, "1003")
    for command in ("HoldCall", "ClearConnection", "SendDTMF", "SetCallData", "AnswerCall"):
        extra = {"digits": "1"} if command == "SendDTMF" else {"data": {"CTID_NOTE": "x"}} \
            if command == "SetCallData" else {}
        assert await refused(other, command, call=trunk.linkedid, **extra) == "not_your_call"
    assert await refused(other, "HoldCall") == "no_such_call"
    assert await refused(client, "HoldCall", call="1.nope") == "no_such_call"
    assert await refused(client, "RetrieveCall") == "not_held"
    assert await refused(client, "AnswerCall") == "answer_not_supported"
    await client.call("HoldCall")
    assert await refused(client, "HoldCall") == "already_held"
    await daemon.until(lambda: "Held" in names(events), "Held to reach the agent")
    assert not {"Held", "Retrieved", "ConnectionCleared", "CallDataChanged"} & set(names(other_events))
    await client.close()
    await other.close()


@pytest.mark.sim(talk_time="60 60", patience="60 60", answer_delay="60 60")
@pytest_twisted.ensureDeferred
async def test_answer_call_on_a_station_that_answers_remotely(daemon):
    """SetAutoAnswer, then AnswerCall sends PJSIPNotify Event=talk to the ringing leg; the agent talks."""
    client, events = await signed_in(daemon, "1002")
    trunk = daemon.call_in("13800138000", "95566", script="1", patience=60)
    await daemon.until(lambda: board(daemon).get("1002").state.value == "ringing", "the phone to ring")
    leg = next(c for c in daemon.world.live() if c.name.startswith("PJSIP/1002-"))
    assert await refused(client, "AnswerCall") == "answer_not_supported"
    assert (await client.call("SetAutoAnswer", enabled=True))["auto_answer"] is True
    sent = record_actions(daemon)
    assert (await client.call("AnswerCall"))["call"] == trunk.linkedid
    assert sent == [("PJSIPNotify", {"Channel": leg.name, "Variable": "Event=talk"})]
    await daemon.until(lambda: board(daemon).get("1002").state.value == "talking", "the agent to talk")
    assert await refused(client, "AnswerCall") == "not_ringing"
    await client.close()


@pytest_twisted.ensureDeferred
async def test_dtmf_and_call_data(daemon):
    """SendDTMF plays on the customer's leg; SetCallData sets CTID_* there and echoes masked data to the agent."""
    client, events, trunk, _ = await delivered_call(daemon)
    sent, recorder = record_actions(daemon), EventRecorder(daemon.world)
    assert (await client.call("SendDTMF", digits="12#"))["sent"] == 3
    assert [(a, h["Channel"], h["Digit"]) for a, h in sent] == [("PlayDTMF", trunk.name, d) for d in "12#"]
    await daemon.until(lambda: len(recorder.of("DTMFEnd", Channel=trunk.name)) == 3, "the digits played")
    sent.clear()
    result = await client.call("SetCallData", data={"CTID_NOTE": "card 6222021234567891234", "CTID_TOPIC": "loan"})
    assert [(a, h["Channel"], h["Variable"]) for a, h in sent] == [
        ("Setvar", trunk.name, "CTID_NOTE"), ("Setvar", trunk.name, "CTID_TOPIC")]
    assert result["data"]["CTID_NOTE"] == "card **** **** **** 1234" and result["data"]["CTID_TOPIC"] == "loan"
    await daemon.until(lambda: daemon.model.channels[trunk.uniqueid].variables.get("CTID_TOPIC") == "loan",
                       "the variable on the channel")
    await daemon.until(lambda: "CallDataChanged" in names(events), "CallDataChanged")
    (changed,) = [e.data for e in events if e.name == "CallDataChanged"]
    assert changed["changed"] == ["CTID_NOTE", "CTID_TOPIC"] and changed["agent"] == "1001"
    assert await refused(client, "SetCallData", data={"CTID_TARGET": "PJSIP/1"}) == "bad_request"
    assert await refused(client, "SetCallData", data={"CTID_X": "a\r\nAction: Hangup"}) == "bad_request"
    assert await refused(client, "SendDTMF", digits="12x") == "bad_request"
    await client.close()


@pytest_twisted.ensureDeferred
async def test_make_call_rings_the_agent_then_the_number_with_the_allowed_caller_id(daemon):
    """MakeCall: Originate of the station into ctid-out; the agent rings, talks, and is ready after the call."""
    client, events = await signed_in(daemon, "1001")
    sent = record_actions(daemon)
    result = await client.call("MakeCall", to="13900139000")
    call_id = result["call"]
    ((action, headers),) = sent
    assert action == "Originate"
    assert (headers["Channel"], headers["Context"], headers["Exten"], headers["ChannelId"]) == (
        "PJSIP/1001", "ctid-out", "13900139000", call_id)
    assert headers.get("CallerID") is None  # no [agents] outbound_caller_id in the test configuration
    assert "Originated" in names(events) or await daemon.until(lambda: "Originated" in names(events), "Originated")
    await daemon.until(lambda: board(daemon).get("1001").state.value == "talking", "the agent to talk")
    assert any(c.name.startswith("PJSIP/13900139000@trunk") or "trunk" in c.name for c in daemon.world.live())
    await client.call("ClearConnection")
    await daemon.until(lambda: daemon.of(CallEnded, call_id=call_id), "the call to end")
    await daemon.until(lambda: board(daemon).get("1001").state.value == "ready", "ready again")
    states = [e.data["state"] for e in events if e.name == "AgentStateChanged"]
    assert states[-5:] == ["reserved", "ringing", "talking", "wrap_up", "ready"]
    await client.close()


@pytest_twisted.ensureDeferred
async def test_internal_call_between_two_agents(daemon):
    """MakeCall {agent}: the caller's station into ctid-agents; both agents ring, talk, wrap up; B gets a pop."""
    first, first_events = await signed_in(daemon, "1001")
    second, second_events = await signed_in(daemon, "1003")
    sent = record_actions(daemon)
    call_id = (await first.call("MakeCall", agent="1003"))["call"]
    assert (sent[0][1]["Context"], sent[0][1]["Exten"], sent[0][1]["CallerID"]) == (
        "ctid-agents", "1003", '"Agent 1001" <1001>')
    await daemon.until(lambda: all(board(daemon).get(a).state.value == "talking" for a in ("1001", "1003")),
                       "both agents to talk")
    assert any(e.name == "Delivered" and e.data["from_agent"] == "1001" for e in second_events)
    await first.call("HoldCall")
    await daemon.until(lambda: "Held" in names(second_events), "the other agent to learn of the hold")
    await second.call("ClearConnection")
    await daemon.until(lambda: daemon.of(CallEnded, call_id=call_id), "the call to end")
    await daemon.until(lambda: all(board(daemon).get(a).state.value == "ready" for a in ("1001", "1003")), "ready")
    assert await refused(first, "MakeCall", agent="1005") == "no_such_agent"
    assert await refused(first, "MakeCall", to="12ab") == "bad_request"
    await first.call("SetAgentState", state="not_ready")
    assert await refused(first, "MakeCall", to="13900139000") == "not_available"
    await first.close()
    await second.close()


@pytest.mark.sim(talk_time="60 60", patience="60 60", answer_delay="60 60")
@pytest_twisted.ensureDeferred
async def test_pickup_of_a_call_ringing_at_a_seat_of_the_same_group(daemon):
    """PickupCall: Setvar CTID_TARGET/CTID_RING + Redirect to ctid-deliver; the ringing seat is released."""
    ringing, ringing_events = await signed_in(daemon, "1002")
    trunk = daemon.call_in("13800138000", "95566", script="1", patience=60)
    await daemon.until(lambda: board(daemon).get("1002").state.value == "ringing", "1002 to ring")
    picker, picker_events = await signed_in(daemon, "1001")
    sent = record_actions(daemon)
    result = await picker.call("PickupCall", agent="1002")
    assert result == {"call": trunk.linkedid, "from_agent": "1002", "to_agent": "1001"}
    assert [(a, h.get("Variable"), h.get("Value") or h.get("Context")) for a, h in sent] == [
        ("Setvar", "CTID_TARGET", "PJSIP/1001"), ("Setvar", "CTID_RING", "1"), ("Redirect", None, "ctid-deliver")]
    assert board(daemon).get("1002").state.value == "ready"
    await daemon.until(lambda: board(daemon).get("1001").state.value == "ringing", "1001 to ring")
    await picker.call("SetAutoAnswer", enabled=True)
    await picker.call("AnswerCall")
    await daemon.until(lambda: board(daemon).get("1001").state.value == "talking", "1001 to talk")
    assert "Diverted" in names(ringing_events) and "Delivered" in names(picker_events)
    assert await refused(ringing, "PickupCall", agent="1001") == "not_ringing"
    await ringing.close()
    await picker.close()


def test_argument_checks():
    """Digits, numbers and call data are checked before anything reaches the switch."""
    assert digits_arg({"digits": "0123456789*#ABCD"}) == "0123456789*#ABCD"
    assert number_arg({"to": "+8613800138000"}) == "+8613800138000"
    assert data_arg({"data": {"CTID_A": "x"}}) == {"CTID_A": "x"}
    for bad in ({"digits": ""}, {"digits": "1" * 33}, {"digits": 5}):
        with pytest.raises(CTIError):
            digits_arg(bad)
    for bad in ({"to": "1"}, {"to": "95566;x"}, {"to": None}):
        with pytest.raises(CTIError):
            number_arg(bad)
    for bad in ({"data": {}}, {"data": {"NOTE": "x"}}, {"data": {"CTID_A": 1}}, {"data": {"CTID_A": "x" * 257}},
                {"data": {f"CTID_{n}": "x" for n in range(17)}}):
        with pytest.raises(CTIError):
            data_arg(bad)
    with pytest.raises(CTIError):
        data_arg({"data": {"CTID_PARKED": "1"}}, hidden={"CTID_PARKED"})


def test_parties_of_a_call():
    """Channel names map to devices; the far party is the other member of the leg's bridge."""
    assert device_of("PJSIP/1001-0000000a") == "PJSIP/1001"
    assert device_of("Local/1002@ctid-agents-00000003;2") == "Local/1002@ctid-agents"

    class Leg:
        def __init__(self, uniqueid, bridge_id):
            self.uniqueid, self.bridge_id = uniqueid, bridge_id

    class Bridge:
        channels = {"1": None, "2": None}

    channels = {"1": Leg("1", "b"), "2": Leg("2", "b"), "3": Leg("3", None)}
    assert far_party(channels, {"b": Bridge()}, channels["1"]) is channels["2"]
    assert far_party(channels, {"b": Bridge()}, channels["3"]) is None
