"""The simulated population: seeded, reproducible traffic on a Clock."""

from __future__ import annotations

import random
import re

import pytest
from twisted.internet.task import Clock

from ctid.adapters.pbxsim.population import Population, TrafficGenerator, dtmf_script, phone_number
from ctid.adapters.pbxsim.service import build_world
from ctid.adapters.pbxsim.settings import SimulatorSettings
from ctid.adapters.pbxsim.testing import START, EventRecorder, advance


def traffic(settings: SimulatorSettings):
    """A World with the population's phones and a started TrafficGenerator (no AGI server: IVR fails over)."""
    clock = Clock()
    clock.advance(START)
    world = build_world(settings, clock)
    population = Population(world, settings)
    generator = TrafficGenerator(world, population, settings)
    generator.startService()
    return world, clock, population, generator


def test_same_seed_same_arrivals_other_seed_other_arrivals():
    """Two runs with one seed produce the same arrival times, kinds and numbers; another seed differs."""
    settings = SimulatorSettings(seed=42, calls_per_minute=20, outbound_share=0.2)
    runs = []
    for seed in (42, 42, 43):
        world, clock, _, generator = traffic(SimulatorSettings(**{**settings.__dict__, "seed": seed}))
        advance(clock, 300)
        runs.append(generator.arrivals)
    assert len(runs[0]) > 50
    assert runs[0] == runs[1]
    assert runs[0][:10] != runs[2][:10]
    assert {a.kind for a in runs[0]} == {"ivr", "direct", "outbound"}


def test_event_stream_reproduces_for_a_seed():
    """With the same seed (and nobody steering the calls) the whole AMI event stream repeats."""
    streams = []
    for _ in range(2):
        world, clock, _, generator = traffic(SimulatorSettings(seed=5, calls_per_minute=12))
        rec = EventRecorder(world)
        advance(clock, 120)
        streams.append([(e.name, e.pairs) for e in rec.events])
    assert len(streams[0]) > 100 and streams[0] == streams[1]


def test_poisson_rate_and_max_calls():
    """About calls_per_minute arrivals per minute; max_calls stops the generator."""
    world, clock, _, generator = traffic(SimulatorSettings(calls_per_minute=30, seed=3))
    advance(clock, 600)
    assert 240 <= len(generator.arrivals) <= 360
    world, clock, _, generator = traffic(SimulatorSettings(calls_per_minute=60, max_calls=7))
    advance(clock, 600)
    assert len(generator.arrivals) == 7


def test_rate_can_change_while_running():
    """set_rate(0) pauses the arrivals; a new rate resumes them (config reload)."""
    world, clock, _, generator = traffic(SimulatorSettings(calls_per_minute=60, seed=4))
    advance(clock, 60)
    generator.set_rate(0)
    paused_at = len(generator.arrivals)
    advance(clock, 120)
    assert len(generator.arrivals) == paused_at
    generator.set_rate(120)
    advance(clock, 60)
    assert len(generator.arrivals) - paused_at > 80


def test_every_call_ends_and_nothing_leaks():
    """After the traffic stops, callers give up or finish talking: no channel or bridge is left."""
    settings = SimulatorSettings(calls_per_minute=30, seed=9, patience=(10, 40), talk_time=(5, 30), hold_rate=0.5)
    world, clock, _, generator = traffic(settings)
    rec = EventRecorder(world)
    advance(clock, 300)
    generator.stopService()
    advance(clock, 600)
    assert world.channels == {} and world.bridges == {}
    newchannels = {e.get("Uniqueid") for e in rec.of("Newchannel")}
    hangups = [e.get("Uniqueid") for e in rec.of("Hangup")]
    assert len(hangups) == len(set(hangups)) and newchannels <= set(hangups)
    assert rec.of("Hold") and rec.of("DeviceStateChange", State="INUSE")


def test_direct_calls_are_answered_within_answer_delay():
    """A phone that answers does so within answer_delay; talk_time bounds the conversation."""
    settings = SimulatorSettings(calls_per_minute=6, seed=11, ivr_share=0.0, outbound_share=0.0,
                                 no_answer_rate=0.0, answer_delay=(1.0, 2.0), talk_time=(10.0, 20.0))
    world, clock, _, generator = traffic(settings)
    rec = EventRecorder(world)
    advance(clock, 400)
    begins = {e.get("DestChannel"): t for t, e in rec.timed("DialBegin")}
    ends = {e.get("DestChannel"): (t, e.get("DialStatus")) for t, e in rec.timed("DialEnd")}
    answered = [ch for ch, (_, status) in ends.items() if status == "ANSWER"]
    assert len(answered) >= 10 and {status for _, status in ends.values()} <= {"ANSWER", "BUSY"}
    assert all(1.0 <= ends[ch][0] - begins[ch] <= 2.0 for ch in answered)
    leaves = {e.get("Channel"): t for t, e in rec.timed("BridgeLeave")}
    assert all(10.0 <= leaves[ch] - ends[ch][0] <= 20.0 + 1e-6 for ch in answered if ch in leaves)


def test_phone_numbers_and_dtmf_scripts_look_real():
    """Mobile numbers are 11 digits starting with 1, landlines start with an area code; scripts are IVR journeys."""
    rng = random.Random(1)
    numbers = [phone_number(rng) for _ in range(200)]
    assert all(re.fullmatch(r"1[3-9]\d{9}|0\d{9,11}", n) for n in numbers)
    assert any(n.startswith("0") for n in numbers) and any(n.startswith("1") for n in numbers)
    script = dtmf_script(rng)
    assert re.fullmatch(r"[0-2][0-9*#]*", script)  # a language key (or 0), then a journey through conf/ivr


@pytest.mark.parametrize("kind", ["ivr", "direct"])
def test_inbound_calls_use_the_trunk_and_the_dialled_number(kind):
    """Inbound callers appear as PJSIP/trunk-XXXXXXXX in ctid-in with the DNIS (or 8+ext) as extension."""
    settings = SimulatorSettings(calls_per_minute=30, seed=2, outbound_share=0.0,
                                 ivr_share=1.0 if kind == "ivr" else 0.0)
    world, clock, _, generator = traffic(settings)
    rec = EventRecorder(world)
    advance(clock, 20)
    first = rec.of("Newchannel")[0]
    assert re.fullmatch(r"PJSIP/trunk-[0-9a-f]{8}", first.get("Channel"))
    assert first.get("Context") == "ctid-in" and first.get("ChannelStateDesc") == "Ring"
    assert first.get("Exten") == ("95566" if kind == "ivr" else generator.arrivals[0].dialed)
