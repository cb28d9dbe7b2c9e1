"""AMI events as Asterisk 22 writes them: names, classes and field order.

Pure functions over channel/bridge objects; the World calls them and hands
the resulting :class:`AmiEvent` to every AMI session.  Field order follows
``ast_manager_build_channel_state_string_prefix`` and
``ast_manager_build_bridge_state_string_prefix`` (see PROTOCOLS.md §3.1 and
the captures in shared/captures/asterisk-22.10.1/).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ctid.protocols.amiwire import format_message

if TYPE_CHECKING:  # pragma: no cover
    from .world import Bridge, Channel

Pairs = list[tuple[str, str]]

AMI_VERSION = "11.0.0"
ASTERISK_VERSION = "22.10.1"

# Event classes (manager.c "perms"), as bit flags.
CLASSES = {
    "system": 1 << 0, "call": 1 << 1, "log": 1 << 2, "verbose": 1 << 3, "command": 1 << 4,
    "agent": 1 << 5, "user": 1 << 6, "config": 1 << 7, "dtmf": 1 << 8, "reporting": 1 << 9,
    "cdr": 1 << 10, "dialplan": 1 << 11, "originate": 1 << 12, "agi": 1 << 13, "cc": 1 << 14,
    "aoc": 1 << 15, "test": 1 << 16, "security": 1 << 17, "message": 1 << 18,
}
ALL_CLASSES = sum(CLASSES.values())

STATE_DESC = {
    0: "Down", 1: "Rsrvd", 2: "OffHook", 3: "Dialing", 4: "Ring", 5: "Ringing", 6: "Up",
    7: "Busy", 8: "Dialing Offhook", 9: "Pre-ring", 10: "Unknown",
}
DOWN, RING, RINGING, UP, BUSY = 0, 4, 5, 6, 7

CAUSE_TEXT = {
    0: "Unknown", 1: "Unallocated (unassigned) number", 3: "No route to destination",
    16: "Normal Clearing", 17: "User busy", 18: "No user responding",
    19: "User alerting, no answer", 21: "Call Rejected", 34: "Circuit/channel congestion",
    38: "Network out of order", 127: "Interworking, unspecified",
}


def cause_text(cause: int) -> str:
    """Asterisk's ``ast_cause2str`` text for a Q.850 cause."""
    return CAUSE_TEXT.get(cause, "Unknown")


def escape(value: object) -> str:
    """C-escape control characters, as Asterisk does for names and variable values."""
    text = str(value)
    if any(ord(c) < 32 for c in text):
        text = text.encode("unicode_escape").decode("ascii")
    return text


class AmiEvent:
    """One event: name, class (bit flag), privilege text and ordered body pairs.

    :attr:`data` is the wire form, encoded once and shared by every session.
    """

    __slots__ = ("name", "category", "pairs", "_data")

    def __init__(self, name: str, category: str, pairs: Iterable[tuple[str, object]]):
        self.name = name
        self.category = category
        self.pairs: Pairs = [(k, escape(v)) for k, v in pairs]
        self._data: bytes | None = None

    @property
    def mask(self) -> int:
        return CLASSES[self.category]

    @property
    def data(self) -> bytes:
        if self._data is None:
            head = [("Event", self.name), ("Privilege", f"{self.category},all")]
            self._data = format_message(head + self.pairs)
        return self._data

    def get(self, key: str) -> str | None:
        """The first value of ``key`` in the body (exact case)."""
        for k, v in self.pairs:
            if k == key:
                return v
        return None

    def __repr__(self) -> str:
        return f"AmiEvent({self.name!r}, {self.pairs!r})"


def snapshot(chan: Channel, prefix: str = "") -> Pairs:
    """The channel block: Channel … Linkedid, optionally role-prefixed (``Dest``…)."""
    return [
        (prefix + "Channel", chan.name),
        (prefix + "ChannelState", str(chan.state)),
        (prefix + "ChannelStateDesc", STATE_DESC[chan.state]),
        (prefix + "CallerIDNum", chan.caller_num or "<unknown>"),
        (prefix + "CallerIDName", chan.caller_name or "<unknown>"),
        (prefix + "ConnectedLineNum", chan.connected_num or "<unknown>"),
        (prefix + "ConnectedLineName", chan.connected_name or "<unknown>"),
        (prefix + "Language", chan.language),
        (prefix + "AccountCode", chan.accountcode),
        (prefix + "Context", chan.context),
        (prefix + "Exten", chan.exten),
        (prefix + "Priority", str(chan.priority)),
        (prefix + "Uniqueid", chan.uniqueid),
        (prefix + "Linkedid", chan.linkedid),
    ]


def bridge_block(bridge: Bridge, prefix: str = "") -> Pairs:
    """The bridge block: BridgeUniqueid … BridgeVideoSourceMode."""
    return [
        (prefix + "BridgeUniqueid", bridge.uniqueid),
        (prefix + "BridgeType", bridge.kind),
        (prefix + "BridgeTechnology", bridge.technology),
        (prefix + "BridgeCreator", bridge.creator or "<unknown>"),
        (prefix + "BridgeName", bridge.name or "<unknown>"),
        (prefix + "BridgeNumChannels", str(len(bridge.members))),
        (prefix + "BridgeVideoSourceMode", "none"),
    ]


def parse_mask(text: str | None) -> int:
    """An ``Events``/``EventMask`` value as a class mask (manager.c strings_to_mask)."""
    if text is None or not text.strip():
        return ALL_CLASSES
    value = text.strip().lower()
    if value.isdigit():
        return int(value)
    if value in ("off", "no", "false", "0", "n", "f"):
        return 0
    if value in ("on", "yes", "true", "y", "t", "all"):
        return ALL_CLASSES
    mask = 0
    for word in value.split(","):
        word = word.strip()
        mask |= ALL_CLASSES if word == "all" else CLASSES.get(word, 0)
    return mask
