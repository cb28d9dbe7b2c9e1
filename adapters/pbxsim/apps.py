"""Dialplan applications: what each one does to the World, and how long it takes.

Each application is ``async def app(world, chan, data) -> int``: 0 continues
the dialplan, -1 ends it (hangs up).  Waiting is always done through
``world.sleep(chan, …)`` so a hangup or an AMI Redirect interrupts it.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from twisted.logger import Logger

from .events import UP

if TYPE_CHECKING:  # pragma: no cover
    from .world import Channel, World

log = Logger(namespace="ctid.pbxsim")

App = Callable[["World", "Channel", str], Awaitable[int]]
APPLICATIONS: dict[str, App] = {}


def application(name: str) -> Callable[[App], App]:
    """Register a dialplan application under ``name`` (case-insensitive)."""

    def register(fn: App) -> App:
        APPLICATIONS[name.lower()] = fn
        return fn

    return register


async def execute(world: World, chan: Channel, app: str, data: str) -> int:
    """Run one application; an unknown one ends the dialplan, as in Asterisk."""
    _load_modules()
    fn = APPLICATIONS.get(app.lower())
    if fn is None:
        log.warn("pbxsim: no application {app!r} on {channel}", app=app, channel=chan.name)
        return -1
    return await fn(world, chan, data)


def _load_modules() -> None:
    from . import agi, confbridge, dial, features  # noqa: F401  (they register applications)


def prompt_seconds(name: str, speed: float = 1.0) -> float:
    """How long a sound file plays: 1.5–4.4 s, fixed per file name, divided by the world's ``speed``."""
    return (1.5 + (zlib.crc32(name.encode("utf-8")) % 30) / 10.0) / speed


def split_args(data: str) -> list[str]:
    """Application arguments: comma separated (no quoting in the simulator)."""
    return [part.strip() for part in data.split(",")] if data else []


def interrupted(reason: str) -> int:
    """The usual application result after a wait ended for ``reason``."""
    return -1 if reason == "hangup" else 0


def answer(world: World, chan: Channel) -> None:
    """Answer the channel if it is not up yet."""
    if chan.state != UP:
        world.set_state(chan, UP)


@application("Answer")
async def app_answer(world: World, chan: Channel, data: str) -> int:
    answer(world, chan)
    return 0


@application("Hangup")
async def app_hangup(world: World, chan: Channel, data: str) -> int:
    cause = int(data) if data.strip().isdigit() else 0
    chan.hangupcause = cause or chan.hangupcause or 16
    return -1


@application("NoOp")
async def app_noop(world: World, chan: Channel, data: str) -> int:
    return 0


@application("Set")
async def app_set(world: World, chan: Channel, data: str) -> int:
    name, sep, value = data.partition("=")
    if sep and name.strip():
        target = None if name.strip().startswith("GLOBAL(") else chan
        key = name.strip()[7:-1] if target is None else name.strip()
        world.set_var(target, key, value)
    return 0


@application("Wait")
async def app_wait(world: World, chan: Channel, data: str) -> int:
    try:
        seconds = float(data or 0)
    except ValueError:
        seconds = 0.0
    return interrupted(await world.sleep(chan, seconds))


@application("Ringing")
async def app_ringing(world: World, chan: Channel, data: str) -> int:
    world.indicate_ringing(chan)
    return 0


@application("Progress")
async def app_progress(world: World, chan: Channel, data: str) -> int:
    return 0


@application("Playback")
async def app_playback(world: World, chan: Channel, data: str) -> int:
    answer(world, chan)
    total = sum(prompt_seconds(name, world.media_speed) for name in split_args(data)[0].split("&")) if data else 0.0
    reason = await world.sleep(chan, total)
    chan.variables["PLAYBACKSTATUS"] = "SUCCESS" if reason == "timeout" else "FAILED"
    return interrupted(reason)


@application("Echo")
async def app_echo(world: World, chan: Channel, data: str) -> int:
    return interrupted(await world.sleep(chan, None))


@application("MusicOnHold")
async def app_moh(world: World, chan: Channel, data: str) -> int:
    args = split_args(data)
    klass = args[0] if args and args[0] else "default"
    duration = float(args[1]) if len(args) > 1 and args[1].isdigit() and int(args[1]) > 0 else None
    start_moh(world, chan, klass)
    reason = await world.sleep(chan, duration)
    stop_moh(world, chan)
    return interrupted(reason)


def start_moh(world: World, chan: Channel, klass: str = "default") -> None:
    """MusicOnHoldStart on ``chan``."""
    if not chan.moh:
        chan.moh = True
        world.chan_event("MusicOnHoldStart", chan, [("Class", klass)])


def stop_moh(world: World, chan: Channel) -> None:
    """MusicOnHoldStop on ``chan``."""
    if chan.moh:
        chan.moh = False
        world.chan_event("MusicOnHoldStop", chan)


@application("Goto")
async def app_goto(world: World, chan: Channel, data: str) -> int:
    args = split_args(data)
    if not args or len(args) > 3:
        return -1
    context, exten = chan.context, chan.exten
    if len(args) == 3:
        context, exten = args[0], args[1]
    elif len(args) == 2:
        exten = args[0]
    target = world.dialplan.match(context, exten)
    priority = args[-1]
    if priority.isdigit():
        number = int(priority)
    elif target is not None and priority in target.labels:
        number = target.labels[priority]
    else:
        return -1
    chan.context, chan.exten, chan.priority = context, exten, number - 1
    return 0


@application("UserEvent")
async def app_userevent(world: World, chan: Channel, data: str) -> int:
    name, _, rest = data.partition(",")
    extra = [("UserEvent", name.strip())]
    for item in rest.split(",") if rest else []:
        key, sep, value = item.partition(":")
        if sep:
            extra.append((key.strip(), value.strip()))
    world.chan_event("UserEvent", chan, extra, "user")
    return 0
