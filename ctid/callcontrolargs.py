"""Who is on a call, and the checks on what agents type: pure helpers of the call-control commands.

A call's **parties** are read from the call model: a live channel belongs to
the agent logged in on its device (``PJSIP/1001-00000002`` → the agent on
``PJSIP/1001``).  An agent acts only on calls where one of the live legs is
on its station; the leg talking with the agent's leg (same bridge) is the
**far party** (the customer, or the other agent of an internal call).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, overload

from ctid.callevents import Call, Channel
from ctid.protocols.ctiapi import CTIError

#: Keys of call data an agent may set: channel variables ``CTID_*`` (upper case, digits, underscore).
DATA_KEY = re.compile(r"CTID_[A-Z0-9_]{1,40}\Z")
#: DTMF an agent may send (PlayDTMF digits).
DTMF = re.compile(r"[0-9*#A-D]{1,32}\Z")
#: A number an agent may dial out: digits, optionally a leading +.
NUMBER = re.compile(r"\+?[0-9]{2,24}\Z")
MAX_VALUE = 256
MAX_ITEMS = 16
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def device_of(channel_name: str) -> str:
    """The device of a channel name: ``PJSIP/1001-0000000a`` → ``PJSIP/1001`` (Local: the name up to ``;``)."""
    return channel_name.split(";", 1)[0].rsplit("-", 1)[0]


def extension_of(station: str) -> str:
    """The dialable extension of a station: ``PJSIP/1002`` → ``1002``."""
    return station.rsplit("/", 1)[-1]


def leg_on(call: Call, station: str) -> Channel | None:
    """The newest live leg of ``call`` on ``station``, if any."""
    legs = [channel for channel in call.channels.values() if device_of(channel.name) == station]
    return max(legs, key=lambda channel: channel.created_at) if legs else None


def far_party(channels: Mapping[str, Channel], bridges: Mapping[str, Any], leg: Channel) -> Channel | None:
    """The channel sharing ``leg``'s bridge (the first other member), if ``leg`` is bridged."""
    bridge = bridges.get(leg.bridge_id) if leg.bridge_id is not None else None
    if bridge is None:
        return None
    for uniqueid in bridge.channels:
        if uniqueid != leg.uniqueid and uniqueid in channels:
            return channels[uniqueid]
    return None


def stations_on(call: Call) -> list[str]:
    """The devices of the call's live legs, in order, without repeats."""
    return list(dict.fromkeys(device_of(channel.name) for channel in call.channels.values()))


@overload
def text_arg(args: Mapping[str, Any], name: str, required: Literal[True] = True, limit: int = 128) -> str: ...


@overload
def text_arg(args: Mapping[str, Any], name: str, required: bool, limit: int = 128) -> str | None: ...


def text_arg(args: Mapping[str, Any], name: str, required: bool = True, limit: int = 128) -> str | None:
    """A non-empty string argument of at most ``limit`` characters (None when optional and absent)."""
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > limit or _CONTROL.search(value):
        raise CTIError("bad_request", f"{name} must be a non-empty string of at most {limit} characters")
    return value


def digits_arg(args: Mapping[str, Any]) -> str:
    """The ``digits`` of SendDTMF: 1–32 of ``0-9 * # A-D``."""
    value = args.get("digits")
    if not isinstance(value, str) or not DTMF.match(value):
        raise CTIError("bad_request", "digits must be 1 to 32 of 0-9, *, #, A-D")
    return value


def number_arg(args: Mapping[str, Any]) -> str:
    """The ``to`` number of MakeCall: 2–24 digits, optionally with a leading +."""
    value = args.get("to")
    if not isinstance(value, str) or not NUMBER.match(value):
        raise CTIError("bad_request", "to must be a phone number: 2 to 24 digits, optionally starting with +")
    return value


def data_arg(args: Mapping[str, Any], hidden: Iterable[str] = ()) -> dict[str, str]:
    """The ``data`` of SetCallData: 1–16 ``CTID_*`` keys with strings of at most 256 printable characters.

    ``hidden`` names variables ctid keeps for itself (delivery plumbing);
    they are refused like malformed keys.  Line breaks and other control
    characters are refused: a value becomes an AMI header.
    """
    data = args.get("data")
    if not isinstance(data, dict) or not 1 <= len(data) <= MAX_ITEMS:
        raise CTIError("bad_request", f"data must be an object with 1 to {MAX_ITEMS} items")
    reserved = frozenset(hidden)
    for key, value in data.items():
        if not DATA_KEY.match(key) or key in reserved:
            raise CTIError("bad_request", f"data key {key[:48]!r} must be CTID_ and upper-case letters, digits, _")
        if not isinstance(value, str) or len(value) > MAX_VALUE or _CONTROL.search(value):
            raise CTIError("bad_request", f"data value of {key} must be a string of at most {MAX_VALUE} printable "
                                          "characters")
    return dict(data)


def flag_arg(args: Mapping[str, Any], name: str) -> bool:
    """A required boolean argument."""
    value = args.get(name)
    if not isinstance(value, bool):
        raise CTIError("bad_request", f"{name} must be true or false")
    return value
