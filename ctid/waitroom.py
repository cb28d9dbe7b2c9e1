"""Waiting callers: announcements of place and wait, voice messages, call-backs (virtual hold).

:class:`WaitingRoom` is the part of :class:`ctid.center.CallCenter` that
looks after callers while they wait (docs/waiting.md): it plans the
announcements (``ctid-announce``, whose ``wait`` script — ctid/announce.py —
calls back into it), takes voice messages, books call-backs and places them
when the call's turn comes.  It works on the center's deliveries, clock,
ACD, board and switch, so it is only ever mixed into ``CallCenter``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ctid.acd import Offer
from ctid.agentstate import AgentStateError
from ctid.announce import VoiceMessage, WaitInfo
from ctid.calls import OriginateFailed
from ctid.contexts import ANNOUNCE_CONTEXT, OUT_CONTEXT, WAIT_CONTEXT
from ctid.delivery import Delivery
from ctid.waitpolicy import WaitPolicy

if TYPE_CHECKING:
    from ctid.acd import ACD
    from ctid.agents import Agent, AgentBoard
    from ctid.calls import CallModel
    from ctid.interfaces import IPBX

log = Logger()

#: Seconds after queueing before the first announcement; longest an announcement may hold a call.
FIRST_ANNOUNCEMENT = 2.0
ANNOUNCEMENT_LIMIT = 90.0


class WaitingRoom:
    """Waiting callers' side of the call center (mixed into :class:`~ctid.center.CallCenter`)."""

    # What it uses of CallCenter, for the type checker only.
    deliveries: dict[str, Delivery]
    acd: ACD
    board: AgentBoard
    pbx: IPBX
    model: CallModel
    clock: Any
    by_channel: dict[str, str]
    mailboxes: dict[str, tuple[str, str, str]]
    wait_policy: Callable[[str], WaitPolicy]
    on_voice_message: Callable[[VoiceMessage], object] | None

    if TYPE_CHECKING:
        def _cancel_timer(self, delivery: Delivery) -> None: ...
        def _send_to_agent(self, delivery: Delivery, station: str) -> None: ...
        def _forget(self, delivery: Delivery) -> None: ...
        def _requeue(self, delivery: Delivery) -> None: ...
        def _release(self, agent_id: str, call_id: str) -> None: ...
        def _agent(self, agent_id: str) -> Agent: ...
        async def _pop(self, agent_id: str, offer: Offer) -> None: ...

    def _plan_announcement(self, delivery: Delivery, delay: float | None = None) -> None:
        policy = self.wait_policy(delivery.waiting.queue)
        if not policy.announce_every or delivery.channel is None:
            return
        self._cancel_timer(delivery)
        delivery.timer = self.clock.callLater(policy.announce_every if delay is None else delay,
                                              self._announce, delivery)

    def _announce(self, delivery: Delivery) -> None:
        delivery.timer = None
        if delivery.agent_id is not None or delivery.channel is None or self.acd.call(delivery.waiting.call_id) \
                is None:
            return
        delivery.announcing = True
        delivery.timer = self.clock.callLater(ANNOUNCEMENT_LIMIT, self.announcement_over, delivery.waiting.call_id)
        self.pbx.redirect(delivery.channel, ANNOUNCE_CONTEXT, "s").addErrback(
            lambda failure: self.announcement_over(delivery.waiting.call_id))

    def waiting_info(self, channel: str) -> WaitInfo | None:
        """For the ``wait`` script: the waiting call on ``channel``, its place and estimated wait."""
        call_id = self.by_channel.get(channel)
        if call_id is None:
            return None
        delivery = self.deliveries.get(call_id)
        position = self.acd.position(call_id)
        if delivery is None or position is None:
            return None
        queue = delivery.waiting.queue
        return WaitInfo(call_id, delivery.waiting.caller, queue, position, self.acd.estimated_wait(call_id),
                        self.wait_policy(queue))

    def agent_ready(self, call_id: str) -> bool:
        """Whether an agent is already reserved for ``call_id`` (the announcement stops)."""
        delivery = self.deliveries.get(call_id)
        return delivery is not None and delivery.agent_id is not None

    def announcement_over(self, call_id: str) -> None:
        """The caller is back from ``ctid-announce``: on to the reserved agent, or wait for the next one."""
        delivery = self.deliveries.get(call_id)
        if delivery is None or not delivery.announcing:
            return
        delivery.announcing = False
        self._cancel_timer(delivery)
        station, delivery.held_station = delivery.held_station, None
        if station is not None and delivery.agent_id is not None and delivery.channel is not None:
            self._send_to_agent(delivery, station)
        elif delivery.agent_id is None and delivery.callback is None:
            self._plan_announcement(delivery)

    def message_left(self, message: VoiceMessage) -> None:
        """A caller left a voice message: it leaves its queue; the message goes to the records."""
        delivery = self.deliveries.get(message.call_id)
        if delivery is not None and delivery.agent_id is None:
            self._forget(delivery)
            self.acd.abandon(message.call_id)
        if self.on_voice_message is not None:
            self.on_voice_message(message)

    def mailbox_of(self, channel: str) -> tuple[str, str, str] | None:
        """For the ``voicemail`` script: (call id, caller, mailbox) a route rule sent ``channel`` to."""
        return self.mailboxes.pop(channel, None)

    def call_back(self, call_id: str, number: str) -> bool:
        """Book a call-back to ``number`` for a waiting call (it keeps its place); False if it cannot."""
        delivery = self.deliveries.get(call_id)
        if delivery is None or delivery.agent_id is not None or self.acd.call(call_id) is None \
                or not self.wait_policy(delivery.waiting.queue).offer_callback:
            return False
        delivery.callback = number
        log.info("call {call_id}: call-back to {number} booked at place {position} in {queue}", call_id=call_id,
                 number=number, position=self.acd.position(call_id), queue=delivery.waiting.queue)
        return True

    def _place_callback(self, delivery: Delivery, offer: Offer) -> None:
        """The booked call's turn came: reserve the agent, then ring the customer (``Local/…@ctid-out``)."""
        waiting, number = delivery.waiting, delivery.callback
        assert number is not None
        delivery.attempts += 1
        old_id = waiting.call_id
        new_id = f"ctid-cb-{old_id}-{delivery.attempts}"
        try:
            self.board.reserve(offer.agent_id, new_id)
        except AgentStateError as e:
            log.warn("agent {agent} could not take call-back {call_id}: {error}", agent=offer.agent_id,
                     call_id=old_id, error=e.message)
            self._requeue(delivery)
            return
        del self.deliveries[old_id]
        waiting.call_id = new_id
        self.deliveries[new_id] = delivery
        delivery.agent_id = offer.agent_id
        Deferred.fromCoroutine(self._pop(offer.agent_id, offer)).addErrback(
            lambda failure: log.failure("screen pop for call-back {call_id} failed", failure, call_id=new_id))
        log.info("call-back {call_id}: agent {agent} reserved, calling {number} (try {attempt})", call_id=new_id,
                 agent=offer.agent_id, number=number, attempt=delivery.attempts)
        ring = self.wait_policy(waiting.queue).callback_ring
        self.pbx.originate(f"Local/{number}@{OUT_CONTEXT}/n", context=WAIT_CONTEXT, exten="s", caller_id=number,
                           timeout=ring, variables={"CTID_CALLBACK": old_id}, channel_id=new_id).addErrback(
            lambda failure: self._callback_failed(delivery, failure.getErrorMessage()))

    def _callback_answered(self, delivery: Delivery, uniqueid: str) -> None:
        """The customer answered the call-back and is parked: on to the reserved agent."""
        channel = self.model.channels.get(uniqueid)
        if channel is None or delivery.agent_id is None:
            return
        delivery.channel, delivery.callback = channel.name, None
        self.by_channel[channel.name] = delivery.waiting.call_id
        log.info("call-back {call_id}: the customer answered; ringing agent {agent}",
                 call_id=delivery.waiting.call_id, agent=delivery.agent_id)
        self._send_to_agent(delivery, self._agent(delivery.agent_id).station)

    def _on_originate_failed(self, event: OriginateFailed) -> None:
        delivery = self.deliveries.get(event.uniqueid or "")
        if delivery is not None and delivery.callback is not None and delivery.agent_id is not None:
            self._callback_failed(delivery, f"no answer (reason {event.reason})")

    def _callback_failed(self, delivery: Delivery, why: str) -> None:
        """The customer was not reached: release the agent; try again later, or give up."""
        agent_id, delivery.agent_id = delivery.agent_id, None
        if agent_id is None:
            return
        call_id = delivery.waiting.call_id
        self._release(agent_id, call_id)
        policy = self.wait_policy(delivery.waiting.queue)
        if delivery.attempts >= policy.callback_attempts:
            self._forget(delivery)
            log.warn("call-back {call_id} to {number} given up after {attempts} tries: {why}", call_id=call_id,
                     number=delivery.callback, attempts=delivery.attempts, why=why)
            return
        log.info("call-back {call_id} to {number} failed ({why}); next try in {retry:.0f}s", call_id=call_id,
                 number=delivery.callback, why=why, retry=policy.callback_retry)
        delivery.timer = self.clock.callLater(policy.callback_retry, self._retry_callback, delivery)

    def _retry_callback(self, delivery: Delivery) -> None:
        delivery.timer = None
        if self.deliveries.get(delivery.waiting.call_id) is delivery:
            self._requeue(delivery)
