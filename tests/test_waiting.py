"""Waiting callers end to end: announcements of place and wait, voice messages, call-backs (virtual hold)."""

import pytest
import pytest_twisted

from ctid.adapters.pbxsim.testing import EventRecorder
from ctid.calls import CallEnded
from tests.test_center import signed_in, states

NO_IVR = pytest.mark.sim(agi_script="queue")
CHOICES = "announce_every = 10\noffer_voicemail = yes\noffer_callback = yes\ncallback_retry = 1\ncallback_ring = 3\n"


def center_of(daemon):
    return daemon.root.getServiceNamed("center")


def agi_commands(seen, channel):
    return [e.get("Command") for e in seen.of("AGIExecStart", Channel=channel)]


@pytest.mark.queue("announce_every = 10\n")
@NO_IVR
@pytest_twisted.ensureDeferred
async def test_waiting_caller_hears_place_and_estimated_wait_then_keeps_waiting(daemon):
    """All busy: the caller is sent to ctid-announce, hears "number 1 in line", and is back in the queue."""
    seen = EventRecorder(daemon.world)
    center = center_of(daemon)
    trunk = daemon.call_in("13800138030", "95566", patience=60)
    await daemon.until(lambda: 'SAY NUMBER "1" ""' in agi_commands(seen, trunk.name), "the place to be said")
    await daemon.until(lambda: seen.of("MusicOnHoldStart", Channel=trunk.name)
                       and not center.deliveries[trunk.linkedid].announcing, "the caller to be back on hold")
    assert center.acd.position(trunk.linkedid) == 1
    assert seen.of("AGIExecStart", Channel=trunk.name, Command='STREAM FILE "ctid/all-busy" ""')
    client, events = await signed_in(daemon, "1001")
    await daemon.until(lambda: "talking" in states(events), "an agent to take the call")
    await client.close()


@pytest.mark.queue(CHOICES)
@NO_IVR
@pytest_twisted.ensureDeferred
async def test_caller_leaves_a_voice_message_instead_of_waiting(daemon):
    """Key 1 during the announcement: the message is recorded, reported, and the call leaves the queue."""
    center = center_of(daemon)
    messages = []
    center.on_voice_message = messages.append
    trunk = daemon.call_in("13800138031", "95566", script="1", patience=60)
    await daemon.until(lambda: messages, "the voice message", timeout=30)
    (message,) = messages
    assert (message.call_id, message.caller, message.mailbox) == (trunk.linkedid, "13800138031", "general")
    assert message.path == f"ctid-voicemail/general/{trunk.linkedid}"
    await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the caller to be hung up")
    assert center.acd.queue_length("general") == 0 and not center.deliveries


@pytest.mark.queue(CHOICES)
@NO_IVR
@pytest_twisted.ensureDeferred
async def test_call_back_keeps_the_place_and_rings_the_customer_when_an_agent_is_free(daemon):
    """Virtual hold: key 2 then 1 (own number); the caller hangs up, keeps place 1; an agent frees up →
    the agent is reserved, the customer is called back on the trunk and put through to that agent."""
    seen = EventRecorder(daemon.world)
    center = center_of(daemon)
    trunk = daemon.call_in("13800138032", "95566", script="21", patience=60)
    second = daemon.call_in("13800138033", "95566", patience=60)
    await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the caller to hang up after booking",
                       timeout=30)
    assert center.deliveries[trunk.linkedid].callback == "13800138032"
    await daemon.until(lambda: center.acd.call(second.linkedid), "the second caller to wait")
    assert center.acd.position(trunk.linkedid) == 1 and center.acd.position(second.linkedid) == 2
    client, events = await signed_in(daemon, "1001")
    await daemon.until(lambda: "talking" in states(events), "the agent to talk to the called-back customer")
    (pop, *_) = [e.data for e in events if e.name == "Delivered"]
    assert pop["callback"] == "13800138032" and pop["call"] == f"ctid-cb-{trunk.linkedid}-1"
    assert [e for e in seen.of("Newchannel") if e.get("Channel").startswith("Local/13800138032@ctid-out-")]
    await client.close()


@pytest.mark.queue(CHOICES + "callback_attempts = 2\n")
@pytest.mark.sim(no_answer_rate="1", agi_script="queue")
@pytest_twisted.ensureDeferred
async def test_call_back_that_nobody_answers_releases_the_agent_and_is_given_up_after_its_tries(daemon):
    """The customer does not answer: the agent is released each time; after 2 tries the call-back is dropped."""
    center = center_of(daemon)
    trunk = daemon.call_in("13800138034", "95566", script="21", patience=60)
    await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the caller to hang up after booking",
                       timeout=30)
    client, events = await signed_in(daemon, "1001")
    await daemon.until(lambda: not center.deliveries, "the call-back to be given up", timeout=30)
    assert states(events).count("reserved") == 2 and states(events)[-1] == "ready"
    await client.close()


VOICEMAIL_ROUTES = """
timezone = "Asia/Shanghai"

[[rules]]
name = "complaints line"
called = ["95567"]
voicemail = "complaints"

[[rules]]
name = "everyone else"
queue = "general"
"""


@pytest.mark.routes(VOICEMAIL_ROUTES)
@NO_IVR
@pytest_twisted.ensureDeferred
async def test_voicemail_route_target_records_a_message_in_its_mailbox(daemon):
    """A route rule's voicemail target: the caller is sent to ctid-voicemail and its message is recorded."""
    center = center_of(daemon)
    messages = []
    center.on_voice_message = messages.append
    trunk = daemon.call_in("13800138035", "95567", patience=60)
    await daemon.until(lambda: messages, "the voice message", timeout=30)
    assert (messages[0].call_id, messages[0].mailbox) == (trunk.linkedid, "complaints")
    await daemon.until(lambda: daemon.of(CallEnded, call_id=trunk.linkedid), "the call to end")


IVR_ROUTES = """
timezone = "Asia/Shanghai"

[[rules]]
name = "survey line"
called = ["95568"]
ivr = "survey"

[[rules]]
name = "everyone else"
queue = "general"
"""


@pytest.mark.routes(IVR_ROUTES)
@pytest.mark.ivr
@NO_IVR
@pytest_twisted.ensureDeferred
async def test_ivr_route_target_runs_the_named_flow(daemon):
    """A route rule's IVR target: CTID_FLOW is set, the caller is redirected to ctid-ivr and the flow runs."""
    seen = EventRecorder(daemon.world)
    trunk = daemon.call_in("13800138036", "95568", script="4", patience=60)
    await daemon.until(lambda: trunk.variables.get("CTID_SATISFACTION") == "4", "the survey flow's score",
                       timeout=30)
    assert trunk.variables["CTID_FLOW"] == "survey"
    assert seen.of("Newexten", Channel=trunk.name, Context="ctid-ivr")
