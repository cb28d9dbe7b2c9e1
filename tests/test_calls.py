"""The call model (ctid.calls): exact domain-event sequences from real Asterisk 22 captures and hand-written AMI."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from ctid.callevents import (
    CallAnswered,
    CallEnded,
    CallHeld,
    CallRetrieved,
    CallsMerged,
    CallStarted,
    CallTransferred,
    ConferenceJoined,
    ConferenceLeft,
    DeliveryFailed,
    HoldInterval,
    LegAdded,
    LegRemoved,
    OriginateFailed,
    QueueJoined,
    QueueLeft,
    Recording,
    RecordingStarted,
    RecordingStopped,
    Transfer,
    VariableSet,
    oldest_linkedid,
)
from ctid.calllog import CallLogger
from ctid.calls import TRANSITIONS, CallModel, CallState
from ctid.protocols.amiwire import Message, iter_messages

DATA = Path(__file__).parent / "data" / "captures"
STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}


# -- helpers ----------------------------------------------------------------------


def capture(name: str) -> list[Message]:
    """The AMI messages of a real Asterisk 22.10.1 transcript in tests/data/captures."""
    return list(iter_messages((DATA / name).read_bytes()))


def block(uid, linkedid=None, name=None, state=6, num="13800138000", exten="95555", context="from-pstn", prefix=""):
    """A channel snapshot block as Asterisk writes it (``prefix`` is the role, e.g. ``Dest``)."""
    fields = [
        ("Channel", name or f"PJSIP/{uid}"), ("ChannelState", str(state)), ("ChannelStateDesc", STATE_DESC[state]),
        ("CallerIDNum", num), ("CallerIDName", "<unknown>"), ("ConnectedLineNum", "<unknown>"),
        ("ConnectedLineName", "<unknown>"), ("Language", "en"), ("AccountCode", ""), ("Context", context),
        ("Exten", exten), ("Priority", "1"), ("Uniqueid", uid), ("Linkedid", linkedid or uid),
    ]
    return [(prefix + key, value) for key, value in fields]


def bridge_block(bridge_id, prefix="", type="basic", count=0, technology="simple_bridge"):
    """A bridge block (``prefix`` ``To``/``From`` for BridgeMerge)."""
    fields = [("BridgeUniqueid", bridge_id), ("BridgeType", type), ("BridgeTechnology", technology),
              ("BridgeCreator", "<unknown>"), ("BridgeName", "<unknown>"), ("BridgeNumChannels", str(count))]
    return [(prefix + key, value) for key, value in fields]


def ami(event, *parts):
    """An AMI event message: ``Event: event`` then the given lists of pairs, in order."""
    pairs = [("Event", event), ("Privilege", "call,all")]
    for part in parts:
        pairs.extend(part)
    return Message.build(pairs)


class Harness:
    """A model on a fake clock with a recording subscriber."""

    def __init__(self, **kwargs):
        self.clock = Clock()
        self.model = CallModel(self.clock, **kwargs)
        self.events: list = []
        self.model.subscribe(self.events.append)

    def feed(self, *messages, step=0.0):
        """Apply messages, advancing the clock by ``step`` before each."""
        for message in messages:
            self.clock.advance(step)
            self.model.apply(message)

    def take(self, call_id=None):
        """The events recorded so far (only those of ``call_id`` if given), then forget them."""
        events, self.events[:] = list(self.events), []
        if call_id is None:
            return events
        return [e for e in events if getattr(e, "call_id", None) == call_id
                or call_id in (getattr(e, "old_call_id", None), getattr(e, "new_call_id", None))]

    def two_party(self, caller="100.1", agent="100.2", bridge="b-1", exten="95555"):
        """An inbound call from ``caller`` answered by ``agent``, both in a basic bridge."""
        self.feed(
            ami("Newchannel", block(caller, state=0, exten=exten)),
            ami("Newchannel", block(agent, caller, num="1001", state=0, exten="1001", context="agents")),
            ami("Newstate", block(agent, caller, num="1001", exten="1001", context="agents")),
            ami("Newstate", block(caller, exten=exten)),
            ami("BridgeCreate", bridge_block(bridge)),
            ami("BridgeEnter", bridge_block(bridge, count=1), block(caller, exten=exten)),
            ami("BridgeEnter", bridge_block(bridge, count=2),
                block(agent, caller, num="1001", exten="1001", context="agents")),
        )


def replay(harness, messages):
    """Feed a capture one message per second of fake time (message i at t=i+1)."""
    harness.feed(*messages, step=1.0)


# -- real captures -------------------------------------------------------------------------------


def test_queue_call_from_capture():
    """The app_queue call in ami-session.txt: started with the originate's caller ID, queued, answered by
    the agent's Local leg in the same call, every leg removed and the call ended with cause 16."""
    h = Harness()
    replay(h, capture("ami-session.txt"))
    call = "1795342906.0"
    assert h.take(call) == [
        CallStarted(call, "13800138000", "queue", 7.0),
        LegAdded(call, "1795342906.0", "Local/queue@callers-00000000;1"),
        LegAdded(call, "1795342906.1", "Local/queue@callers-00000000;2"),
        QueueJoined(call, "1795342906.1", "support", 1),
        LegAdded(call, "1795342907.6", "Local/1001@agents-00000003;1"),
        LegAdded(call, "1795342907.7", "Local/1001@agents-00000003;2"),
        QueueLeft(call, "1795342906.1", "support", False),
        CallAnswered(call, 119.0),
        LegRemoved(call, "1795342906.0", 0),
        LegRemoved(call, "1795342907.6", 16),
        LegRemoved(call, "1795342907.7", 16),
        LegRemoved(call, "1795342906.1", 16),
        CallEnded(call, 198.0, 16, 191.0),
    ]


def test_dtmf_call_from_capture():
    """The Dial D(123456#) call in ami-session.txt: the seven digits land on the IVR leg of the right call,
    in order, and nowhere else; the call is answered when its legs are bridged."""
    h = Harness()
    replay(h, capture("ami-session.txt"))
    call = "1795342906.2"
    ivr = "1795342906.5"
    assert h.take(call) == [
        CallStarted(call, "02112345678", "5555", 16.0),
        LegAdded(call, "1795342906.2", "Local/5555@dtmfsrc-00000001;1"),
        LegAdded(call, "1795342906.3", "Local/5555@dtmfsrc-00000001;2"),
        LegAdded(call, "1795342906.4", "Local/ivr@callers-00000002;1"),
        LegAdded(call, ivr, "Local/ivr@callers-00000002;2"),
        # the keys "123456#" typed into the AGI are not published: they may be a card number or a PIN
        CallAnswered(call, 144.0),
        LegRemoved(call, ivr, 0),
        LegRemoved(call, "1795342906.4", 16),
        LegRemoved(call, "1795342906.3", 16),
        LegRemoved(call, "1795342906.2", 16),
        CallEnded(call, 175.0, 16, 159.0),
    ]


def test_capture_details_while_live():
    """Mid-capture the model holds both calls with their legs, bridge, DTMF, states and ANI/DNIS, and the
    queue call's snapshot says where it went; after the capture nothing is left (memory bounded)."""
    h = Harness()
    messages = capture("ami-session.txt")
    replay(h, messages[:146])
    dtmf = h.model.calls["1795342906.2"]
    queue = h.model.calls["1795342906.0"]
    assert dtmf.dtmf == "" and h.model.channels["1795342906.5"].dtmf == ""  # typed into an AGI: private
    assert h.model.channels["1795342906.5"].in_ivr
    assert queue.dtmf == ""
    assert queue.state is CallState.CONNECTED and dtmf.state is CallState.CONNECTED
    assert h.model.channels["1795342906.0"].caller_name == "Zhang San"
    assert h.model.call_of("1795342907.6") is queue
    assert h.model.find_channel("Local/1001@agents-00000003;1").uniqueid == "1795342907.6"
    assert set(h.model.bridges["6ed7eb66-c757-4fd6-b04d-19a8b82bac8c"].channels) == {"1795342907.6", "1795342906.1"}
    snap = h.model.snapshot("1795342906.0")
    assert (snap.ani, snap.dnis, snap.queue, snap.answered_at, snap.abandoned) == (
        "13800138000", "queue", "support", 119.0, False)
    assert [c.call_id for c in h.model.active_calls()] == ["1795342906.0", "1795342906.2"]
    replay(h, messages[146:])
    assert (h.model.calls, h.model.channels, h.model.bridges) == ({}, {}, {})


def test_queue_call_states_follow_the_transition_table():
    """The trace hook sees the queue call go ringing -> queued -> ringing -> connected -> ... -> ended."""
    trace = []
    h = Harness(trace=lambda call_id, old, trigger, new: trace.append((call_id, old, trigger, new)))
    replay(h, capture("ami-session.txt"))
    assert [(t, new) for call_id, _, t, new in trace if call_id == "1795342906.0"] == [
        ("queue_join", CallState.QUEUED),
        ("queue_leave", CallState.RINGING),
        ("bridged", CallState.CONNECTED),
        ("unbridged", CallState.RINGING),
        ("end", CallState.ENDED),
    ]
    assert all(TRANSITIONS[(old, t)] is new for _, old, t, new in trace)


def park_hangup():
    """The end of the delivered park call (the capture stops while it is connected)."""
    bridge = "a35c2d37-c797-4b5c-9935-df52663f652d"
    agent1 = block("1795343264.18", "1795343254.14", "Local/1001@agents-00000009;1", num="s", exten="")
    agent2 = block("1795343264.19", "1795343254.14", "Local/1001@agents-00000009;2", num="13900001111",
                   exten="1001")
    caller2 = block("1795343254.15", "1795343254.14", "Local/s@ctid-wait-00000007;2", num="13900001111",
                    exten="s", context="ctid-deliver")
    caller1 = block("1795343254.14", None, "Local/s@ctid-wait-00000007;1", num="13900001111", exten="s")
    cause = [("Cause", "16"), ("Cause-txt", "Normal Clearing")]
    return [
        ami("BridgeLeave", bridge_block(bridge, count=1), agent1),
        ami("BridgeLeave", bridge_block(bridge, count=0), caller2),
        ami("BridgeDestroy", bridge_block(bridge)),
        ami("Hangup", agent1, cause),
        ami("Hangup", agent2, cause),
        ami("Hangup", caller2, cause),
        ami("Hangup", caller1, cause),
    ]


def test_park_and_redirect_from_capture():
    """park-redirect.txt: the parked caller's call sees two failed deliveries (CHANUNAVAIL, then NOANSWER
    with the ringing agent legs added and removed), then the answered delivery joins the agent's legs to
    the caller's Linkedid and answers the call; hanging up ends it."""
    h = Harness()
    replay(h, capture("park-redirect.txt"))
    call = "1795343254.14"
    assert h.take(call) == [
        CallStarted(call, "13900001111", None, 5.0),
        LegAdded(call, "1795343254.14", "Local/s@ctid-wait-00000007;1"),
        LegAdded(call, "1795343254.15", "Local/s@ctid-wait-00000007;2"),
        VariableSet(call, "1795343254.15", "CTID_PARKED", "1"),
        VariableSet(call, "1795343254.15", "CTID_RING", "4"),
        DeliveryFailed(call, "1795343254.15", "CHANUNAVAIL"),
        VariableSet(call, "1795343254.15", "CTID_PARKED", "1"),
        VariableSet(call, "1795343254.15", "CTID_TARGET", "Local/2002@agents-noans"),
        LegAdded(call, "1795343257.16", "Local/2002@agents-noans-00000008;1"),
        LegAdded(call, "1795343257.17", "Local/2002@agents-noans-00000008;2"),
        LegRemoved(call, "1795343257.16", 0),
        LegRemoved(call, "1795343257.17", 0),
        DeliveryFailed(call, "1795343254.15", "NOANSWER"),
        VariableSet(call, "1795343254.15", "CTID_PARKED", "1"),
        VariableSet(call, "1795343254.15", "CTID_TARGET", "Local/1001@agents"),
        LegAdded(call, "1795343264.18", "Local/1001@agents-00000009;1"),
        LegAdded(call, "1795343264.19", "Local/1001@agents-00000009;2"),
        CallAnswered(call, 139.0),
    ]
    parked = h.model.channels["1795343254.15"]
    assert parked.variables == {"CTID_PARKED": "1", "CTID_RING": "4", "CTID_TARGET": "Local/1001@agents"}
    assert h.model.call_of("1795343264.18").call_id == call
    assert h.model.calls[call].state is CallState.CONNECTED
    h.feed(*park_hangup(), step=1.0)
    assert h.take(call) == [
        LegRemoved(call, "1795343264.18", 16),
        LegRemoved(call, "1795343264.19", 16),
        LegRemoved(call, "1795343254.15", 16),
        LegRemoved(call, "1795343254.14", 16),
        CallEnded(call, 173.0, 16, 168.0),
    ]
    assert h.model.calls == {} and h.model.channels == {} and h.model.bridges == {}


def test_stale_call_in_park_capture_is_picked_up_on_the_fly():
    """park-redirect.txt also carries the hang-up of a call from before the capture: its unknown legs are
    created from the BridgeLeave snapshots, a Hangup of an unknown leg is ignored, and the call ends."""
    h = Harness()
    replay(h, capture("park-redirect.txt"))
    stale = "1795343237.8"
    assert h.take(stale) == [
        CallStarted(stale, "s", None, 150.0),
        LegAdded(stale, "1795343247.12", "Local/1001@agents-00000006;1"),
        LegAdded(stale, "1795343237.9", "Local/s@ctid-wait-00000004;2"),
        LegRemoved(stale, "1795343247.12", 16),
        LegRemoved(stale, "1795343237.9", 16),
        CallEnded(stale, 163.0, 16, 13.0),
    ]


# -- Linkedid changes ---------------------------------------------------------------------------------


def test_bridge_merge_relinks_to_the_oldest_call():
    """A BridgeMerge of a consultation call's bridge into the original call's basic bridge moves the
    consultation legs to the older Linkedid: LegRemoved/LegAdded per leg, then CallsMerged when the
    newer call has no leg left; later events carrying the new Linkedid change nothing."""
    h = Harness()
    h.two_party("100.1", "100.2", "b-1")
    h.two_party("100.3", "100.4", "b-2", exten="2000")
    h.take()
    h.feed(ami("BridgeMerge", bridge_block("b-1", "To", count=2), bridge_block("b-2", "From", count=2)))
    assert h.take() == [
        LegRemoved("100.3", "100.3", None),
        LegAdded("100.1", "100.3", "PJSIP/100.3"),
        LegRemoved("100.3", "100.4", None),
        LegAdded("100.1", "100.4", "PJSIP/100.4"),
        CallsMerged("100.3", "100.1"),
    ]
    assert set(h.model.calls) == {"100.1"}
    assert set(h.model.bridges["b-1"].channels) == {"100.1", "100.2", "100.3", "100.4"}
    assert "b-2" not in h.model.bridges
    h.feed(ami("Newstate", block("100.4", "100.1", num="1001")))
    assert h.take() == []


def test_linkedid_change_seen_on_any_event():
    """An event whose Linkedid differs from the channel's re-parents the channel; a partial move leaves
    the old call alive (it later ends normally), moving its last leg merges it away."""
    h = Harness()
    h.two_party("200.1", "200.2", "b-1")
    h.feed(ami("Newchannel", block("300.1", state=0, exten="2000")),
           ami("Newchannel", block("300.2", "300.1", state=0, exten="2000")))
    h.take()
    h.feed(ami("Hold", block("300.2", "200.1")))
    assert h.take() == [
        LegRemoved("300.1", "300.2", None),
        LegAdded("200.1", "300.2", "PJSIP/300.2"),
        CallHeld("200.1", "300.2"),
    ]
    h.feed(ami("Hangup", block("300.1"), [("Cause", "17"), ("Cause-txt", "User busy")]))
    assert h.take() == [LegRemoved("300.1", "300.1", 17), CallEnded("300.1", 0.0, 17, 0.0)]
    h.feed(ami("Newchannel", block("400.1", state=0)), ami("Unhold", block("400.1", "200.1")))
    assert h.take() == [
        CallStarted("400.1", "13800138000", "95555", 0.0),
        LegAdded("400.1", "400.1", "PJSIP/400.1"),
        LegRemoved("400.1", "400.1", None),
        LegAdded("200.1", "400.1", "PJSIP/400.1"),
        CallsMerged("400.1", "200.1"),
    ]
    assert sorted(h.model.calls["200.1"].channels) == ["200.1", "200.2", "300.2", "400.1"]


def test_bridge_enter_moves_every_member_to_the_entering_linkedid():
    """Asterisk re-links all members of a basic bridge to the oldest Linkedid before it reports the entry,
    so a member that entered earlier with a newer Linkedid is moved at once, without waiting for its next
    event, and the call is answered as one call."""
    h = Harness()
    h.feed(ami("Newchannel", block("500.1", state=6)),
           ami("Newchannel", block("600.1", num="1001", state=6)),
           ami("BridgeEnter", bridge_block("b-9", count=1), block("600.1", num="1001")),
           ami("BridgeEnter", bridge_block("b-9", count=2), block("500.1")))
    assert h.take() == [
        CallStarted("500.1", "13800138000", "95555", 0.0),
        LegAdded("500.1", "500.1", "PJSIP/500.1"),
        CallStarted("600.1", "1001", "95555", 0.0),
        LegAdded("600.1", "600.1", "PJSIP/600.1"),
        LegRemoved("600.1", "600.1", None),
        LegAdded("500.1", "600.1", "PJSIP/600.1"),
        CallsMerged("600.1", "500.1"),
        CallAnswered("500.1", 0.0),
    ]


def test_holding_bridge_neither_answers_nor_merges():
    """Two Up callers parked in the same holding bridge are not talking to each other: no CallAnswered, no
    re-linking, both calls stay ringing."""
    h = Harness()
    parking = dict(type="parking", technology="holding_bridge")
    h.feed(ami("Newchannel", block("120.1", state=6)),
           ami("Newchannel", block("130.1", num="13900001111", state=6)),
           ami("BridgeCreate", bridge_block("p-1", **parking)),
           ami("BridgeEnter", bridge_block("p-1", count=1, **parking), block("120.1")),
           ami("BridgeEnter", bridge_block("p-1", count=2, **parking), block("130.1", num="13900001111")))
    assert [type(e) for e in h.take()] == [CallStarted, LegAdded, CallStarted, LegAdded]
    assert [c.state for c in h.model.active_calls()] == [CallState.RINGING, CallState.RINGING]


def test_dial_status_kept_on_the_dialled_leg():
    """DialState/DialEnd record the DialStatus on the Dest leg."""
    h = Harness()
    h.feed(ami("Newchannel", block("140.1", state=4)),
           ami("Newchannel", block("140.2", "140.1", num="1001", state=0)),
           ami("DialBegin", block("140.1", state=4), block("140.2", "140.1", num="1001", state=0, prefix="Dest"),
               [("DialString", "1001")]),
           ami("DialState", block("140.1", state=4), block("140.2", "140.1", num="1001", state=5, prefix="Dest"),
               [("DialStatus", "RINGING")]))
    assert h.model.channels["140.2"].dial_status == "RINGING"
    h.feed(ami("DialEnd", block("140.1", state=4), block("140.2", "140.1", num="1001", state=5, prefix="Dest"),
               [("DialStatus", "BUSY")]))
    assert h.model.channels["140.2"].dial_status == "BUSY"


def test_oldest_linkedid_orders_by_epoch_then_sequence():
    """Linkedids compare as (epoch, sequence), with an optional system-name prefix; odd ids give None."""
    assert oldest_linkedid(["1700000001.2", "1700000000.10", "1700000000.9"]) == "1700000000.9"
    assert oldest_linkedid(["pbx1-1700000000.3", "pbx1-1700000000.20"]) == "pbx1-1700000000.3"
    assert oldest_linkedid(["my-originate-id", "1700000000.1"]) is None


# -- hold, transfers, causes, variables -------------------------------------------------------------------


def test_hold_and_unhold_intervals():
    """Hold/Unhold publish CallHeld/CallRetrieved per leg, move the call held <-> connected and record one
    interval per period with at least one leg on hold; music on hold alone is not hold."""
    h = Harness()
    h.two_party()
    h.take()
    h.clock.advance(10)
    h.feed(ami("MusicOnHoldStart", block("100.1"), [("Class", "default")]))
    assert h.model.calls["100.1"].state is CallState.CONNECTED
    h.feed(ami("Hold", block("100.1"), [("MusicClass", "default")]))
    h.clock.advance(5)
    h.feed(ami("Hold", block("100.2", "100.1")), ami("Hold", block("100.2", "100.1")))
    assert h.model.calls["100.1"].state is CallState.HELD
    h.clock.advance(5)
    h.feed(ami("Unhold", block("100.1")))
    assert h.model.calls["100.1"].state is CallState.HELD
    h.clock.advance(5)
    h.feed(ami("Unhold", block("100.2", "100.1")))
    h.clock.advance(20)
    h.feed(ami("Hold", block("100.1")))
    h.clock.advance(3)
    h.feed(ami("Unhold", block("100.1")))
    assert h.take() == [
        CallHeld("100.1", "100.1"),
        CallHeld("100.1", "100.2"),
        CallRetrieved("100.1", "100.1"),
        CallRetrieved("100.1", "100.2"),
        CallHeld("100.1", "100.1"),
        CallRetrieved("100.1", "100.1"),
    ]
    snap = h.model.snapshot("100.1")
    assert snap.state is CallState.CONNECTED
    assert snap.holds == (HoldInterval(10.0, 25.0), HoldInterval(45.0, 48.0))
    assert snap.held_seconds == 18.0


def test_hold_interval_closed_when_the_call_ends_on_hold():
    """A call that ends while held gets its open hold interval closed at the end time."""
    h = Harness()
    h.two_party()
    h.feed(ami("Hold", block("100.1")))
    h.clock.advance(7)
    seen = []
    h.model.subscribe(lambda e: seen.append(h.model.snapshot("100.1")) if isinstance(e, CallEnded) else None)
    h.feed(ami("Hangup", block("100.2", "100.1"), [("Cause", "16")]),
           ami("Hangup", block("100.1"), [("Cause", "16")]))
    assert seen[0].holds == (HoldInterval(0.0, 7.0),)
    assert seen[0].state is CallState.ENDED


def test_blind_transfer():
    """A BlindTransfer is published with the transferer leg and exten@context, and kept on the call."""
    h = Harness()
    h.two_party()
    h.take()
    h.clock.advance(3)
    h.feed(ami("BlindTransfer", [("Result", "Success")], block("100.2", "100.1", prefix="Transferer"),
               block("100.1", prefix="Transferee"), bridge_block("b-1", count=2),
               [("IsExternal", "No"), ("Context", "agents"), ("Extension", "1002")]))
    assert h.take() == [CallTransferred("100.1", "blind", "100.2", "1002@agents", "Success", None)]
    assert h.model.calls["100.1"].transfers == [Transfer("blind", 3.0, "100.2", "1002@agents", "Success")]


def test_attended_transfer():
    """An AttendedTransfer names the original call, the transferer, the target and the consultation call."""
    h = Harness()
    h.two_party("100.1", "100.2", "b-1")
    h.feed(ami("Newchannel", block("100.5", num="1001", state=6, exten="1002")),
           ami("Newchannel", block("100.6", "100.5", num="1002", state=6, exten="1002")))
    h.take()
    h.feed(ami("AttendedTransfer", [("Result", "Success")],
               block("100.2", "100.1", prefix="OrigTransferer"), bridge_block("b-1", "OrigBridge", count=2),
               block("100.5", prefix="SecondTransferer"), bridge_block("b-2", "SecondBridge", count=2),
               [("DestType", "Bridge"), ("DestBridgeUniqueid", "b-1")],
               block("100.1", prefix="Transferee"),
               block("100.6", "100.5", name="PJSIP/1002-0000000a", prefix="TransferTarget"),
               [("IsExternal", "No")]))
    assert h.take() == [
        CallTransferred("100.1", "attended", "100.2", "PJSIP/1002-0000000a", "Success", "100.5"),
    ]


def test_hangup_cause_recorded():
    """Each leg keeps its cause; the call's cause is the first non-zero one, and CallEnded carries it."""
    h = Harness()
    h.two_party()
    h.take()
    h.clock.advance(30)
    h.feed(ami("Hangup", block("100.2", "100.1"), [("Cause", "0"), ("Cause-txt", "Unknown")]),
           ami("Hangup", block("100.1"), [("Cause", "17"), ("Cause-txt", "User busy")]))
    assert h.take() == [LegRemoved("100.1", "100.2", 0), LegRemoved("100.1", "100.1", 17),
                        CallEnded("100.1", 30.0, 17, 30.0)]


def test_varset_keeps_ctid_and_configured_variables_only():
    """VarSet stores CTID_* and configured names (plus MIXMONITOR_FILENAME), ignores the rest, and an
    ignored variable on an unknown channel creates nothing."""
    h = Harness(variables={"ACCOUNT"})
    h.two_party()
    h.feed(ami("VarSet", block("100.1"), [("Variable", "CTID_TARGET"), ("Value", "PJSIP/1001")]),
           ami("VarSet", block("100.1"), [("Variable", "ACCOUNT"), ("Value", "6222 0000")]),
           ami("VarSet", block("100.1"), [("Variable", "BRIDGEPEER"), ("Value", "PJSIP/100.2")]),
           ami("VarSet", block("999.1"), [("Variable", "DIALSTATUS"), ("Value", "ANSWER")]))
    assert h.model.channels["100.1"].variables == {"CTID_TARGET": "PJSIP/1001", "ACCOUNT": "6222 0000"}
    assert "999.1" not in h.model.channels


def test_unknown_events_are_ignored():
    """Events the model does not track leave it unchanged and publish nothing."""
    h = Harness()
    h.feed(ami("Newexten", block("100.1"), [("Application", "Answer")]),
           ami("DeviceStateChange", [("Device", "PJSIP/1001"), ("State", "INUSE")]),
           ami("DTMFBegin", block("100.1"), [("Digit", "1"), ("Direction", "Received")]),
           Message.build([("Response", "Success"), ("ActionID", "x")]))
    assert h.take() == []
    assert h.model.channels == {} and h.model.calls == {}


def test_events_for_an_unknown_uniqueid_create_the_channel():
    """After a restart, an event for a channel never seen creates it (and its call) from the snapshot
    block, already Up; a Hangup for an unknown channel is ignored."""
    h = Harness()
    h.clock.advance(100)
    h.feed(ami("Hangup", block("700.9"), [("Cause", "16")]))
    assert h.take() == []
    h.feed(ami("Newstate", block("700.2", "700.1", name="PJSIP/1001-00000002", num="1001")))
    assert h.take() == [CallStarted("700.1", "1001", "95555", 100.0),
                        LegAdded("700.1", "700.2", "PJSIP/1001-00000002")]
    channel = h.model.find_channel("PJSIP/1001-00000002")
    assert (channel.state, channel.answered_at, channel.created_at) == (6, 100.0, 100.0)


def test_originated_call_is_announced_once_its_caller_id_is_known():
    """An originated Local channel is created with <unknown> caller ID; CallStarted waits for the
    NewCallerid on the ;1 half (quiet events only) and then lists the legs created meanwhile."""
    h = Harness()
    one = dict(name="Local/8000@out-00000001;1", num="<unknown>", exten="8000", state=0)
    h.feed(ami("Newchannel", block("800.1", **one)),
           ami("Newchannel", block("800.2", "800.1", name="Local/8000@out-00000001;2", num="<unknown>",
                                   exten="8000", state=4)),
           ami("VarSet", block("800.1", **one), [("Variable", "CTID_JOB"), ("Value", "42")]))
    assert h.take() == []
    h.feed(ami("NewCallerid", block("800.1", **{**one, "num": "02112345678"})))
    assert h.take() == [
        CallStarted("800.1", "02112345678", "8000", 0.0),
        LegAdded("800.1", "800.1", "Local/8000@out-00000001;1"),
        LegAdded("800.1", "800.2", "Local/8000@out-00000001;2"),
    ]


def test_anonymous_call_is_announced_by_its_first_real_event():
    """Without a caller number the call is announced (ANI None) by the first non-quiet event; the 's'
    extension means no DNIS."""
    h = Harness()
    h.feed(ami("Newchannel", block("900.1", num="<unknown>", exten="s", state=0)))
    assert h.take() == []
    h.feed(ami("Newstate", block("900.1", num="<unknown>", exten="s", state=4)))
    assert h.take() == [CallStarted("900.1", None, None, 0.0), LegAdded("900.1", "900.1", "PJSIP/900.1")]


# -- queues, recordings, conferences, originate ---------------------------------------------------------


def test_queue_abandon():
    """A caller hanging up in a queue gives one QueueLeft marked abandoned; the Leave that follows adds
    nothing."""
    h = Harness()
    h.feed(ami("Newchannel", block("110.1", state=6)),
           ami("QueueCallerJoin", block("110.1"), [("Queue", "vip"), ("Position", "3"), ("Count", "3")]),
           ami("QueueCallerAbandon", block("110.1"), [("Queue", "vip"), ("Position", "2"),
                                                     ("OriginalPosition", "3"), ("HoldTime", "40")]),
           ami("QueueCallerLeave", block("110.1"), [("Queue", "vip"), ("Position", "2"), ("Count", "2")]))
    assert h.take()[2:] == [QueueJoined("110.1", "110.1", "vip", 3), QueueLeft("110.1", "110.1", "vip", True)]
    snap = h.model.snapshot("110.1")
    assert (snap.queue, snap.abandoned, snap.state) == ("vip", True, CallState.RINGING)


def test_recording_conference_and_failed_originate():
    """MixMonitor start/stop are published with the file name and kept on the call; ConfBridge join/leave
    are published; a failed OriginateResponse is published even without a known channel."""
    h = Harness()
    h.two_party()
    h.take()
    h.feed(ami("VarSet", block("100.1"), [("Variable", "MIXMONITOR_FILENAME"), ("Value", "/rec/100.1.wav")]),
           ami("MixMonitorStart", block("100.1")))
    h.clock.advance(60)
    h.feed(ami("MixMonitorStop", block("100.1")),
           ami("ConfbridgeJoin", [("Conference", "room1")], bridge_block("c-1", type="base"), block("100.2", "100.1"),
               [("Admin", "No"), ("Muted", "No")]),
           ami("ConfbridgeLeave", [("Conference", "room1")], bridge_block("c-1", type="base"),
               block("100.2", "100.1"), [("Admin", "No")]),
           ami("OriginateResponse", [("ActionID", "o9"), ("Response", "Failure"), ("Channel", "PJSIP/1009"),
                                     ("Context", "agents"), ("Exten", "1009"), ("Reason", "5"),
                                     ("Uniqueid", "<null>")]))
    assert h.take() == [
        VariableSet("100.1", "100.1", "MIXMONITOR_FILENAME", "/rec/100.1.wav"),
        RecordingStarted("100.1", "100.1", "/rec/100.1.wav"),
        RecordingStopped("100.1", "100.1", "/rec/100.1.wav"),
        ConferenceJoined("100.1", "100.2", "room1"),
        ConferenceLeft("100.1", "100.2", "room1"),
        OriginateFailed(None, None, "PJSIP/1009", 5),
    ]
    assert h.model.calls["100.1"].recordings == [Recording("100.1", 0.0, 60.0, "/rec/100.1.wav")]
    assert h.model.calls["100.1"].conference is None


# -- resynchronisation --------------------------------------------------------------------------------------


def core_show_channel(uid, linkedid, duration, bridge="", app="Dial", data="", **kwargs):
    """A CoreShowChannel list item."""
    return ami("CoreShowChannel", [("ActionID", "csc")], block(uid, linkedid, **kwargs),
               [("Application", app), ("ApplicationData", data), ("Duration", duration), ("BridgeId", bridge)])


def test_rebuild_keeps_known_calls_ends_vanished_ones_and_starts_new_ones():
    """rebuild(): a known call still present is kept without a second CallStarted (its vanished leg is
    removed); a call gone while disconnected ends with cause None; a new call is started, answered and
    timed from Duration, with its bridge rebuilt from BridgeId/BridgeListItem."""
    h = Harness()
    h.two_party("100.1", "100.2", "b-1")
    h.feed(ami("Newchannel", block("100.3", "100.1", num="1001", state=4)))
    h.two_party("200.1", "200.2", "b-2")
    h.take()
    h.clock.advance(1000)
    h.model.rebuild(
        [core_show_channel("100.1", "100.1", "00:16:40", "b-1"),
         core_show_channel("100.2", "100.1", "00:16:40", "b-1", num="1001"),
         core_show_channel("300.2", "300.1", "00:01:00", "b-3", num="1001", name="PJSIP/1001-00000009"),
         core_show_channel("300.1", "300.1", "00:02:00", "b-3", num="13900001111", exten="95588"),
         core_show_channel("400.1", "400.1", "00:00:30", app="Queue", data="support,t,,,300", state=6)],
        [ami("BridgeListItem", bridge_block("b-1", count=2)), ami("BridgeListItem", bridge_block("b-3", count=2))],
    )
    assert h.take() == [
        LegRemoved("100.1", "100.3", None),
        LegRemoved("200.1", "200.1", None),
        LegRemoved("200.1", "200.2", None),
        CallEnded("200.1", 1000.0, None, 1000.0),
        CallStarted("300.1", "13900001111", "95588", 880.0),
        LegAdded("300.1", "300.2", "PJSIP/1001-00000009"),
        LegAdded("300.1", "300.1", "PJSIP/300.1"),
        CallAnswered("300.1", 940.0),
        CallStarted("400.1", "13800138000", "95555", 970.0),
        LegAdded("400.1", "400.1", "PJSIP/400.1"),
    ]
    assert set(h.model.calls) == {"100.1", "300.1", "400.1"}
    assert h.model.calls["100.1"].state is CallState.CONNECTED
    assert h.model.calls["300.1"].state is CallState.CONNECTED
    assert (h.model.calls["400.1"].state, h.model.calls["400.1"].queue) == (CallState.QUEUED, "support")
    assert set(h.model.bridges) == {"b-1", "b-3"}
    assert list(h.model.bridges["b-3"].channels) == ["300.2", "300.1"]
    assert h.model.bridges["b-3"].type == "basic"


def test_rebuild_from_captured_core_show_channels():
    """The CoreShowChannel items of ami-session.txt (listed in no useful order) rebuild two calls whose
    ANI and DNIS come from their ;1 origin legs; events after the rebuild carry on from there."""
    h = Harness()
    messages = capture("ami-session.txt")
    items = [m for m in messages if m.event == "CoreShowChannel"]
    assert len(items) == 4
    h.model.rebuild(items)
    assert h.take() == [
        CallStarted("1795342906.2", "02112345678", "5555", 0.0),
        LegAdded("1795342906.2", "1795342906.2", "Local/5555@dtmfsrc-00000001;1"),
        LegAdded("1795342906.2", "1795342906.3", "Local/5555@dtmfsrc-00000001;2"),
        CallStarted("1795342906.0", "13800138000", "queue", 0.0),
        LegAdded("1795342906.0", "1795342906.1", "Local/queue@callers-00000000;2"),
        LegAdded("1795342906.0", "1795342906.0", "Local/queue@callers-00000000;1"),
    ]
    replay(h, messages[22:])
    events = h.take()
    assert not [e for e in events if isinstance(e, CallStarted)]
    assert [e for e in events if isinstance(e, CallEnded)] == [
        CallEnded("1795342906.2", 153.0, 16, 153.0), CallEnded("1795342906.0", 176.0, 16, 176.0)]


def test_rebuild_with_nothing_left_ends_everything():
    """An empty snapshot ends every known call with cause None and clears channels and bridges."""
    h = Harness()
    h.two_party()
    h.take()
    h.model.rebuild([], [])
    assert h.take()[-1] == CallEnded("100.1", 0.0, None, 0.0)
    assert (h.model.calls, h.model.channels, h.model.bridges) == ({}, {}, {})


# -- subscribers, logging, memory -----------------------------------------------------------------------------


@pytest.mark.allow_logged_errors
def test_subscriber_exception_does_not_break_apply(fail_on_logged_errors):
    """A subscriber that raises is logged with its failure; the model and the other subscribers carry on."""
    h = Harness()

    def broken(event):
        raise RuntimeError("subscriber bug")

    h.model.unsubscribe(h.events.append)
    h.model.subscribe(broken)
    h.model.subscribe(h.events.append)
    h.two_party()
    assert [type(e) for e in h.take()] == [CallStarted, LegAdded, LegAdded, CallAnswered]
    assert h.model.calls["100.1"].state is CallState.CONNECTED
    errors = fail_on_logged_errors
    assert len(errors) == 4
    assert errors[0]["log_failure"].check(RuntimeError)
    h.model.unsubscribe(broken)
    h.feed(ami("Hold", block("100.1")))
    assert len(errors) == 4 and h.take() == [CallHeld("100.1", "100.1")]


@pytest.mark.allow_logged_errors
def test_malformed_event_is_logged_and_skipped(fail_on_logged_errors):
    """An event that makes a handler fail is logged; apply() does not raise and later events still apply."""
    h = Harness()
    h.model._handlers["Newstate"] = lambda event: 1 / 0
    h.feed(ami("Newstate", block("100.1")), ami("Newchannel", block("100.2")))
    assert len(fail_on_logged_errors) == 1
    assert "100.2" in h.model.channels


def test_ended_calls_are_removed():
    """Thousands of complete calls leave no call, channel, bridge or name behind (memory stays bounded)."""
    h = Harness()
    for n in range(1000):
        caller, agent = f"{n}.1", f"{n}.2"
        h.two_party(caller, agent, f"b-{n}")
        h.feed(ami("DTMFEnd", block(caller), [("Digit", "5"), ("DurationMs", "80"), ("Direction", "Received")]),
               ami("BridgeLeave", bridge_block(f"b-{n}"), block(caller)),
               ami("BridgeLeave", bridge_block(f"b-{n}"), block(agent, caller)),
               ami("BridgeDestroy", bridge_block(f"b-{n}")),
               ami("Hangup", block(agent, caller), [("Cause", "16")]),
               ami("Hangup", block(caller), [("Cause", "16")]))
    assert sum(isinstance(e, CallEnded) for e in h.take()) == 1000
    assert (h.model.calls, h.model.channels, h.model.bridges, h.model._names) == ({}, {}, {}, {})


def test_call_logger_logs_in_plain_words():
    """CallLogger logs start, answer and end at info level with structured fields and readable text."""
    h = Harness()
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        CallLogger(h.model)
        h.two_party()
        h.clock.advance(12.34)
        h.feed(ami("Hangup", block("100.2", "100.1"), [("Cause", "16"), ("Cause-txt", "Normal Clearing")]),
               ami("Hangup", block("100.1"), [("Cause", "16"), ("Cause-txt", "Normal Clearing")]))
    finally:
        globalLogPublisher.removeObserver(seen.append)
    mine = [e for e in seen if e.get("log_namespace") == "ctid.calls"]
    assert all(e["log_level"] is LogLevel.info for e in mine)
    assert [formatEvent(e) for e in mine] == [
        "call 100.1 started: ANI 13800138000 DNIS 95555",
        "call 100.1 answered",
        "call 100.1 ended: cause 16 (Normal Clearing) after 12.3s",
    ]
    assert (mine[0]["ani"], mine[2]["cause"], mine[2]["duration"]) == ("13800138000", 16, 12.34)
