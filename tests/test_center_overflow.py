"""Queue overflow (队列溢出路由): a call waiting past max_wait is routed by the overflow rule (no sockets)."""

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from ctid.acd import ACD, QueueConfig, WaitingCall
from ctid.agents import AgentBoard
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
external = "4008203333"

[[rules]]
name = "default"
queue = "general"
"""


class RecordingPBX:
    """Records redirects (the only action overflow uses)."""

    def __init__(self):
        self.redirects = []

    def redirect(self, channel, context, exten, priority=1, extra_channel=None):
        self.redirects.append((channel, context, exten))
        return succeed(None)


class Desk:
    def notify(self, agent_id, event, data):
        pass


def center_with_waiting_calls(*callers):
    clock = Clock()
    queues = [QueueConfig("general", "accounts", max_wait=30), QueueConfig("experts", "experts")]
    acd = ACD(queues, clock)
    pbx = RecordingPBX()
    center = CallCenter(CallModel(clock), AgentBoard(clock), acd, pbx, Desk(), "general", 15, clock,
                        routes=parse_routes(ROUTES, "routes.toml", {"general", "experts"}))
    for n, caller in enumerate(callers):
        waiting = WaitingCall(f"c{n}", "general", caller=caller)
        acd.enqueue(waiting)
        center.deliveries[waiting.call_id] = Delivery(waiting, f"PJSIP/trunk-0000000{n}")
    return center, clock, pbx


def test_overflow_rules_move_or_send_out_calls_past_max_wait():
    """Past max_wait the overflow rules apply: a 139 caller moves to experts, another goes to the external line."""
    center, clock, pbx = center_with_waiting_calls("13900000001", "13800000002")
    clock.advance(29)
    center._tick()
    assert center.acd.queue_length("general") == 2 and pbx.redirects == []
    clock.advance(2)
    center._tick()
    assert center.acd.queue_length("experts") == 1 and center.acd.call("c0").queue == "experts"
    assert pbx.redirects == [("PJSIP/trunk-00000001", "ctid-out", "4008203333")]
    assert set(center.deliveries) == {"c0"}
