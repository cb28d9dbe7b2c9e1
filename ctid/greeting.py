"""The built-in ``bank`` AGI script until the IVR flow engine takes over.

Greets the caller, offers the main menu once, records the choice on the
channel (``CTID_MENU``) for the agent's screen pop, and returns the call to
the dialplan, which parks it in ``ctid-wait`` for an agent.
"""

from __future__ import annotations

from twisted.logger import Logger

log = Logger()

MENU_CHOICES = {"1": "balance", "2": "transactions", "3": "loss-report", "0": "agent"}


async def greet(session) -> None:
    """Answer, play the welcome (a digit interrupts it), take one menu digit, and hand the call back."""
    await session.answer()
    digits = await session.stream_file("ctid/welcome", escape_digits="0123456789")
    timed_out = False
    if not digits:
        digits, timed_out = await session.get_data("ctid/main-menu", timeout_ms=5000, max_digits=1)
    choice = MENU_CHOICES.get(digits, "agent")
    await session.set_variable("CTID_MENU", choice)
    log.info(
        "IVR: caller {ani} on {channel} chose {choice}{timeout}",
        ani=session.env.callerid,
        channel=session.env.channel,
        choice=choice,
        timeout=" (no input)" if timed_out else "",
    )
