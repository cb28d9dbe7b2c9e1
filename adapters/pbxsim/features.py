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

#: Asterisk's ``astspooldir``/monitor: where relative MixMonitor file names go.
MONITOR_DIR = "/var/spool/asterisk/monitor"


def start_mixmonitor(world: World, chan: Channel, filename: str, options: str = "") -> str:
    """Start recording; returns the MixMonitor id (also stored in VAR for ``i(VAR)``)."""
    ident = f"0x7f3c{world.serial():08x}"
    chan.mixmonitors[ident] = filename
    if filename and not filename.startswith("/"):  # app_mixmonitor: relative names go under the monitor folder
        filename = f"{MONITOR_DIR}/{filename}"
    world.set_var(chan, "MIXMONITOR_FILENAME", filename)  # set (VarSet) before MixMonitorStart, like Asterisk
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
    if direction == "Received" and not chan.dead:
        chan.notify("on_dtmf", digit)


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


#: ChanSpy option ``d``: the spyer's DTMF 4, 5 and 6 switch to these modes.
SPY_MODE_KEYS = {"4": "listen", "5": "whisper", "6": "barge"}


class _SpyWatch:
    """Observer on the spyee (tells ChanSpy when it hangs up) and on the spyer (DTMF mode switching, ``d``)."""

    def __init__(self, world: World, spyer: Channel, options: str):
        self.world, self.spyer = world, spyer
        self.switching = "d" in options
        self.mode = "barge" if "B" in options else "whisper" if "w" in options or "W" in options else "listen"

    def on_hangup(self, chan: Channel) -> None:
        if chan is not self.spyer:
            self.world.wake(self.spyer, "spyee")

    def on_dtmf(self, chan: Channel, digit: str) -> None:
        if chan is self.spyer and self.switching and digit in SPY_MODE_KEYS:
            self.mode = SPY_MODE_KEYS[digit]


def spy_mode(spyer: Channel) -> str | None:
    """The mode (listen, whisper, barge) of the ChanSpy running on ``spyer``; None when it is not spying."""
    return next((o.mode for o in spyer.observers if isinstance(o, _SpyWatch)), None)


@application("ChanSpy")
async def app_chanspy(world: World, chan: Channel, data: str) -> int:
    """ChanSpy(target,options): listen, whisper (w) or barge (B) on one channel; ``d``: DTMF 4/5/6 switch modes."""
    args = split_args(data)
    target, options = (args[0] if args else ""), (args[1] if len(args) > 1 else "")
    answer(world, chan)
    spyee = find_spyee(world, target, chan) if target else None
    if spyee is None:
        return interrupted(await world.sleep(chan, 5.0)) if "E" not in options else -1
    watch = _SpyWatch(world, chan, options)
    spyee.observers.append(watch)
    chan.observers.append(watch)
    world.emit("ChanSpyStart", "call", snapshot(chan, "Spyer") + snapshot(spyee, "Spyee"))
    reason = await world.sleep(chan, None)
    for watched in (spyee, chan):
        if watch in watched.observers:
            watched.observers.remove(watch)
    if not chan.dead:
        spyee_block = snapshot(spyee, "Spyee") if not spyee.dead else []
        world.emit("ChanSpyStop", "call", snapshot(chan, "Spyer") + spyee_block)
    if reason == "spyee":
        return -1 if "E" in options else interrupted(await world.sleep(chan, None))
    return interrupted(reason)
