"""The FastAGI scripts a waiting caller meets: ``wait`` (announcement + choices), ``voicemail``, ``queue``.

``wait`` runs when the call center sends a waiting caller to
``ctid-announce``: it says the caller's place in line and the estimated
wait, then offers the queue's choices — 1 to leave a voice message, 2 to be
called back (virtual hold) — and otherwise returns the caller to the music
with its place kept.  An agent coming free cuts the announcement short.

``voicemail`` runs for a route rule's voicemail target (``ctid-voicemail``)
and for choice 1: it records the message and reports it; the recording
stays on the switch, ctid keeps its index.

``queue`` is for service numbers with no IVR: ``agi://host/queue?name=Q``
hands the caller straight to queue ``Q`` (the default queue without it).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.logger import Logger

from ctid.acd.locality import national
from ctid.waitpolicy import WaitPolicy

log = Logger()

#: Longest voice message, and silence that ends one early.
MESSAGE_MAX_MS = 120_000
MESSAGE_SILENCE_S = 5
#: A call-back number: 5 to 20 digits.
CALLBACK_NUMBER = re.compile(r"[0-9]{5,20}")


@dataclass(frozen=True)
class WaitInfo:
    """What the announcement tells a waiting caller."""

    call_id: str
    caller: str
    queue: str
    position: int
    estimated_wait: float | None
    policy: WaitPolicy


@dataclass(frozen=True)
class VoiceMessage:
    """A recorded message (留言, or a complaint 投诉举报): where the switch keeps it and whose it is.

    ``path`` is the file as the switch named it (no extension).  A message
    left in an IVR flow also names the ``flow``, the ``node`` and the
    verified ``customer_id``.
    """

    call_id: str
    caller: str
    mailbox: str
    path: str
    fmt: str
    seconds: float
    at: float
    flow: str = ""
    node: str = ""
    customer_id: str = ""


class WaitingRoom(Protocol):
    """What the scripts ask of the call center (see :class:`ctid.center.CallCenter`)."""

    def waiting_info(self, channel: str) -> WaitInfo | None: ...

    def agent_ready(self, call_id: str) -> bool: ...

    def announcement_over(self, call_id: str) -> None: ...

    def message_left(self, message: VoiceMessage) -> None: ...

    def call_back(self, call_id: str, number: str) -> bool: ...

    def mailbox_of(self, channel: str) -> tuple[str, str, str] | None: ...


class WaitScripts:
    """The ``wait`` and ``voicemail`` scripts, bound to the call center; ``clock`` dates messages."""

    def __init__(self, room: WaitingRoom, clock, spool: str = "ctid-voicemail"):
        self.room = room
        self.clock = clock
        self.spool = spool

    def scripts(self) -> dict[str, Callable[[Any], Awaitable[None]]]:
        """The FastAGI script table entries."""
        return {"wait": self.wait, "voicemail": self.voicemail, "queue": self.queue}

    async def queue(self, session) -> None:
        """No IVR: answer and hand the caller to the queue named in the URL (``?name=``), if any."""
        await session.answer()
        name = session.env.query.get("name")
        if name:
            await session.set_variable("CTID_QUEUE", name)

    async def wait(self, session) -> None:
        """Announce place and wait; take the caller's choice; return it to the music otherwise."""
        info = self.room.waiting_info(session.env.channel)
        if info is None:
            log.info("FastAGI wait: {channel} is not waiting in a queue", channel=session.env.channel)
            return
        try:
            choice = await self._announce(session, info)
            if choice == "1" and info.policy.offer_voicemail:
                await self._record(session, info.call_id, info.caller, info.queue)
            elif choice == "2" and info.policy.offer_callback:
                await self._book_callback(session, info)
        finally:
            self.room.announcement_over(info.call_id)

    async def _announce(self, session, info: WaitInfo) -> str:
        """Say the place and wait, then the choices; the key pressed ('' for none or an agent came free)."""
        choices = info.policy.choices
        steps = [("stream", "ctid/all-busy"), ("stream", "ctid/your-position"), ("number", info.position),
                 ("stream", "ctid/in-line")]
        if info.estimated_wait is not None:
            minutes = max(1, round(info.estimated_wait / 60))
            steps += [("stream", "ctid/estimated-wait"), ("number", minutes), ("stream", "ctid/minutes")]
        for what, arg in steps:
            if self.room.agent_ready(info.call_id):
                return ""
            if what == "stream":
                key = await session.stream_file(str(arg), escape_digits=choices)
            else:
                key = await session.say_number(arg, escape_digits=choices)
            if key:
                return key
        if not choices or self.room.agent_ready(info.call_id):
            return ""
        menu = "ctid/press-1-message-2-callback" if choices == "12" else (
            "ctid/press-1-message" if choices == "1" else "ctid/press-2-callback")
        digits, _ = await session.get_data(menu, timeout_ms=4000, max_digits=1)
        return digits if digits in choices else ""

    async def _record(self, session, call_id: str, caller: str, mailbox: str) -> None:
        path = f"{self.spool}/{mailbox}/{call_id}"
        await session.stream_file("ctid/leave-message")
        reply = await session.record_file(path, "wav", "#", MESSAGE_MAX_MS, beep=True, silence_s=MESSAGE_SILENCE_S)
        seconds = (reply.endpos or 0) / 8000
        message = VoiceMessage(call_id, caller, mailbox, path, "wav", seconds, self.clock.seconds())
        self.room.message_left(message)
        log.info("voice message from {caller} for {mailbox}: {seconds:.1f}s in {path}", caller=caller,
                 mailbox=mailbox, seconds=seconds, path=path)
        await session.stream_file("ctid/message-saved")
        await session.hangup()

    async def _book_callback(self, session, info: WaitInfo) -> None:
        """Confirm the number to call back (1 keeps the caller's own; or key another, then #)."""
        number = national(info.caller)
        if CALLBACK_NUMBER.fullmatch(number):
            await session.stream_file("ctid/callback-number")
            await session.say_digits(number)
            typed, _ = await session.get_data("ctid/press-1-or-enter-number", timeout_ms=5000, max_digits=20)
            if typed and typed != "1":
                number = typed
        else:
            number, _ = await session.get_data("ctid/enter-callback-number", timeout_ms=5000, max_digits=20)
        if not CALLBACK_NUMBER.fullmatch(number or "") or not self.room.call_back(info.call_id, number):
            await session.stream_file("ctid/callback-refused")
            return
        await session.stream_file("ctid/callback-booked")
        await session.hangup()

    async def voicemail(self, session) -> None:
        """A route rule sent the caller to a mailbox: record the message."""
        target = self.room.mailbox_of(session.env.channel)
        if target is None:
            log.warn("FastAGI voicemail: {channel} has no mailbox", channel=session.env.channel)
            await session.hangup()
            return
        call_id, caller, mailbox = target
        await self._record(session, call_id, caller, mailbox)
