"""Queue events recorded when they happen: a call waiting past max_wait leaves ``timeout``, then its overflow."""

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from ctid.acd import ACD, QueueConfig, WaitingCall
from ctid.agents import AgentBoard
from ctid.callevents import CallStarted
from ctid.callrecords import CallRecorder
from ctid.calls import CallModel
from ctid.center import CallCenter
from ctid.delivery import Delivery
from ctid.routeload import parse_routes

ROUTES = """
timezone = "Asia/Shanghai"

[[rules]]
name = "spill"
state = "overflow"
caller = ["139*"]
queue = "experts"

[[rules]]
name = "far-away"
state = "overflow"
caller = ["138*"]
external = "4008203333"

[[rules]]
name = "default"
queue = "general"
"""


class PBX:
    """Takes redirects (the only action an overflow uses)."""

    def redirect(self, channel, context, exten, priority=1, extra_channel=None):
        return succeed(None)


class Desk:
    def notify(self, agent_id, event, data):
        pass


class Sink:
    """Keeps the rows written."""

    def __init__(self):
        self.rows = []

    def write(self, table, row):
        self.rows.append((table, row))


def recorded_center(*callers):
    """A center with ``callers`` waiting in ``general`` (max_wait 30 s) and a recorder following them."""
    clock = Clock()
    acd = ACD([QueueConfig("general", "accounts", max_wait=30), QueueConfig("experts", "experts")], clock)
    model = CallModel(clock)
    center = CallCenter(model, AgentBoard(clock), acd, PBX(), Desk(), "general", 15, clock,
                        routes=parse_routes(ROUTES, "routes.toml", {"general", "experts"}))
    sink = Sink()
    recorder = CallRecorder(model, None, center, sink, clock, None)
    for n, caller in enumerate(callers):
        waiting = WaitingCall(f"c{n}", "general", caller=caller)
        acd.enqueue(waiting)
        center.deliveries[waiting.call_id] = Delivery(waiting, f"PJSIP/trunk-0000000{n}")
        recorder.event(CallStarted(f"c{n}", caller, "95566", clock.seconds()))
    return center, clock, sink


def queue_events(sink):
    return [(row["call_id"], row["kind"], row["queue"], row["wait_s"], row["detail"]) for table, row in sink.rows
            if table == "queue_events"]


def test_waiting_past_max_wait_records_timeout_then_overflow_at_once():
    """At the tick that finds them expired: timeout in general, then overflow to experts or out of the queue."""
    center, clock, sink = recorded_center("13900000001", "13800000002", "13700000003")
    assert [e[:2] for e in queue_events(sink)] == [("c0", "enqueue"), ("c1", "enqueue"), ("c2", "enqueue")]
    clock.advance(31)
    center._tick()
    clock.advance(0)  # the recorder looks at what the overflow rule did in the same turn
    assert queue_events(sink)[3:] == [
        ("c0", "timeout", "general", 31.0, "max_wait of general"),
        ("c1", "timeout", "general", 31.0, "max_wait of general"),
        ("c2", "timeout", "general", 31.0, "max_wait of general"),
        ("c0", "overflow", "general", 31.0, "to experts"),
        ("c1", "external", "general", 31.0, ""),
    ]


def test_a_call_the_recorder_never_saw_queued_leaves_no_timeout():
    """Only calls the recorder follows get rows: an unknown call id expiring writes nothing."""
    center, clock, sink = recorded_center()
    waiting = WaitingCall("stranger", "general", caller="13900000001")
    center.acd.enqueue(waiting)
    center.deliveries["stranger"] = Delivery(waiting, "PJSIP/trunk-00000009")
    clock.advance(31)
    center._tick()
    clock.advance(0)
    assert queue_events(sink) == []
