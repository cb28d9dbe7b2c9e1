"""A queued call as the call center follows it (:class:`~ctid.center.CallCenter`)."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.interfaces import IDelayedCall

from ctid.acd import WaitingCall


@dataclass
class Delivery:
    """A call from the moment it is queued until it ends."""

    waiting: WaitingCall
    channel: str | None
    agent_id: str | None = None
    answered_at: float | None = None
    #: An announcement is playing (``ctid-announce``); a delivery waits for it to end.
    announcing: bool = False
    held_station: str | None = None
    timer: IDelayedCall | None = None
    #: Virtual hold: the number to call back, and the tries so far.
    callback: str | None = None
    attempts: int = 0
