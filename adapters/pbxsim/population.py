"""Simulated people: callers on the trunk, agent phones, far ends of outbound calls.

Everything random comes from generators derived from ``settings.seed``:
arrivals from one ``random.Random(seed)``, and each caller and phone from its
own generator seeded from it, so the arrival sequence does not depend on what
ctid does, and a run with the same seed and the same ctid behaviour repeats.
No sockets here: the :class:`TrafficGenerator` runs on the World's clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.application.service import Service
from twisted.logger import Logger

from .events import RING, RINGING, UP
from .features import hold, unhold

if TYPE_CHECKING:  # pragma: no cover
    from twisted.internet.interfaces import IDelayedCall

    from .settings import SimulatorSettings
    from .world import Bridge, Channel, World

log = Logger(namespace="ctid.pbxsim")

MOBILE_PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152",
                   "155", "156", "157", "158", "159", "166", "176", "177", "180", "181", "185", "186",
                   "187", "188", "189", "198", "199")
AREA_CODES = ("010", "021", "020", "022", "023", "024", "025", "027", "028", "029", "0571", "0755", "0512")


def phone_number(rng: random.Random) -> str:
    """A plausible Chinese caller number: mobile (11 digits) or landline with area code."""
    if rng.random() < 0.75:
        return rng.choice(MOBILE_PREFIXES) + "".join(rng.choice("0123456789") for _ in range(8))
    area = rng.choice(AREA_CODES)
    digits = 8 if len(area) == 3 else rng.choice((7, 8))
    return area + rng.choice("2345678") + "".join(rng.choice("0123456789") for _ in range(digits - 1))


#: Demo customers of the sandbox bank (ctid.adapters.corebank.sandbox_data.DEMO_CUSTOMERS): number, password.
DEMO_CARD, DEMO_PASSBOOK = ("6222020030004321", "123456"), ("6222020120005555", "135790")
DEMO_SIGNED, DEMO_CORPORATE = ("6222020018881234", "888888"), ("80001", "666666")


def _journeys() -> tuple[str, ...]:
    """Keys for ctid's bank flow (conf/ivr): language, menus, numbers and passwords ended by #."""
    card, passbook = "".join(x + "#" for x in DEMO_CARD), "".join(x + "#" for x in DEMO_PASSBOOK)
    signed, corporate = "".join(x + "#" for x in DEMO_SIGNED), "".join(x + "#" for x in DEMO_CORPORATE)
    return (
        "111" + card + "1",                 # public card: balance
        "112" + passbook + "2",             # passbook: recent transactions
        "12" + signed + "320250101",        # signed: transactions from a date
        "12" + signed + "75678100*5#1",     # signed: transfer 100.50 to the passbook ending 5678
        "13" + corporate + "1",             # corporate: balance
        "14" + signed + "102162345678#",    # bills: the fixed-line phone bill
        "151", "252",                       # interest rates; in English, exchange rates
        "111" + DEMO_CARD[0] + "#000000#",  # a wrong password
        "10", "0",                          # straight to an agent
    )


def dtmf_script(rng: random.Random) -> str:
    """What a caller keys in the IVR: a journey through the bank flow, sometimes ending with 0 for an agent."""
    return rng.choice(_journeys()) + rng.choice(("", "0"))


class ScriptedDtmf:
    """A caller's keys: think time before the first key of an answer, shorter gaps between keys."""

    def __init__(self, script: str, rng: random.Random | None = None,
                 first: tuple[float, float] = (0.8, 3.0), between: tuple[float, float] = (0.2, 0.6)):
        self.script = script
        self.rng = rng
        self.first = first
        self.between = between
        self.index = 0
        self._due: float | None = None
        self._fresh = True

    def _draw(self, span: tuple[float, float]) -> float:
        return self.rng.uniform(*span) if self.rng is not None else (span[0] + span[1]) / 2

    def peek(self, now: float) -> tuple[float, str] | None:
        if self.index >= len(self.script):
            return None
        if self._due is None:
            self._due = now + self._draw(self.first if self._fresh else self.between)
        return max(self._due, now), self.script[self.index]

    def take(self) -> None:
        digit = self.script[self.index]
        self.index += 1
        self._due = None
        self._fresh = digit == "#"

    @property
    def remaining(self) -> str:
        return self.script[self.index:]


class Party:
    """Common behaviour of a simulated person: per-channel timers; talk for a while, then hang up."""

    context = "default"

    def __init__(self, world: World, rng: random.Random, talk_time: tuple[float, float]):
        self.world = world
        self.rng = rng
        self.talk_time = talk_time
        self._timers: dict[str, list[IDelayedCall]] = {}

    def later(self, chan: Channel, delay: float, fn, *args) -> None:
        """Run ``fn(chan, *args)`` after ``delay``; cancelled when ``chan`` hangs up."""
        timers = [t for t in self._timers.get(chan.uniqueid, []) if t.active()]
        timers.append(self.world.clock.callLater(delay, fn, chan, *args))
        self._timers[chan.uniqueid] = timers

    def cancel_timers(self, chan: Channel) -> None:
        for timer in self._timers.pop(chan.uniqueid, []):
            if timer.active():
                timer.cancel()

    def on_bridged(self, chan: Channel, bridge: Bridge) -> None:
        if len(bridge.members) >= 2:
            self.cancel_timers(chan)
            self.later(chan, self.rng.uniform(*self.talk_time), self._end_talk, bridge)

    def _end_talk(self, chan: Channel, bridge: Bridge) -> None:
        if chan.bridge is bridge and not chan.dead:
            self.world.remote_hangup(chan, 16)

    def on_hangup(self, chan: Channel) -> None:
        self.cancel_timers(chan)


class Phone(Party):
    """An agent or supervisor phone (``PJSIP/<ext>``): rings, maybe answers, talks, may hold."""

    context = "ctid-out"

    def __init__(self, world: World, ext: str, rng: random.Random, settings: SimulatorSettings,
                 always_answer: bool = False):
        super().__init__(world, rng, settings.talk_time)
        self.ext = ext
        self.settings = settings
        self.always_answer = always_answer
        self.channels: list[Channel] = []
        self._device_state = "NOT_INUSE"

    @property
    def busy(self) -> bool:
        self.channels = [c for c in self.channels if not c.dead]
        return bool(self.channels)

    def device_state(self, state: str) -> None:
        """DeviceStateChange for ``PJSIP/<ext>`` (NOT_INUSE, RINGING, INUSE, ONHOLD)."""
        if state != self._device_state:
            self._device_state = state
            self.world.emit("DeviceStateChange", "call", [("Device", f"PJSIP/{self.ext}"), ("State", state)])

    def on_state(self, chan: Channel, state: int) -> None:
        if state == UP:
            self.device_state("INUSE")

    def on_hangup(self, chan: Channel) -> None:
        super().on_hangup(chan)
        if not self.busy:
            self.device_state("NOT_INUSE")

    def ring(self, world: World, chan: Channel) -> None:
        """Called with a new outgoing channel to this phone."""
        if self.busy:
            world.soon(world.control, chan, "busy")
            return
        self.channels.append(chan)
        self.device_state("RINGING")
        self.later(chan, 0.05, self._ringing)
        if self.always_answer or self.rng.random() >= self.settings.no_answer_rate:
            self.later(chan, self.rng.uniform(*self.settings.answer_delay), self._answer)

    def _ringing(self, chan: Channel) -> None:
        if not chan.dead and not chan.hangup_pending and chan.state not in (RINGING, UP):
            self.world.set_state(chan, RINGING)

    def _answer(self, chan: Channel) -> None:
        if not chan.dead and not chan.hangup_pending and chan.state != UP:
            self.world.set_state(chan, UP)

    def on_bridged(self, chan: Channel, bridge: Bridge) -> None:
        super().on_bridged(chan, bridge)
        if len(bridge.members) >= 2 and self.rng.random() < self.settings.hold_rate:
            self.later(chan, self.rng.uniform(3.0, 15.0), self._hold, bridge)

    def _hold(self, chan: Channel, bridge: Bridge) -> None:
        if chan.bridge is bridge and not chan.dead:
            hold(self.world, chan)
            self.device_state("ONHOLD")
            self.later(chan, self.rng.uniform(5.0, 20.0), self._unhold, bridge)

    def _unhold(self, chan: Channel, bridge: Bridge) -> None:
        if chan.bridge is bridge and not chan.dead:
            unhold(self.world, chan)
            self.device_state("INUSE")

    def dial_out(self, number: str) -> Channel:
        """The agent places a call: a new channel in the phone's context, dialling ``number``."""
        world = self.world
        chan = world.new_channel("PJSIP", self.ext, state=RING, context=self.context, exten=number,
                                 announce=False)
        chan.caller_num, chan.caller_name, chan.dnid = self.ext, f"Agent {self.ext}", number
        chan.device = self
        self.channels.append(chan)
        world.chan_event("Newchannel", chan)
        self.device_state("INUSE")
        log.info("pbxsim: phone {ext} dials {number} ({channel})", ext=self.ext, number=number, channel=chan.name)
        world.start_pbx(chan)
        return chan


class FarEnd(Party):
    """The other end of an outbound trunk call."""

    context = "ctid-in"

    def __init__(self, world: World, rng: random.Random, settings: SimulatorSettings):
        super().__init__(world, rng, settings.talk_time)
        self.settings = settings

    def ring(self, world: World, chan: Channel) -> None:
        self.later(chan, self.rng.uniform(0.5, 2.0), self._ringing)
        if self.rng.random() >= self.settings.no_answer_rate:
            self.later(chan, 2.0 + self.rng.uniform(*self.settings.answer_delay) * 2, self._answer)

    def _ringing(self, chan: Channel) -> None:
        if not chan.dead and not chan.hangup_pending and chan.state != UP:
            self.world.set_state(chan, RINGING)

    def _answer(self, chan: Channel) -> None:
        if not chan.dead and not chan.hangup_pending:
            self.world.set_state(chan, UP)


class Caller(Party):
    """A customer calling in on the trunk: keys DTMF in the IVR, waits, talks, or gives up."""

    context = "ctid-in"

    def __init__(self, world: World, rng: random.Random, settings: SimulatorSettings,
                 number: str, dialed: str, patience: float, script: str):
        super().__init__(world, rng, settings.talk_time)
        self.settings = settings
        self.number = number
        self.dialed = dialed
        self.patience = patience
        self.dtmf = ScriptedDtmf(script, rng)
        self.chan: Channel | None = None

    def call(self) -> Channel:
        """Place the call: ``PJSIP/trunk-…`` in ctid-in, dialling the DNIS (or a direct line)."""
        world = self.world
        chan = world.new_channel("PJSIP", "trunk", state=RING, context=self.context, exten=self.dialed,
                                 announce=False)
        chan.caller_num, chan.dnid, chan.device = self.number, self.dialed, self
        self.chan = chan
        world.chan_event("Newchannel", chan)
        log.info("pbxsim: caller {number} dials {dialed} ({channel})",
                 number=self.number, dialed=self.dialed, channel=chan.name)
        self.later(chan, self.patience, self._give_up)
        world.start_pbx(chan)
        return chan

    def _give_up(self, chan: Channel) -> None:
        if not chan.dead and chan.bridge is None:
            log.info("pbxsim: caller {number} gives up after {seconds:.0f} s ({channel})",
                     number=self.number, seconds=self.patience, channel=chan.name)
            self.world.remote_hangup(chan, 16)

    def on_unbridged(self, chan: Channel, bridge: Bridge) -> None:
        if not chan.dead and not chan.hangup_pending:
            self.cancel_timers(chan)
            self.later(chan, self.rng.uniform(*self.settings.patience), self._give_up)


@dataclass(frozen=True)
class Arrival:
    """One generated call, for logs and tests."""

    at: float
    kind: str       # "ivr", "direct" or "outbound"
    number: str     # caller number (inbound) or number dialled (outbound)
    dialed: str     # DNIS / direct line (inbound) or agent extension (outbound)


class Population:
    """The phones (registered as World devices) and the trunk's far ends."""

    def __init__(self, world: World, settings: SimulatorSettings):
        self.world = world
        self.settings = settings
        self.phones: dict[str, Phone] = {}
        for ext in settings.agents:
            self.phones[ext] = Phone(world, ext, random.Random(f"{settings.seed}:phone:{ext}"), settings)
        for ext in settings.supervisors:
            self.phones[ext] = Phone(world, ext, random.Random(f"{settings.seed}:phone:{ext}"), settings,
                                     always_answer=True)
        world.devices.update(self.phones)
        self._far_rng = random.Random(f"{settings.seed}:far")
        world.trunk = self._far_end

    def _far_end(self, number: str) -> FarEnd:
        return FarEnd(self.world, random.Random(self._far_rng.getrandbits(64)), self.settings)

    def idle_agents(self) -> list[str]:
        return [ext for ext in self.settings.agents if not self.phones[ext].busy]


class TrafficGenerator(Service):
    """Poisson arrivals of callers (and outbound calls by agents) on the World's clock."""

    name = "traffic"

    def __init__(self, world: World, population: Population, settings: SimulatorSettings):
        self.world = world
        self.population = population
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.arrivals: list[Arrival] = []
        self.rate = settings.calls_per_minute
        self._next: IDelayedCall | None = None

    def set_rate(self, calls_per_minute: float) -> None:
        """Change the arrival rate while running (a config reload); 0 pauses the traffic."""
        if calls_per_minute < 0:
            raise ValueError("calls_per_minute must be >= 0")
        self.rate = calls_per_minute
        if self.running:
            if self._next is not None and self._next.active():
                self._next.cancel()
            self._schedule()

    def startService(self) -> None:
        super().startService()
        self._schedule()

    def stopService(self) -> None:
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None
        return super().stopService()

    def _schedule(self) -> None:
        rate = self.rate
        if rate <= 0 or (self.settings.max_calls and len(self.arrivals) >= self.settings.max_calls):
            self._next = None
            return
        self._next = self.world.clock.callLater(self.rng.expovariate(rate / 60.0), self._arrive)

    def _arrive(self) -> None:
        self._next = None
        try:
            self.arrivals.append(self.place_call())
        except Exception:
            log.failure("pbxsim: could not place a simulated call")
        self._schedule()

    def place_call(self) -> Arrival:
        """Draw one call from the generator and place it.

        The same number of draws is made whatever the state of the phones, so
        the arrival sequence depends on the seed only.
        """
        rng, settings, now = self.rng, self.settings, self.world.now()
        outbound = rng.random() < settings.outbound_share
        number = phone_number(rng)
        pick = rng.random()
        ivr = rng.random() < settings.ivr_share
        dnis = rng.choice(settings.dnis)
        direct = settings.direct_prefix + rng.choice(settings.agents)
        patience = rng.uniform(*settings.patience)
        script = dtmf_script(rng)
        caller_seed = rng.getrandbits(64)
        idle = self.population.idle_agents() if outbound else []
        if idle:
            ext = idle[int(pick * len(idle))]
            self.population.phones[ext].dial_out(number)
            return Arrival(now, "outbound", number, ext)
        dialed = dnis if ivr else direct
        caller = Caller(self.world, random.Random(caller_seed), settings, number, dialed, patience, script)
        caller.call()
        return Arrival(now, "ivr" if ivr else "direct", number, dialed)
