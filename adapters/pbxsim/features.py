"""Call features: ChanSpy, MixMonitor, DTMF, hold.

Used by dialplan applications (``ChanSpy``, ``MixMonitor``), by the AMI
actions (MixMonitor, StopMixMonitor, MixMonitorMute, PlayDTMF) and by the
simulated phones (hold).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .apps import answer, application, interrupted, split_args, start_moh, stop_moh
from .events import snapshot

if TYPE_CHECKING:  # pragma: no cover
    from .world import Channel, World


# -- MixMonitor ----------------------------------------------------------------------------


def start_mixmonitor(world: World, chan: Channel, filename: str, options: str = "") -> str:
    """Start recording; returns the MixMonitor id (also stored in VAR for ``i(VAR)``)."""
    ident = f"0x7f3c{world.serial():08x}"
    chan.mixmonitors[ident] = filename
    world.chan_event("MixMonitorStart", chan)
    match = re.search(r"i\(([^)]+)\)", options or "")
    if match:
        world.set_var(chan, match.group(1), ident)
    return ident


def stop_mixmonitor(world: World, chan: Channel, ident: str | None = None) -> bool:
    """Stop one recording (or all); False when none was running."""
    if ident:
        if ident not in chan.mixmonitors:
            return False
        del chan.mixmonitors[ident]
    elif chan.mixmonitors:
        chan.mixmonitors.clear()
    else:
        return False
    world.chan_event("MixMonitorStop", chan)
    return True


def mute_mixmonitor(world: World, chan: Channel, direction: str, state: bool) -> None:
    world.chan_event("MixMonitorMute", chan, [("Direction", direction), ("State", "1" if state else "0")])


@application("MixMonitor")
async def app_mixmonitor(world: World, chan: Channel, data: str) -> int:
    args = split_args(data)
    start_mixmonitor(world, chan, args[0] if args else "", args[1] if len(args) > 1 else "")
    return 0


@application("StopMixMonitor")
async def app_stopmixmonitor(world: World, chan: Channel, data: str) -> int:
    stop_mixmonitor(world, chan, data.strip() or None)
    return 0


# -- DTMF ----------------------------------------------------------------------------------


def dtmf(world: World, chan: Channel, digit: str, duration_ms: int = 100, direction: str = "Received") -> None:
    """DTMFBegin now, DTMFEnd after ``duration_ms`` (both class dtmf)."""
    world.chan_event("DTMFBegin", chan, [("Digit", digit), ("Direction", direction)], "dtmf")
    world.clock.callLater(duration_ms / 1000.0, _dtmf_end, world, chan, digit, duration_ms, direction)


def _dtmf_end(world: World, chan: Channel, digit: str, duration_ms: int, direction: str) -> None:
    world.chan_event("DTMFEnd", chan, [("Digit", digit), ("DurationMs", duration_ms), ("Direction", direction)],
                     "dtmf")


def play_dtmf(world: World, chan: Channel, digits: str, duration_ms: int, receive: bool) -> None:
    """AMI PlayDTMF: each digit in turn, with a 100 ms gap."""
    direction = "Received" if receive else "Sent"
    for index, digit in enumerate(digits):
        delay = index * (duration_ms + 100) / 1000.0
        world.clock.callLater(delay, dtmf, world, chan, digit, duration_ms, direction)


# -- hold ----------------------------------------------------------------------------------


def hold(world: World, chan: Channel) -> None:
    """The phone on ``chan`` puts its call on hold: Hold here, music to the bridged peer."""
    world.chan_event("Hold", chan, [("MusicClass", "default")])
    peer = chan.bridge.peer_of(chan) if chan.bridge is not None else None
    if peer is not None:
        start_moh(world, peer)


def unhold(world: World, chan: Channel) -> None:
    """Take the call off hold."""
    world.chan_event("Unhold", chan)
    peer = chan.bridge.peer_of(chan) if chan.bridge is not None else None
    if peer is not None:
        stop_moh(world, peer)


# -- ChanSpy -------------------------------------------------------------------------------


def find_spyee(world: World, target: str, spyer: Channel) -> Channel | None:
    """A channel by exact name or Uniqueid, else the first whose name starts with ``target``."""
    exact = world.find(target)
    if exact is not None and exact is not spyer:
        return exact
    return next((c for c in world.live() if c is not spyer and c.name.startswith(target + "-")), None)


class _SpyWatch:
    """Observer on the spyee: tells the ChanSpy application when it hangs up."""

    def __init__(self, world: World, spyer: Channel):
        self.world, self.spyer = world, spyer

    def on_hangup(self, chan: Channel) -> None:
        self.world.wake(self.spyer, "spyee")


@application("ChanSpy")
async def app_chanspy(world: World, chan: Channel, data: str) -> int:
    """ChanSpy(target,options): listen (q), whisper (w) or barge (B) on one channel."""
    args = split_args(data)
    target, options = (args[0] if args else ""), (args[1] if len(args) > 1 else "")
    answer(world, chan)
    spyee = find_spyee(world, target, chan) if target else None
    if spyee is None:
        return interrupted(await world.sleep(chan, 5.0)) if "E" not in options else -1
    watch = _SpyWatch(world, chan)
    spyee.observers.append(watch)
    world.emit("ChanSpyStart", "call", snapshot(chan, "Spyer") + snapshot(spyee, "Spyee"))
    reason = await world.sleep(chan, None)
    if watch in spyee.observers:
        spyee.observers.remove(watch)
    if not chan.dead:
        spyee_block = snapshot(spyee, "Spyee") if not spyee.dead else []
        world.emit("ChanSpyStop", "call", snapshot(chan, "Spyer") + spyee_block)
    if reason == "spyee":
        return -1 if "E" in options else interrupted(await world.sleep(chan, None))
    return interrupted(reason)
