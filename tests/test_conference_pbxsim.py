"""The simulated ConfBridge: event order and fields, Linkedids kept, ConfbridgeKick over AMI (on a Clock)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from ctid.adapters.pbxsim.amiserver import AmiServerFactory
from ctid.adapters.pbxsim.confbridge import conferences
from ctid.adapters.pbxsim.service import build_world
from ctid.adapters.pbxsim.testing import START, EventRecorder, advance, inbound_call
from tests.test_pbxsim_ami import SETTINGS, Client, responses


@pytest.fixture
def sim():
    """Two callers parked in ctid-wait, an EventRecorder and a logged-in AMI client."""
    clock = Clock()
    clock.advance(START)
    world = build_world(SETTINGS, clock)
    callers = [inbound_call(world, number, "95566") for number in ("13800138000", "13900139000")]
    advance(clock, 30)
    client = Client(AmiServerFactory(world, SETTINGS))
    client.login()
    clock.advance(0)
    client.read()
    return world, clock, callers, client


def to_conference(world, clock, callers, name="room-1"):
    for chan in callers:
        world.set_var(chan, "CTID_CONFERENCE", name)
        world.redirect(chan, "ctid-conference", "s", 1)
    advance(clock, 1)


def test_joins_and_leaves_in_asterisk_order_with_linkedids_kept(sim):
    """BridgeCreate, ConfbridgeStart, then per user ConfbridgeJoin before BridgeEnter; the last leaver ends it."""
    world, clock, callers, _ = sim
    recorder = EventRecorder(world)
    to_conference(world, clock, callers)
    wanted = ("BridgeCreate", "ConfbridgeStart", "ConfbridgeJoin", "BridgeEnter", "ConfbridgeLeave", "BridgeLeave",
              "ConfbridgeEnd", "BridgeDestroy")
    assert [n for n in recorder.names() if n in wanted] == [
        "BridgeCreate", "ConfbridgeStart", "ConfbridgeJoin", "BridgeEnter", "ConfbridgeJoin", "BridgeEnter"]
    first, second = recorder.of("ConfbridgeJoin")
    assert [k for k, _ in first.pairs][:9] == ["Conference", "BridgeUniqueid", "BridgeType", "BridgeTechnology",
                                              "BridgeCreator", "BridgeName", "BridgeNumChannels",
                                              "BridgeVideoSourceMode", "Channel"]
    assert [k for k, _ in first.pairs][-3:] == ["Linkedid", "Admin", "Muted"]
    assert (first.get("BridgeType"), first.get("BridgeTechnology"), first.get("BridgeCreator"),
            first.get("BridgeName"), first.get("BridgeNumChannels"), second.get("BridgeNumChannels")) == \
        ("base", "softmix", "ConfBridge", "room-1", "0", "1")
    assert [c.linkedid for c in callers] == [c.uniqueid for c in callers]  # a ConfBridge does not re-link
    for chan in callers:
        world.remote_hangup(chan)
    advance(clock, 1)
    names = [n for n in recorder.names() if n in wanted][6:]
    assert names == ["BridgeLeave", "ConfbridgeLeave", "BridgeLeave", "ConfbridgeLeave", "ConfbridgeEnd",
                     "BridgeDestroy"]
    assert [k for k, _ in recorder.of("ConfbridgeLeave")[0].pairs][-1] == "Admin"
    assert conferences(world) == {} and not world.channels


def test_confbridge_kick_of_one_user_then_all(sim):
    """ConfbridgeKick: errors as app_confbridge words them; a kicked user carries on to Hangup() (KICKED)."""
    world, clock, callers, client = sim
    to_conference(world, clock, callers)
    recorder = EventRecorder(world)
    cases = [({"Channel": callers[0].name}, "No Conference name provided."),
             ({"Conference": "room-1"}, "No channel name provided."),
             ({"Conference": "elsewhere", "Channel": "all"}, "No Conference by that name found."),
             ({"Conference": "room-1", "Channel": "PJSIP/nobody-1"}, "No Channel by that name found in Conference.")]
    for headers, text in cases:
        client.send(Action="ConfbridgeKick", **headers)
        (reply,) = responses(client.read())
        assert (reply["Response"], reply["Message"]) == ("Error", text)
    client.send(Action="ConfbridgeKick", Conference="room-1", Channel=callers[0].name)
    assert responses(client.read())[0]["Message"] == "User kicked"
    advance(clock, 1)
    assert recorder.of("VarSet", Variable="CONFBRIDGE_RESULT", Value="KICKED")
    assert callers[0].dead and not callers[1].dead
    client.send(Action="ConfbridgeKick", Conference="room-1", Channel="all")
    assert responses(client.read())[0]["Message"] == "User kicked"
    advance(clock, 1)
    assert callers[1].dead and recorder.of("ConfbridgeEnd", Conference="room-1")
