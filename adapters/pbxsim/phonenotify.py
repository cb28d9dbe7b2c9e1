"""AMI PJSIPNotify: a SIP NOTIFY to a phone; ``Event: talk`` makes a ringing phone answer (remote answer).

Only the ``Channel`` form (a NOTIFY inside the channel's dialog) is
simulated, which is what ctid's AnswerCall sends.  Every simulated phone
obeys ``Event: talk`` like a phone set up for remote answer (Yealink,
Polycom, Grandstream "auto answer by NOTIFY"): a ringing channel goes Up.
Other events are accepted and ignored, as a phone would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctid.protocols.amiwire import Message

from .amiactions import action, find_channel, header
from .events import UP

if TYPE_CHECKING:  # pragma: no cover
    from .amiserver import AmiSession
    from .world import Channel, World


@action("PJSIPNotify", "system", "Send a NOTIFY to either an endpoint, an arbitrary URI, or inside a SIP dialog.")
def pjsip_notify(session: AmiSession, message: Message) -> None:
    targets = [key for key in ("Endpoint", "URI", "Channel") if header(message, key)]
    if len(targets) != 1:
        return session.error(message, "PJSIPNotify requires either an endpoint, URI, or channel")
    variables = dict(line.partition("=")[::2] for line in message.getall("Variable") if "=" in line)
    if not variables and not header(message, "Option"):
        return session.error(message, "PJSIPNotify requires either an Option or Variable(s)")
    if targets[0] != "Channel":
        return session.error(message, "pbxsim: only the Channel form of PJSIPNotify is simulated")
    chan = find_channel(session, message)
    if chan is None or not chan.name.startswith("PJSIP/"):
        return session.error(message, "Channel is not a PJSIP channel")
    session.ack(message, "NOTIFY sent")
    if variables.get("Event", "").strip().lower() == "talk":
        session.world.soon(remote_answer, session.world, chan)
    return None


def remote_answer(world: World, chan: Channel) -> None:
    """The phone on ``chan`` answers because the switch asked it to (it must still be ringing)."""
    if not chan.dead and not chan.hangup_pending and chan.state != UP:
        world.set_state(chan, UP)
