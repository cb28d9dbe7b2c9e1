"""What a caller waiting in a queue hears and may choose (all busy, 遇忙).

One :class:`WaitPolicy` per queue, from its ``[queue:NAME]`` section: how
often the waiting caller is told its place in line and the estimated wait,
and whether it may leave a voice message or ask for a call-back instead of
holding (virtual hold: the call keeps its place and ctid calls back when an
agent is free).  See docs/acd.md "Waiting callers".
"""

from __future__ import annotations

from dataclasses import dataclass

#: The [queue:NAME] keys that belong to the wait policy rather than to the ACD.
POLICY_KEYS = ("announce_every", "offer_voicemail", "offer_callback", "callback_attempts", "callback_retry",
               "callback_ring")


@dataclass(frozen=True)
class WaitPolicy:
    """Announcements and choices for callers waiting in one queue.

    ``announce_every``: seconds between announcements (0: music only, no
    announcement and no choices).  ``callback_attempts`` calls, each ringing
    the customer ``callback_ring`` seconds, are tried ``callback_retry``
    seconds apart before a call-back is given up.
    """

    announce_every: float = 0.0
    offer_voicemail: bool = False
    offer_callback: bool = False
    callback_attempts: int = 3
    callback_retry: float = 120.0
    callback_ring: float = 30.0

    def __post_init__(self) -> None:
        if (self.offer_voicemail or self.offer_callback) and not self.announce_every:
            raise ValueError("offer_voicemail/offer_callback need announce_every (the choices are announced)")
        if self.announce_every and self.announce_every < 10:
            raise ValueError("announce_every: at least 10 seconds (or 0 for none)")
        if self.callback_attempts < 1:
            raise ValueError("callback_attempts: at least 1")

    @property
    def choices(self) -> str:
        """The keys the caller may press: ``1`` voice message, ``2`` call-back."""
        return ("1" if self.offer_voicemail else "") + ("2" if self.offer_callback else "")
