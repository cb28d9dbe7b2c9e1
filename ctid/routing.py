"""Route rules (AC-5, 多路由): where a call goes — a queue, an IVR flow, a voicemail box or a number.

A rules file (TOML, see ``docs/routing.md``) is an ordered list of rules; the
first rule whose conditions all hold wins.  Conditions: the caller number
(主叫路由), the called number (被叫路由), a weekly schedule (作息时间路由), a
holiday calendar with make-up working days (节假日路由), data the IVR attached
to the call, and the situation the call is in: ``arrival``, or all agents busy
(``all_busy``, 遇忙路由), ring-no-answer (``no_answer``, 无人应答路由), queue
overflow (``overflow``, 队列溢出路由).

Pure domain code: :func:`ctid.routeload.load_routes` reads and validates the
file once into a frozen :class:`RouteTable` (a problem raises
:class:`RouteError`, one line naming the file and the rule); :meth:`RouteTable.route` answers for a
:class:`CallFacts` at the aware ``now`` its caller passes in, and
:meth:`RouteTable.explain` says which rule matched and why the earlier ones
did not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import NamedTuple
from zoneinfo import ZoneInfo

from ctid.acd.locality import national

__all__ = [
    "DAYS", "MENU_KEY", "STATES", "TARGETS", "Calendar", "CallFacts", "Condition", "DataCondition", "HolidayCondition",
    "HoursCondition", "NumbersCondition", "Route", "RouteError", "RouteTable", "Rule", "Schedule",
]

#: The situations a call is routed in; ``arrival`` needs a fallback rule, the others may answer None.
STATES = ("arrival", "all_busy", "no_answer", "overflow")
#: Target kinds: a rule has exactly one.
TARGETS = ("queue", "ivr", "voicemail", "external")
#: The IVR data key the ``menu`` condition reads (set by the IVR flow's hand-off, ``ctid.ivr.call``).
MENU_KEY = "CTID_MENU"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MINUTES = 24 * 60
_EMPTY: Mapping[str, str] = MappingProxyType({})


class RouteError(Exception):
    """A problem in a rules file, phrased as one line naming the file and the rule."""


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What routing knows of a call: caller number (ANI), called number (DNIS), IVR data (``CTID_*``)."""

    caller: str | None = ""
    called: str | None = ""
    data: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Route:
    """The answer: rule ``rule`` sends the call to ``target`` of ``kind`` (one of :data:`TARGETS`).

    ``priority``: for a queue, the call's priority floor (None: the queue's
    own).  ``data``: key/values to attach to the call (channel variables).
    """

    rule: str
    kind: str
    target: str
    priority: int | None = None
    data: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def __str__(self) -> str:
        priority = "" if self.priority is None else f" priority {self.priority}"
        attach = "".join(f" {key}={value}" for key, value in self.data.items())
        return f"{self.kind} {self.target}{priority}{' with' + attach if attach else ''}"


@dataclass(frozen=True, slots=True)
class Calendar:
    """Public holidays (法定节假日) and make-up working days (调休), as dates in the table's time zone.

    In a schedule using the calendar, a holiday is closed and a make-up working
    day keeps the hours of weekday ``workdays_as`` (0 = Monday).
    """

    name: str
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    workdays_as: int = 0

    def weekday(self, day: date) -> int | None:
        """The weekday whose hours ``day`` keeps; None on a holiday."""
        if day in self.holidays:
            return None
        return self.workdays_as if day in self.workdays else day.weekday()


@dataclass(frozen=True, slots=True)
class Schedule:
    """Weekly opening hours (作息时间), optionally following a holiday calendar.

    ``days[w]``: the ``(start, end)`` minutes of the ranges that start on
    weekday ``w`` (0 = Monday), start inclusive, end exclusive; an overnight
    range ends past 1440 and runs on into the next day.
    """

    name: str
    days: tuple[tuple[tuple[int, int], ...], ...]
    calendar: Calendar | None = None

    def is_open(self, local: datetime) -> bool:
        """Whether the local wall-clock time ``local`` is inside the hours."""
        day, minute = local.date(), local.hour * 60 + local.minute
        today = self._weekday(day)
        if today is not None and any(start <= minute < end for start, end in self.days[today]):
            return True
        yesterday = None if day == date.min else self._weekday(day - timedelta(days=1))
        return yesterday is not None and any(minute < end - DAY_MINUTES for _, end in self.days[yesterday])

    def _weekday(self, day: date) -> int | None:
        return self.calendar.weekday(day) if self.calendar is not None else day.weekday()


class _Facts(NamedTuple):
    caller: str
    called: str
    data: Mapping[str, str]
    local: datetime


@dataclass(frozen=True, slots=True)
class NumbersCondition:
    """``caller`` / ``called``: exact numbers (brought to national form) and ``prefix*`` patterns (as written)."""

    field: str
    exact: frozenset[str]
    prefixes: tuple[str, ...]
    written: tuple[str, ...]

    def test(self, facts: _Facts) -> bool:
        number = facts.caller if self.field == "caller" else facts.called
        return number in self.exact or number.startswith(self.prefixes)

    def covers(self, other: object) -> bool:
        return (isinstance(other, NumbersCondition) and other.field == self.field
                and all(n in self.exact or n.startswith(self.prefixes) for n in other.exact)
                and all(p.startswith(self.prefixes) for p in other.prefixes))

    def describe(self, facts: _Facts) -> str:
        number = (facts.caller if self.field == "caller" else facts.called) or "(none)"
        verb = "matches" if self.test(facts) else "does not match"
        return f"{self.field} {number} {verb} {', '.join(self.written)}"


@dataclass(frozen=True, slots=True)
class DataCondition:
    """``menu`` / ``data``: the IVR data value of ``key`` is one of ``values``."""

    key: str
    values: tuple[str, ...]

    def test(self, facts: _Facts) -> bool:
        value = facts.data.get(self.key)
        return isinstance(value, str) and value in self.values

    def covers(self, other: object) -> bool:
        return isinstance(other, DataCondition) and other.key == self.key and set(other.values) <= set(self.values)

    def describe(self, facts: _Facts) -> str:
        value = facts.data.get(self.key)
        wanted = " or ".join(repr(v) for v in self.values)
        if value is None:
            return f"{self.key} is not set (wanted {wanted})"
        return f"{self.key} is {value!r}{'' if self.test(facts) else f', not {wanted}'}"


@dataclass(frozen=True, slots=True)
class HoursCondition:
    """``hours = "NAME"`` (inside the schedule's hours) or ``"!NAME"`` (outside them)."""

    schedule: Schedule
    inside: bool

    def test(self, facts: _Facts) -> bool:
        return self.schedule.is_open(facts.local) == self.inside

    def covers(self, other: object) -> bool:
        return other == self

    def describe(self, facts: _Facts) -> str:
        where = "inside" if self.schedule.is_open(facts.local) else "outside"
        calendar, today = self.schedule.calendar, facts.local.date()
        why = ""
        if calendar is not None and today in calendar.holidays:
            why = f" (a holiday in {calendar.name!r})"
        elif calendar is not None and today in calendar.workdays:
            why = f" (a make-up working day in {calendar.name!r}, {DAYS[calendar.workdays_as]} hours)"
        return f"{facts.local:%a %Y-%m-%d %H:%M} is {where} the {self.schedule.name!r} hours{why}"


@dataclass(frozen=True, slots=True)
class HolidayCondition:
    """``holiday = true/false``: whether today is a holiday in the calendar."""

    calendar: Calendar
    holiday: bool

    def test(self, facts: _Facts) -> bool:
        return (facts.local.date() in self.calendar.holidays) == self.holiday

    def covers(self, other: object) -> bool:
        return other == self

    def describe(self, facts: _Facts) -> str:
        today = facts.local.date()
        return f"{today} is {'' if today in self.calendar.holidays else 'not '}a holiday in {self.calendar.name!r}"


Condition = NumbersCondition | DataCondition | HoursCondition | HolidayCondition


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: for calls in ``state`` meeting every condition, answer ``route``."""

    name: str
    state: str
    conditions: tuple[Condition, ...]
    route: Route

    def matches(self, facts: _Facts) -> bool:
        """Whether every condition holds for ``facts``."""
        return all(condition.test(facts) for condition in self.conditions)

    def shadows(self, later: Rule) -> bool:
        """Whether this rule, placed first, takes every call ``later`` would match."""
        return later.state == self.state and all(
            any(mine.covers(theirs) for theirs in later.conditions) for mine in self.conditions)


@dataclass(frozen=True)
class RouteTable:
    """A validated rules file: ``rules`` in order, times read in ``timezone``."""

    path: str
    timezone: ZoneInfo
    rules: tuple[Rule, ...]
    schedules: Mapping[str, Schedule] = field(default_factory=lambda: MappingProxyType({}))
    calendars: Mapping[str, Calendar] = field(default_factory=lambda: MappingProxyType({}))
    _by_state: Mapping[str, tuple[Rule, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_state = {state: tuple(r for r in self.rules if r.state == state) for state in STATES}
        object.__setattr__(self, "_by_state", MappingProxyType(by_state))

    def route(self, call: CallFacts, now: datetime, state: str = "arrival") -> Route | None:
        """The route of the first rule for ``state`` matching ``call`` at ``now`` (aware); None if none does.

        For ``arrival`` a valid table always answers (it ends with a fallback).
        """
        facts = self._facts(call, now, state)
        for rule in self._by_state[state]:
            if rule.matches(facts):
                return rule.route
        return None

    def explain(self, call: CallFacts, now: datetime, state: str = "arrival") -> list[str]:
        """Lines saying which rule matched ``call`` at ``now`` and why each earlier rule of ``state`` did not."""
        facts = self._facts(call, now, state)
        lines = [f"{state} call from {facts.caller or '(none)'} to {facts.called or '(none)'}"
                 f" at {facts.local:%a %Y-%m-%d %H:%M} {self.timezone.key}"]
        for rule in self._by_state[state]:
            if rule.matches(facts):
                why = "; ".join(c.describe(facts) for c in rule.conditions) or "no conditions (fallback)"
                lines.append(f"rule {rule.name!r} matched: {why} -> {rule.route}")
                return lines
            why = "; ".join(c.describe(facts) for c in rule.conditions if not c.test(facts))
            lines.append(f"rule {rule.name!r} skipped: {why}")
        lines.append(f"no rule for {state} matched")
        return lines

    def _facts(self, call: CallFacts, now: datetime, state: str) -> _Facts:
        if state not in self._by_state:
            raise ValueError(f"unknown routing state {state!r} (one of {', '.join(STATES)})")
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("route times must be timezone-aware")
        return _Facts(national(call.caller or ""), national(call.called or ""), call.data or _EMPTY,
                      now.astimezone(self.timezone))
