"""The call center at work: parked callers are queued and delivered to agents.

Park and redirect (DESIGN.md): a caller who reaches ``ctid-wait`` sets
``CTID_PARKED=1`` on its channel; the :class:`CallCenter` queues the call in
the ACD: the route rules (``[acd] routes``) pick the queue, the priority and
data to attach — or send the caller to an external number; without rules the
queue is ``CTID_QUEUE`` or the default.  The rules are asked again when the
queue is all busy on arrival (``all_busy``), when an agent lets the call ring
out (``no_answer``) and when it waits past the queue's ``max_wait``
(``overflow``).  When the ACD pairs it
with an agent, the agent is reserved, the desktop gets a ``Delivered``
screen pop, and the switch is told ``Setvar CTID_TARGET`` (the agent's
station), ``Setvar CTID_RING`` and ``Redirect`` to ``ctid-deliver``.  The
outcome comes back as call-model events:

- the agent's leg appears → the agent is ringing;
- the call is answered (caller and agent bridged) → talking;
- ``DeliveryFailed NOANSWER`` → the agent is locked (ring-no-answer) and the
  call goes back to the head of its queue; BUSY/CHANUNAVAIL → the agent is
  paused ("phone unreachable") and the call goes back to the head;
- the caller hangs up while waiting → abandoned; the call ends → the agent
  goes to wrap-up.

Calls the ACD did not deliver — a customer dialling an agent's direct line,
an agent dialling out — are followed on the agent's phone too, so a busy
phone is never offered a queued call: ringing, talking, wrap-up as usual.

Pure coordination: no sockets, no SQL; the switch is reached through IPBX.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ctid.acd import ACD, AgentInfo, Offer, WaitingCall
from ctid.agents import Agent, AgentBoard
from ctid.agentstate import AgentRecord, AgentStateError
from ctid.announce import VoiceMessage
from ctid.calls import (
    CallAnswered,
    CallEnded,
    CallModel,
    DeliveryFailed,
    LegAdded,
    LegRemoved,
    OriginateFailed,
    VariableSet,
)
from ctid.contexts import (
    DELIVER_CONTEXT,
    HIDDEN_VARIABLES,
    IVR_CONTEXT,
    OUT_CONTEXT,
    VOICEMAIL_CONTEXT,
)
from ctid.customers import CustomerProfile, redact
from ctid.delivery import Delivery
from ctid.interfaces import IPBX, ICustomerDirectory
from ctid.routing import CallFacts, Route, RouteTable
from ctid.waitpolicy import WaitPolicy
from ctid.waitroom import FIRST_ANNOUNCEMENT, WaitingRoom

log = Logger()

class CallCenter(WaitingRoom, Service):
    """Couples the call model, the agent board and the ACD, and drives the switch.

    While running it ticks the ACD every ``tick_interval`` seconds so calls
    whose local-preference wait is over can go to agents of other cities.
    """

    name = "center"

    def __init__(self, model: CallModel, board: AgentBoard, acd: ACD, pbx: IPBX, desk: Any,
                 default_queue: str, ring_time: int, clock: Any, tick_interval: float = 1.0,
                 customers: ICustomerDirectory | None = None, lookup_timeout: float = 0.5,
                 routes: RouteTable | None = None, wait_policy: Callable[[str], WaitPolicy] | None = None,
                 on_voice_message: Callable[[VoiceMessage], None] | None = None):
        self.routes = routes
        self.wait_policy = wait_policy or (lambda queue: WaitPolicy())
        self.on_voice_message = on_voice_message
        self.by_channel: dict[str, str] = {}  # waiting caller's channel name -> call id
        self.mailboxes: dict[str, tuple[str, str, str]] = {}  # channel name -> (call id, caller, mailbox)
        self.flows_run: dict[str, set[str]] = {}  # call id -> IVR flows a route rule already sent it to
        #: The survey flow callers go to when their agent hangs up (CTID_SURVEY=1 at delivery); None: no survey.
        self.survey_flow: str | None = None
        self.customers = customers
        self.lookup_timeout = lookup_timeout
        self.tick_interval = tick_interval
        self._ticker: LoopingCall | None = None
        self.model, self.board, self.acd, self.pbx, self.desk = model, board, acd, pbx, desk
        self.default_queue = default_queue
        self.ring_time = ring_time
        self.clock = clock
        self.deliveries: dict[str, Delivery] = {}
        self.on_expired: list[Callable[[str, str], None]] = []  # (call id, queue): it waited past max_wait
        self.direct: dict[str, tuple[str, str]] = {}  # agent's channel uniqueid -> (agent_id, call_id)
        self._handlers: dict[type, Callable[[Any], None]] = {
            VariableSet: self._on_variable,
            LegAdded: self._on_leg,
            CallAnswered: self._on_answered,
            DeliveryFailed: self._on_delivery_failed,
            OriginateFailed: self._on_originate_failed,
            CallEnded: self._on_ended,
            LegRemoved: self._on_leg_removed,
        }
        model.subscribe(self._on_call_event)
        board.subscribe(self._on_agent_record)

    def startService(self) -> None:
        super().startService()
        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = self.clock
        self._ticker.start(self.tick_interval, now=False).addErrback(
            lambda failure: log.failure("ACD ticker stopped", failure))

    def stopService(self) -> None:
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        self._ticker = None
        return super().stopService()

    def _tick(self) -> None:
        try:
            for offer in self.acd.tick():
                self._deliver(offer)
            for waiting in self.acd.expired():
                self._overflow(waiting)
        except Exception:
            log.failure("ACD tick failed")

    def _overflow(self, waiting: WaitingCall) -> None:
        """A call waited past its queue's ``max_wait``: the overflow rule decides (else it waits on)."""
        delivery = self.deliveries.get(waiting.call_id)
        if delivery is None:
            return
        for hook in self.on_expired:
            hook(waiting.call_id, waiting.queue)
        route = self._situation(delivery, "overflow")
        if route is not None and route.kind != "queue":
            self._leave_queue(delivery, route)
            return
        if route is not None:
            waiting.queue = route.target
        log.info("call {call_id} overflows to {queue}", call_id=waiting.call_id, queue=waiting.queue)
        offer = self.acd.enqueue(waiting)
        if offer is not None:
            self._deliver(offer)
        elif not delivery.announcing:
            self._plan_announcement(delivery)

    # -- agents -------------------------------------------------------------------------------------------

    def _on_agent_record(self, record: AgentRecord) -> None:
        if not record.available:
            self.acd.agent_unavailable(record.agent_id)
            return
        agent = self._agent(record.agent_id)
        stats = agent.stats
        info = AgentInfo(agent.agent_id, agent.skills, agent.city or "", stats.idle_since or self.clock.seconds(),
                         stats.answered, stats.talk_time_total, stats.idle_time_total, stats.idle_periods)
        for offer in self.acd.agent_available(info):
            self._deliver(offer)

    # -- calls --------------------------------------------------------------------------------------------

    def _on_call_event(self, event: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _on_variable(self, event: VariableSet) -> None:
        if event.name != "CTID_PARKED" or event.value != "1":
            return
        delivery = self.deliveries.get(event.call_id)
        if delivery is not None:
            if delivery.channel is None and delivery.agent_id is not None:
                self._callback_answered(delivery, event.uniqueid)
            return
        channel = self.model.channels.get(event.uniqueid)
        call = self.model.calls.get(event.call_id)
        if channel is None or call is None:
            return
        data = {k: v for k, v in channel.variables.items() if k.startswith("CTID_") and k not in HIDDEN_VARIABLES}
        route = self._route(call.ani, call.dnis, data)
        if route is not None and route.kind == "ivr" and route.target in self.flows_run.get(event.call_id, ()):
            route = None  # back from the flow the rules sent it to: it asked for an agent
        queue = route.target if route is not None and route.kind == "queue" else None
        if queue is not None and self.acd.all_busy(queue):
            route = self._route(call.ani, call.dnis, data, "all_busy") or route
        if route is not None and route.kind != "queue":
            self._send_elsewhere(event.call_id, channel.name, call.ani or "", route)
            return
        queue = route.target if route is not None else channel.variables.get("CTID_QUEUE") or self.default_queue
        priority = None
        if route is not None:
            data.update(route.data)
            priority = route.priority
        waiting = WaitingCall(event.call_id, queue, caller=call.ani or "", data=data, priority=priority)
        try:
            offer = self.acd.enqueue(waiting)
        except (KeyError, ValueError) as e:
            log.warn("call {call_id} could not be queued in {queue}: {error}", call_id=event.call_id, queue=queue,
                     error=str(e))
            return
        delivery = self.deliveries[event.call_id] = Delivery(waiting, channel.name)
        self.by_channel[channel.name] = event.call_id
        log.info("call {call_id} from {ani} queued in {queue}", call_id=event.call_id, ani=call.ani, queue=queue)
        if offer is not None:
            self._deliver(offer)
        else:
            self._plan_announcement(delivery, FIRST_ANNOUNCEMENT)

    def _route(self, ani: str | None, dnis: str | None, data: dict[str, str], state: str = "arrival") -> Route | None:
        """The route rules' answer for a call in ``state`` (None: no rules file, or no rule for that state)."""
        if self.routes is None:
            return None
        now = datetime.fromtimestamp(self.clock.seconds(), UTC)
        route = self.routes.route(CallFacts(ani or "", dnis or "", data), now, state)
        if route is not None:
            log.debug("route {rule} for {ani} → {dnis}: {kind} {target}", rule=route.rule, ani=ani, dnis=dnis,
                      kind=route.kind, target=route.target)
        return route

    def _situation(self, delivery: Delivery, state: str) -> Route | None:
        """Ask the route rules about a queued call that met ``state`` (no_answer, overflow)."""
        call = self.model.calls.get(delivery.waiting.call_id)
        ani = call.ani if call else delivery.waiting.caller
        return self._route(ani, call.dnis if call else None, dict(delivery.waiting.data), state)

    def _send_elsewhere(self, call_id: str, channel: str, caller: str, route: Route) -> None:
        """A route to an external number, an IVR flow or a voicemail box (not a queue)."""
        log.info("call {call_id} routed by {rule} to {kind} {target}", call_id=call_id, rule=route.rule,
                 kind=route.kind, target=route.target)
        if route.kind == "external":
            sent = self.pbx.redirect(channel, OUT_CONTEXT, route.target)
        elif route.kind == "ivr":
            self.flows_run.setdefault(call_id, set()).add(route.target)
            sent = self._send_to(channel, IVR_CONTEXT, "CTID_FLOW", route.target)
        else:
            self.mailboxes[channel] = (call_id, caller, route.target)
            sent = self._send_to(channel, VOICEMAIL_CONTEXT, "CTID_MAILBOX", route.target)
        sent.addErrback(lambda failure: log.warn("call {call_id}: could not send it to {kind} {target}: {error}",
                                                 call_id=call_id, kind=route.kind, target=route.target,
                                                 error=failure.getErrorMessage()))

    def _send_to(self, channel: str, context: str, variable: str, value: str) -> Deferred[None]:
        async def go() -> None:
            await self.pbx.set_variable(channel, variable, value)
            await self.pbx.redirect(channel, context, "s")
        return Deferred.fromCoroutine(go())

    def _leave_queue(self, delivery: Delivery, route: Route) -> None:
        """A queued call that a situation rule sends out of the ACD (not to another queue)."""
        call_id, channel = delivery.waiting.call_id, delivery.channel
        self._forget(delivery)
        self.acd.abandon(call_id)
        if channel is not None:
            self._send_elsewhere(call_id, channel, delivery.waiting.caller, route)

    def deliver(self, offer: Offer) -> None:
        """Deliver an offer the ACD made outside the center (a supervisor moved a waiting call)."""
        self._deliver(offer)

    def _deliver(self, offer: Offer) -> None:
        delivery = self.deliveries.get(offer.call.call_id)
        if delivery is None:
            return
        if delivery.callback is not None:
            self._place_callback(delivery, offer)
            return
        agent_id, call_id = offer.agent_id, offer.call.call_id
        try:
            self.board.reserve(agent_id, call_id)
        except AgentStateError as e:
            log.warn("agent {agent} could not take call {call_id}: {error}", agent=agent_id, call_id=call_id,
                     error=e.message)
            self._requeue(delivery)
            return
        self._cancel_timer(delivery)
        delivery.agent_id = agent_id
        station = self._agent(agent_id).station
        Deferred.fromCoroutine(self._pop(agent_id, offer)).addErrback(
            lambda failure: log.failure("screen pop for call {call_id} failed", failure, call_id=call_id))
        log.info("call {call_id} offered to agent {agent} on {station} after {waited:.1f}s",
                 call_id=call_id, agent=agent_id, station=station, waited=offer.waited)
        if delivery.announcing:
            delivery.held_station = station  # sent on when the announcement ends (it ends early)
            return
        self._send_to_agent(delivery, station)

    def _send_to_agent(self, delivery: Delivery, station: str) -> None:
        assert delivery.channel is not None
        Deferred.fromCoroutine(self._redirect(delivery.channel, station)).addErrback(
            self._redirect_failed, delivery)

    async def _pop(self, agent_id: str, offer: Offer) -> None:
        """Send the agent the Delivered screen pop, with the customer's profile when found in time."""
        call = self.model.calls.get(offer.call.call_id)
        ani = call.ani if call else offer.call.caller
        pop = {
            "call": offer.call.call_id,
            "ani": ani,
            "dnis": call.dnis if call else None,
            "queue": offer.queue,
            "waited": round(offer.waited, 1),
            "priority": offer.call.priority,
            "callback": self.deliveries[offer.call.call_id].callback if offer.call.call_id in self.deliveries
            else None,
            "data": {name: redact(value) for name, value in offer.call.data.items()},
            "customer": None,
        }
        profile = await self._lookup(ani, offer.call.data)
        if profile is not None:
            pop["customer"] = profile.as_dict()
        self.desk.notify(agent_id, "Delivered", pop)

    async def _lookup(self, ani: str | None, data: Any) -> CustomerProfile | None:
        if self.customers is None:
            return None
        lookup = self.customers.lookup(caller=ani or None, customer_id=data.get("CTID_CUSTOMER") or None)
        try:
            return await lookup.addTimeout(self.lookup_timeout, self.clock)
        except Exception as e:  # timeout or directory trouble: the pop goes out without the profile
            log.warn("customer lookup for {ani} gave nothing: {error}", ani=ani, error=repr(e))
            return None

    async def _redirect(self, channel: str, station: str) -> None:
        await self.pbx.set_variable(channel, "CTID_TARGET", station)
        await self.pbx.set_variable(channel, "CTID_RING", str(self.ring_time))
        if self.survey_flow is not None:  # ctid-answered sends the caller to it when the agent hangs up
            await self.pbx.set_variable(channel, "CTID_SURVEY", "1")
            await self.pbx.set_variable(channel, "CTID_FLOW", self.survey_flow)
        await self.pbx.redirect(channel, DELIVER_CONTEXT, "s")

    def _redirect_failed(self, failure: Failure, delivery: Delivery) -> None:
        log.warn("delivery of call {call_id} to {agent} failed: {error}", call_id=delivery.waiting.call_id,
                 agent=delivery.agent_id, error=failure.getErrorMessage())
        agent_id, delivery.agent_id = delivery.agent_id, None
        if delivery.waiting.call_id in self.deliveries:
            self._requeue(delivery)
        if agent_id is not None:
            self._release(agent_id, delivery.waiting.call_id)

    def _requeue(self, delivery: Delivery) -> None:
        offer = self.acd.requeue_at_head(delivery.waiting)
        if offer is not None:
            self._deliver(offer)
        else:
            self._plan_announcement(delivery)

    def _agent(self, agent_id: str) -> Agent:
        """The board's agent ``agent_id``, who is known to it (it holds or was offered a call)."""
        agent = self.board.get(agent_id)
        assert agent is not None
        return agent

    def _release(self, agent_id: str, call_id: str) -> None:
        try:
            self.board.offer_cancelled(agent_id, call_id)
        except AgentStateError:
            pass  # the agent moved on (signed out by a supervisor, …): nothing to withdraw

    def _on_leg(self, event: LegAdded) -> None:
        agent = self.board.by_station(event.channel.rsplit("-", 1)[0])
        if agent is None:
            return
        delivery = self.deliveries.get(event.call_id)
        if delivery is not None and delivery.agent_id == agent.agent_id:
            if delivery.answered_at is None:
                self._signal(self.board.ringing, delivery)
        elif agent.available:
            self._direct(agent.agent_id, event)

    def _direct(self, agent_id: str, event: LegAdded) -> None:
        """A call on the agent's phone that the ACD did not deliver (direct dial, or dialled out)."""
        try:
            self.board.reserve(agent_id, event.call_id)
            self.board.ringing(agent_id, event.call_id)
        except AgentStateError as e:
            log.warn("agent {agent}: direct call {call_id} not tracked: {error}", agent=agent_id,
                     call_id=event.call_id, error=e.message)
            return
        self.direct[event.uniqueid] = (agent_id, event.call_id)

    def _on_leg_removed(self, event: LegRemoved) -> None:
        entry = self.direct.pop(event.uniqueid, None)
        if entry is None:
            return
        agent_id, call_id = entry
        agent = self.board.get(agent_id)
        if agent is None or agent.call_id != call_id:
            return
        try:
            if agent.state.value in ("reserved", "ringing"):
                self.board.offer_cancelled(agent_id, call_id)
            else:
                self.board.call_ended(agent_id, call_id)
        except AgentStateError as e:
            log.warn("agent {agent} after direct call {call_id}: {error}", agent=agent_id, call_id=call_id,
                     error=e.message)

    def _on_answered(self, event: CallAnswered) -> None:
        for agent_id, call_id in list(self.direct.values()):
            if call_id == event.call_id and self._agent(agent_id).state.value == "ringing":
                try:
                    self.board.answered(agent_id, call_id)
                except AgentStateError as e:
                    log.warn("agent {agent}: {error}", agent=agent_id, error=e.message)
        delivery = self.deliveries.get(event.call_id)
        if delivery is None or delivery.agent_id is None:
            return
        delivery.answered_at = event.at
        waited = event.at - (delivery.waiting.enqueued_at or event.at)
        self.acd.call_answered(delivery.waiting.queue, waited)
        if self._agent(delivery.agent_id).state.value == "reserved":
            self._signal(self.board.ringing, delivery)
        self._signal(self.board.answered, delivery)
        log.info("call {call_id} answered by agent {agent}", call_id=event.call_id, agent=delivery.agent_id)

    def _on_delivery_failed(self, event: DeliveryFailed) -> None:
        delivery = self.deliveries.get(event.call_id)
        if delivery is None or delivery.agent_id is None:
            return
        agent_id, delivery.agent_id = delivery.agent_id, None
        try:
            if event.dialstatus == "NOANSWER":
                self.board.ring_no_answer(agent_id, event.call_id)
            else:
                self.board.set_pending(agent_id, "pause", reason="phone unreachable", forced_by="acd")
                self.board.offer_cancelled(agent_id, event.call_id)
        except AgentStateError as e:
            log.warn("agent {agent} after a failed delivery: {error}", agent=agent_id, error=e.message)
        route = self._situation(delivery, "no_answer")
        if route is not None and route.kind != "queue":
            self._leave_queue(delivery, route)
            return
        log.info("call {call_id}: agent {agent} did not answer ({status}); back to the head of {queue}",
                 call_id=event.call_id, agent=agent_id, status=event.dialstatus, queue=delivery.waiting.queue)
        self._requeue(delivery)
        if route is not None and route.target != delivery.waiting.queue and self.acd.call(event.call_id):
            offer = self.acd.move(event.call_id, route.target)
            if offer is not None:
                self._deliver(offer)

    def _on_ended(self, event: CallEnded) -> None:
        self.flows_run.pop(event.call_id, None)
        delivery = self.deliveries.get(event.call_id)
        if delivery is None:
            return
        if delivery.callback is not None:
            if delivery.agent_id is None:  # the caller hung up after booking: the place in line is kept
                self._forget_channel(delivery)
                log.info("call {call_id}: call-back to {number} keeps place {position} in {queue}",
                         call_id=event.call_id, number=delivery.callback, queue=delivery.waiting.queue,
                         position=self.acd.position(event.call_id))
            else:
                self._callback_failed(delivery, "the call-back ended before it reached the agent")
            return
        self._forget(delivery)
        agent_id = delivery.agent_id
        if delivery.answered_at is not None and agent_id is not None:
            self.acd.call_completed(delivery.waiting.queue, event.at - delivery.answered_at)
            self._signal(self.board.call_ended, delivery)
            return
        if delivery.answered_at is not None:  # served, then handed on (the survey): nobody to release
            return
        self.acd.abandon(event.call_id)
        if agent_id is not None:
            self._release(agent_id, event.call_id)
        log.info("call {call_id} abandoned while waiting in {queue}", call_id=event.call_id,
                 queue=delivery.waiting.queue)

    def _forget(self, delivery: Delivery) -> None:
        """Drop a delivery: its timers, its channel index, its entry."""
        self._cancel_timer(delivery)
        self._forget_channel(delivery)
        self.deliveries.pop(delivery.waiting.call_id, None)

    def _forget_channel(self, delivery: Delivery) -> None:
        if delivery.channel is not None:
            self.by_channel.pop(delivery.channel, None)
            self.mailboxes.pop(delivery.channel, None)
            delivery.channel = None

    def _cancel_timer(self, delivery: Delivery) -> None:
        if delivery.timer is not None and delivery.timer.active():
            delivery.timer.cancel()
        delivery.timer = None

    # -- calls moving between agents and queues (ctid/transfers.py) ----------------------------------------

    def hand_over(self, call_id: str, agent_id: str | None, channel: str | None = None, answered: bool = False,
                  queue: str | None = None) -> Delivery:
        """The call leaves its agent (who goes to wrap-up) for ``agent_id`` (None: nobody yet).

        ``channel`` is the customer's leg, for a call the center never queued
        (a direct call: it gets a delivery in ``queue`` or the default queue).
        """
        delivery = self.deliveries.get(call_id)
        if delivery is None:
            call = self.model.calls.get(call_id)
            delivery = self.deliveries[call_id] = Delivery(
                WaitingCall(call_id, queue or self.default_queue, caller=(call.ani if call else None) or ""), channel)
        old, delivery.agent_id = delivery.agent_id, agent_id
        delivery.answered_at = self.clock.seconds() if answered else None
        if channel is not None and delivery.channel is None:
            delivery.channel = channel
            self.by_channel[channel] = call_id
        for uniqueid, (direct_agent, direct_call) in list(self.direct.items()):
            if direct_call == call_id:
                old = old or direct_agent
                del self.direct[uniqueid]
        if old is not None and old != agent_id:
            self._signal(self.board.call_ended, Delivery(delivery.waiting, None, old))
        return delivery

    def requeue(self, call_id: str, queue: str, channel: str, data: dict[str, str]) -> None:
        """A transferred call (parked in ``ctid-wait``) waits again in ``queue`` with ``data``."""
        delivery = self.hand_over(call_id, None, channel, queue=queue)
        self.by_channel[channel] = call_id
        delivery.channel = channel
        waiting = WaitingCall(call_id, queue, caller=delivery.waiting.caller, data=data)
        delivery.waiting = waiting
        self.acd.abandon(call_id)
        offer = self.acd.enqueue(waiting)
        if offer is not None:
            self._deliver(offer)
        else:
            self._plan_announcement(delivery, FIRST_ANNOUNCEMENT)

    def release(self, call_id: str) -> None:
        """The call leaves the center (sent to a number or an IVR flow): its agent goes to wrap-up."""
        delivery = self.hand_over(call_id, None)
        self._forget(delivery)

    def connected(self, call_id: str, at: float) -> None:
        """The call's new agent answered a transferred or re-queued call (the call was answered before)."""
        delivery = self.deliveries.get(call_id)
        if delivery is None or delivery.agent_id is None or delivery.answered_at is not None:
            return
        delivery.answered_at = at
        if self._agent(delivery.agent_id).state.value == "reserved":
            self._signal(self.board.ringing, delivery)
        self._signal(self.board.answered, delivery)

    def _signal(self, signal: Any, delivery: Delivery) -> None:
        try:
            signal(delivery.agent_id, delivery.waiting.call_id)
        except AgentStateError as e:
            log.warn("agent {agent} on call {call_id}: {error}", agent=delivery.agent_id,
                     call_id=delivery.waiting.call_id, error=e.message)
