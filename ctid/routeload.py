"""Reading a route rules file (TOML, ``docs/routing.md``) into a validated :class:`~ctid.routing.RouteTable`.

:func:`load_routes` reads the file, :func:`parse_routes` validates its text;
any problem raises :class:`~ctid.routing.RouteError`, one line naming the file
and the rule.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from ctid.acd.locality import national
from ctid.routing import (
    DAY_MINUTES,
    DAYS,
    MENU_KEY,
    STATES,
    TARGETS,
    Calendar,
    Condition,
    DataCondition,
    HolidayCondition,
    HoursCondition,
    NumbersCondition,
    Route,
    RouteError,
    RouteTable,
    Rule,
    Schedule,
)

__all__ = ["load_routes", "parse_routes"]

_WEEK = 7 * DAY_MINUTES
_NUMBER = re.compile(r"[0-9]+\*?")
_EXTERNAL = re.compile(r"\+?[0-9]+")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RANGE = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TOP_KEYS = ("timezone", "calendars", "schedules", "rules")
_CALENDAR_KEYS = ("holidays", "workdays", "workdays_as")
_SCHEDULE_KEYS = ("hours", "calendar")
_RULE_KEYS = ("name", "state", "caller", "called", "menu", "data", "hours", "holiday", "calendar", *TARGETS,
              "priority", "attach")


class _Bad(ValueError):
    """A problem found while parsing; :func:`_where` prefixes it with the file and the place."""


@contextmanager
def _where(place: str) -> Iterator[None]:
    try:
        yield
    except _Bad as e:
        raise RouteError(f"{place}: {e}") from None


def load_routes(path: str, known_queues: Collection[str], known_flows: Collection[str] | None = None) -> RouteTable:
    """Read and validate the rules file at ``path``; queue targets must be in ``known_queues``.

    IVR targets are checked against ``known_flows`` when it is given.  Raises
    :class:`RouteError`.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise RouteError(f"{path}: cannot read the rules file: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise RouteError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return parse_routes(text, path, known_queues, known_flows)


def parse_routes(text: str, path: str = "<string>", known_queues: Collection[str] = (),
                 known_flows: Collection[str] | None = None) -> RouteTable:
    """Validate the rules in TOML ``text`` (``path`` names it in errors); see :func:`load_routes`."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RouteError(f"{path}: not valid TOML: {' '.join(str(e).split())}") from None
    with _where(path):
        _check_keys(doc, _TOP_KEYS)
        timezone = _timezone(doc.get("timezone"))
    calendars: dict[str, Calendar] = {}
    for name, body in _named_tables(doc, "calendars", path):
        with _where(f"{path}: calendar {name!r}"):
            calendars[name] = _calendar(name, body)
    schedules: dict[str, Schedule] = {}
    for name, body in _named_tables(doc, "schedules", path):
        with _where(f"{path}: schedule {name!r}"):
            schedules[name] = _schedule(name, body, calendars)
    rules = _rules(doc.get("rules"), path, _Known(set(known_queues), known_flows, schedules, calendars))
    return RouteTable(path, timezone, rules, MappingProxyType(schedules), MappingProxyType(calendars))


class _Known(NamedTuple):
    queues: Collection[str]
    flows: Collection[str] | None
    schedules: Mapping[str, Schedule]
    calendars: Mapping[str, Calendar]


def _check_keys(table: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            raise _Bad(f"unknown key {key!r} ({hint})")


def _names(names: Collection[str]) -> str:
    return ", ".join(sorted(names)) or "none defined"


def _timezone(value: Any) -> ZoneInfo:
    if value is None:
        raise _Bad('timezone: missing, e.g. timezone = "Asia/Shanghai"')
    if not isinstance(value, str):
        raise _Bad("timezone: expected a time zone name such as Asia/Shanghai")
    try:
        return ZoneInfo(value)
    except (KeyError, ValueError, OSError):
        raise _Bad(f"timezone: unknown time zone {value!r}") from None


def _named_tables(doc: Mapping[str, Any], key: str, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    tables = doc.get(key, {})
    with _where(path):
        if not isinstance(tables, dict):
            raise _Bad(f"{key}: expected tables [{key}.NAME]")
        for name, body in tables.items():
            if not isinstance(body, dict):
                raise _Bad(f"{key}.{name}: expected a table [{key}.{name}]")
    yield from tables.items()


def _texts(value: Any, key: str) -> tuple[str, ...]:
    """A string or a non-empty list of strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and item for item in items):
        raise _Bad(f"{key}: expected text or a list of text")
    if not items:
        raise _Bad(f"{key}: an empty list never matches")
    return tuple(items)


def _day_index(text: str, where: str) -> int:
    if text not in DAYS:
        raise _Bad(f"{where}: unknown day {text!r} (one of {' '.join(DAYS)}, or daily)")
    return DAYS.index(text)


# -- calendars and schedules ------------------------------------------------------------------------------


def _calendar(name: str, body: Mapping[str, Any]) -> Calendar:
    _check_keys(body, _CALENDAR_KEYS)
    holidays = _dates(body.get("holidays", []), "holidays")
    workdays = _dates(body.get("workdays", []), "workdays")
    if holidays & workdays:
        raise _Bad(f"{min(holidays & workdays)} is both a holiday and a make-up working day")
    for day in sorted(workdays):
        if day.weekday() < 5:
            raise _Bad(f"workdays: {day} is a {DAYS[day.weekday()]}, already a working day "
                       "(make-up working days fall on weekends)")
    workdays_as = body.get("workdays_as", "mon")
    if not isinstance(workdays_as, str):
        raise _Bad(f"workdays_as: expected a day name ({' '.join(DAYS)})")
    return Calendar(name, holidays, workdays, _day_index(workdays_as, "workdays_as"))


def _dates(value: Any, key: str) -> frozenset[date]:
    if not isinstance(value, list):
        raise _Bad(f"{key}: expected a list of dates")
    days: set[date] = set()
    for item in value:
        for day in _date_items(item, key):
            if day in days:
                raise _Bad(f"{key}: {day} is listed twice")
            days.add(day)
    return frozenset(days)


def _date_items(item: Any, key: str) -> list[date]:
    """A TOML date, ``YYYY-MM-DD`` or an inclusive range ``YYYY-MM-DD..YYYY-MM-DD``."""
    if isinstance(item, date) and not isinstance(item, datetime):
        return [item]
    bad = _Bad(f"{key}: {item!r} is not a date (YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD)")
    if not isinstance(item, str):
        raise bad
    first, dots, last = item.partition("..")
    texts = (first, last) if dots else (first, first)
    if not all(_DATE.fullmatch(text) for text in texts):
        raise bad
    try:
        start, end = date.fromisoformat(texts[0]), date.fromisoformat(texts[1])
    except ValueError:
        raise bad from None
    if end < start:
        raise _Bad(f"{key}: {item!r} ends before it starts")
    if (end - start).days > 366:
        raise _Bad(f"{key}: {item!r} is longer than a year")
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def _schedule(name: str, body: Mapping[str, Any], calendars: Mapping[str, Calendar]) -> Schedule:
    _check_keys(body, _SCHEDULE_KEYS)
    if "hours" not in body:
        raise _Bad('hours: missing, e.g. hours = ["mon-fri 08:30-17:30"]')
    ranges = [(entry, day, start, end) for entry in _texts(body["hours"], "hours")
              for day, start, end in _hours_entry(entry)]
    _check_overlaps(ranges)
    days = tuple(tuple(sorted((s, e) for _, d, s, e in ranges if d == day)) for day in range(7))
    calendar = body.get("calendar")
    if calendar is not None and calendar not in calendars:
        raise _Bad(f"calendar: unknown calendar {calendar!r} (calendars: {_names(calendars)})")
    return Schedule(name, days, calendars[calendar] if calendar is not None else None)


def _hours_entry(entry: str) -> list[tuple[int, int, int]]:
    """``"mon-fri 08:30-12:00 13:30-17:30"`` → (weekday, start, end) minutes; an overnight end is past 1440."""
    words = entry.split()
    if len(words) < 2:
        raise _Bad(f"hours: {entry!r}: expected 'DAYS HH:MM-HH:MM …', e.g. 'mon-fri 08:30-17:30'")
    days = list(range(7)) if words[0] == "daily" else [
        day for part in words[0].split(",") for day in _day_span(part, f"hours: {entry!r}")]
    return [(day, start, end) for day in days for start, end in (_time_range(w, entry) for w in words[1:])]


def _day_span(part: str, where: str) -> list[int]:
    first, _, last = part.partition("-")
    a = _day_index(first, where)
    b = _day_index(last, where) if last else a
    return [(a + n) % 7 for n in range((b - a) % 7 + 1)]


def _time_range(text: str, entry: str) -> tuple[int, int]:
    found = _RANGE.fullmatch(text)
    if found is None:
        raise _Bad(f"hours: {entry!r}: {text!r} is not a time range HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in found.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise _Bad(f"hours: {entry!r}: {text!r} is not a valid time (00:00 to 24:00)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise _Bad(f"hours: {entry!r}: {text!r} is empty; write 00:00-24:00 for all day")
    return start, end if end > start else end + DAY_MINUTES


def _check_overlaps(ranges: list[tuple[str, int, int, int]]) -> None:
    spans: list[tuple[int, int, str]] = []
    for entry, day, start, end in ranges:
        first, last = day * DAY_MINUTES + start, day * DAY_MINUTES + end
        spans += [(first, _WEEK, entry), (0, last - _WEEK, entry)] if last > _WEEK else [(first, last, entry)]
    spans.sort()
    for (_, end, a), (start, _, b) in zip(spans, spans[1:], strict=False):
        if start < end:
            at = f"{DAYS[start // DAY_MINUTES]} {start % DAY_MINUTES // 60:02d}:{start % 60:02d}"
            raise _Bad(f"hours: {a!r} and {b!r} overlap at {at}")


# -- rules ------------------------------------------------------------------------------------------------


def _rules(value: Any, path: str, known: _Known) -> tuple[Rule, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(body, dict) for body in value):
        raise RouteError(f"{path}: no rules: add [[rules]] tables, the last with no conditions (the fallback)")
    rules: list[Rule] = []
    for index, body in enumerate(value, 1):
        name = body.get("name")
        with _where(f"{path}: rule {name!r}" if isinstance(name, str) and name else f"{path}: rule #{index}"):
            rule = _rule(body, known)
            for earlier in rules:
                if earlier.name == rule.name:
                    raise _Bad("name: used by an earlier rule too")
                if earlier.shadows(rule):
                    raise _Bad(f"never matches: the earlier rule {earlier.name!r} takes every {rule.state} call "
                               "this one would")
            rules.append(rule)
    arrival = [rule for rule in rules if rule.state == "arrival"]
    if not arrival or arrival[-1].conditions:
        where = f"rule {arrival[-1].name!r}: " if arrival else ""
        raise RouteError(f"{path}: {where}no fallback for arrival calls: the last arrival rule must have no "
                         'conditions, only a target (e.g. name = "default", queue = "general")')
    return tuple(rules)


def _rule(body: Mapping[str, Any], known: _Known) -> Rule:
    _check_keys(body, _RULE_KEYS)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _Bad("name: missing, every rule needs a name")
    state = body.get("state", "arrival")
    if state not in STATES:
        raise _Bad(f"state: unknown state {state!r} (one of {', '.join(STATES)})")
    return Rule(name, state, tuple(_conditions(body, known)), _target(name, body, known))


def _conditions(body: Mapping[str, Any], known: _Known) -> Iterator[Condition]:
    for key in ("caller", "called"):
        if key in body:
            yield _numbers(key, _texts(body[key], key))
    data = _data(body.get("data", {}), "data", _texts)
    if "menu" in body:
        if MENU_KEY in data:
            raise _Bad(f"menu: data.{MENU_KEY} is set too; use one of them")
        data[MENU_KEY] = _texts(body["menu"], "menu")
    yield from (DataCondition(key, values) for key, values in data.items())
    if "hours" in body:
        yield _hours(body["hours"], known.schedules)
    if "holiday" in body:
        yield _holiday(body["holiday"], body.get("calendar"), known.calendars)
    elif "calendar" in body:
        raise _Bad("calendar: only used with holiday = true or false")


def _numbers(key: str, patterns: tuple[str, ...]) -> NumbersCondition:
    for pattern in patterns:
        if not _NUMBER.fullmatch(pattern):
            raise _Bad(f"{key}: {pattern!r} is not a number or a prefix such as '139*'")
    exact = frozenset(national(p) for p in patterns if not p.endswith("*"))
    prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
    return NumbersCondition(key, exact, prefixes, patterns)


def _data(value: Any, key: str, parse: Callable[[Any, str], Any]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"{key}: expected a table of KEY = value")
    for name in value:
        if not _KEY.fullmatch(name):
            raise _Bad(f"{key}: {name!r} is not a variable name (letters, digits, _)")
    return {name: parse(item, f"{key}.{name}") for name, item in value.items()}


def _hours(value: Any, schedules: Mapping[str, Schedule]) -> HoursCondition:
    if not isinstance(value, str):
        raise _Bad('hours: expected a schedule name, "NAME" (inside its hours) or "!NAME" (outside)')
    name = value.removeprefix("!")
    if name not in schedules:
        raise _Bad(f"hours: unknown schedule {name!r} (schedules: {_names(schedules)})")
    return HoursCondition(schedules[name], not value.startswith("!"))


def _holiday(value: Any, name: Any, calendars: Mapping[str, Calendar]) -> HolidayCondition:
    if not isinstance(value, bool):
        raise _Bad("holiday: expected true or false")
    if name is None and len(calendars) == 1:
        name = next(iter(calendars))
    if name is None:
        raise _Bad(f'holiday: say which calendar, calendar = "NAME" (calendars: {_names(calendars)})')
    if name not in calendars:
        raise _Bad(f"calendar: unknown calendar {name!r} (calendars: {_names(calendars)})")
    return HolidayCondition(calendars[name], value)


def _target(name: str, body: Mapping[str, Any], known: _Known) -> Route:
    kinds = [kind for kind in TARGETS if kind in body]
    if len(kinds) != 1:
        found = f"{len(kinds)} targets ({', '.join(kinds)})" if kinds else "no target"
        raise _Bad(f"{found}: give exactly one of {', '.join(TARGETS)}")
    kind, target = kinds[0], body[kinds[0]]
    if not isinstance(target, str) or not target.strip():
        raise _Bad(f"{kind}: expected a name")
    if kind == "queue" and target not in known.queues:
        raise _Bad(f"queue: unknown queue {target!r} (queues: {_names(known.queues)})")
    if kind == "ivr" and known.flows is not None and target not in known.flows:
        raise _Bad(f"ivr: unknown IVR flow {target!r} (flows: {_names(known.flows)})")
    if kind == "external" and not _EXTERNAL.fullmatch(target):
        raise _Bad(f"external: {target!r} is not a phone number")
    attach = _data(body.get("attach", {}), "attach", _text)
    return Route(name, kind, target, _priority(body.get("priority"), kind), MappingProxyType(attach))


def _priority(value: Any, kind: str) -> int | None:
    if value is not None and kind != "queue":
        raise _Bad("priority: only for queue targets")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise _Bad("priority: expected a whole number, 0 or more")
    return value


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{key}: expected text")
    return value
