"""The simulator's AMI bytes for park-and-redirect have the shape of a real Asterisk 22.10.1 capture.

The scenario of shared/captures/asterisk-22.10.1/park-redirect.txt is replayed
against the simulator over its AMI protocol (StringTransport, Clock), with
the capture's own lab contexts (dialplan-used.conf): Originate
``Local/s@ctid-wait`` into Wait(40), then Setvar CTID_RING / CTID_TARGET and
Redirect to ctid-deliver three times (target unset, an agent that does not
answer, an agent that answers).  The comparison is ami_shape.py's
(shared/tools/ami_shape.py): selected fields, volatile ids renamed in order
of first appearance.

The capture ends with the teardown of an *earlier* identical call (other
ids), so it is compared in two parts: the scenario itself, and that teardown
against the simulator's teardown of its own call 20 s later (the agents
context's Wait(20) ending).

Known, accepted difference: ``DeviceStateChange`` is skipped (the simulator
emits it only for PJSIP phones; Asterisk's Local-channel device states in the
capture are racy aggregates of both halves).
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ctid.adapters.pbxsim.amiserver import AmiServerFactory
from ctid.adapters.pbxsim.service import build_world
from ctid.adapters.pbxsim.settings import SimulatorSettings
from ctid.adapters.pbxsim.testing import advance
from ctid.protocols.amiwire import format_message

CAPTURES = Path(__file__).parent / "data" / "captures"

# ami_shape.py's defaults.
FIELDS = {"Event", "Response", "Channel", "ChannelStateDesc", "Context", "Exten", "Uniqueid", "Linkedid",
          "DestChannel", "DialStatus", "Cause", "Queue", "Interface", "BridgeUniqueid", "EventList", "UserEvent",
          "Dialstatus", "Digit"}
VOLATILE = {"Uniqueid", "Linkedid", "DestUniqueid", "DestLinkedid", "BridgeUniqueid", "ActionID"}
CHANNEL_FIELDS = {"Channel", "DestChannel", "Interface", "Location"}
SKIP = {"DeviceStateChange"}


def messages(raw: bytes) -> list[list[tuple[str, str]]]:
    """ami_shape.messages: blocks split on blank lines, the banner dropped."""
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n")
    out = []
    for block in text.split("\n\n"):
        pairs = []
        for line in block.split("\n"):
            key, sep, value = line.partition(": ")
            if sep:
                pairs.append((key.strip(), value.strip()))
            elif line.endswith(":"):
                pairs.append((line[:-1].strip(), ""))
        if pairs:
            out.append(pairs)
    return out


def shape(msgs: list[list[tuple[str, str]]]) -> list[str]:
    """ami_shape.shape with its default fields; ids and channel sequence numbers renamed."""
    import re

    seq = re.compile(r"-[0-9a-f]{8}(;[12])?$")
    names: dict[tuple[str, str], str] = {}

    def rename(kind: str, value: str) -> str:
        if value and (kind, value) not in names:
            names[(kind, value)] = f"<{kind}{sum(1 for k in names if k[0] == kind) + 1}>"
        return names.get((kind, value), value)

    lines = []
    for pairs in msgs:
        if dict(pairs).get("Event") in SKIP:
            continue
        shown = []
        for key, value in pairs:
            if key not in FIELDS:
                continue
            if key in VOLATILE:
                value = rename("id" if key != "BridgeUniqueid" else "bridge", value)
            elif key in CHANNEL_FIELDS and (match := seq.search(value)):
                value = seq.sub("", value) + "-" + rename("seq", match.group(0)[1:9]) + (match.group(1) or "")
            shown.append(f"{key}={value}")
        lines.append(" ".join(shown))
    return lines


def split_capture(raw: bytes) -> tuple[list, list]:
    """(the scenario, the trailing teardown of an earlier call with other Linkedids)."""
    msgs = messages(raw)
    main = next(dict(m)["Linkedid"] for m in msgs if dict(m).get("Event") == "Newchannel")
    cut = next(i for i, m in enumerate(msgs) if dict(m).get("Linkedid", main) != main)
    return msgs[:cut], msgs[cut:]


def replay() -> tuple[bytes, bytes]:
    """The capture's scenario against the simulator; (bytes of the scenario, bytes of the teardown)."""
    settings = SimulatorSettings(secret="lab-secret")
    clock = Clock()
    clock.advance(1795343254.9)
    world = build_world(settings, clock, (CAPTURES / "dialplan-used.conf").read_text())
    proto = AmiServerFactory(world, settings).buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)

    def send(*actions: list[tuple[str, str]]) -> None:
        proto.dataReceived(b"".join(format_message(a) for a in actions))

    caller = "Local/s@ctid-wait-00000000;2"
    redirect = [("Action", "Redirect"), ("Channel", caller), ("Context", "ctid-deliver"), ("Exten", "s"),
                ("Priority", "1")]
    send([("Action", "Login"), ("Username", "ctid"), ("Secret", "lab-secret")],
         [("Action", "Originate"), ("ActionID", "c1"), ("Channel", "Local/s@ctid-wait"), ("Application", "Wait"),
          ("Data", "40"), ("CallerID", "13900001111"), ("Async", "true")])
    advance(clock, 2)
    for n, target in enumerate(("", "Local/2002@agents-noans", "Local/1001@agents"), 1):
        variable, value = ("CTID_RING", "4") if not target else ("CTID_TARGET", target)
        send([("Action", "Setvar"), ("Channel", caller), ("Variable", variable), ("Value", value)])
        advance(clock, 0.2)
        send(redirect + [("ActionID", f"r{n}")])
        advance(clock, 7 if target != "Local/1001@agents" else 15)
    scenario = transport.value()
    transport.clear()
    advance(clock, 10)
    return scenario, transport.value()


def test_park_redirect_has_the_shape_of_the_real_capture():
    """Every event, response and field ami_shape looks at matches the capture, in order (DeviceStateChange aside)."""
    real_scenario, real_teardown = split_capture((CAPTURES / "park-redirect.txt").read_bytes())
    sim_scenario, sim_teardown = replay()
    assert shape(messages(sim_scenario)) == shape(real_scenario)
    assert shape(messages(sim_teardown)) == shape(real_teardown)


def test_shape_comparison_is_not_vacuous():
    """The compared parts are substantial and include the three outcomes ctid relies on."""
    real_scenario, real_teardown = split_capture((CAPTURES / "park-redirect.txt").read_bytes())
    lines = shape(real_scenario)
    assert len(lines) > 120 and len(shape(real_teardown)) > 15
    assert any("Dialstatus=CHANUNAVAIL" in line for line in lines)
    assert any("Dialstatus=NOANSWER" in line for line in lines)
    assert any("DialStatus=ANSWER" in line and "agents" in line for line in lines)
    assert sum(line.startswith("Event=BridgeEnter") for line in lines) == 2
