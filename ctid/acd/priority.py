"""Priority rules (AC-3, 优先级控制策略): VIP callers are answered first.

A call's priority is fixed when it is queued: the highest of the queue's base
priority, the priority the caller of :meth:`~ctid.acd.ACD.enqueue` gave (e.g.
set by a route rule or the IVR) and the priority of every matching
:class:`PriorityRule`; a supervisor may change it later
(:meth:`~ctid.acd.ACD.set_priority`).  Bigger numbers are served first.

A rule matches when its caller condition *and* its data condition hold; an
empty condition always holds.  Caller condition: the caller number (in
national form, :func:`~ctid.acd.locality.national`) is one of ``numbers`` or
starts with one of ``prefixes``.  Data condition: every ``key = value`` pair
of ``data`` equals what the IVR collected (e.g. ``customer_class = vip``).

:class:`RuleBook` compiles the rules for the call path: exact numbers and
prefixes become dict look-ups (one per distinct prefix length), single-pair
data rules a short list; only rules mixing conditions are evaluated one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ctid.acd.locality import national

__all__ = ["PriorityRule", "RuleBook"]


@dataclass(frozen=True, slots=True)
class PriorityRule:
    """Give ``priority`` to calls matching the caller and data conditions."""

    priority: int
    numbers: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    data: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "numbers", frozenset(national(n) for n in self.numbers))
        object.__setattr__(self, "prefixes", tuple(national(p) for p in self.prefixes))
        object.__setattr__(self, "data", tuple((str(k), str(v)) for k, v in dict(self.data).items()))

    def matches(self, number: str, data: Mapping[str, str]) -> bool:
        """Whether a call from ``number`` (national form) with IVR ``data`` gets this rule's priority."""
        if (self.numbers or self.prefixes) and not (
            number in self.numbers or (self.prefixes and number.startswith(self.prefixes))
        ):
            return False
        return all(data.get(key) == value for key, value in self.data)


def _raise(table: dict[str, int], key: str, priority: int) -> None:
    table[key] = max(priority, table.get(key, priority))


class RuleBook:
    """A compiled set of rules answering a call's priority."""

    __slots__ = ("_numbers", "_prefixes", "_lengths", "_data", "_general", "needs_number")

    def __init__(self, rules: Iterable[PriorityRule]):
        self._numbers: dict[str, int] = {}
        self._prefixes: dict[str, int] = {}
        self._data: list[tuple[str, str, int]] = []
        self._general: list[PriorityRule] = []
        for rule in rules:
            if rule.data and not (rule.numbers or rule.prefixes) and len(rule.data) == 1:
                self._data.append((*rule.data[0], rule.priority))
            elif rule.data or not (rule.numbers or rule.prefixes):
                self._general.append(rule)
            else:
                for number in rule.numbers:
                    _raise(self._numbers, number, rule.priority)
                for prefix in rule.prefixes:
                    _raise(self._prefixes, prefix, rule.priority)
        self._lengths = sorted({len(prefix) for prefix in self._prefixes})
        #: Whether the caller number matters (else :meth:`priority_for` may be given '').
        self.needs_number = bool(self._numbers or self._prefixes or self._general)

    def __bool__(self) -> bool:
        return bool(self._data or self.needs_number)

    def priority_for(self, number: str, data: Mapping[str, str], floor: int) -> int:
        """The priority of a call from ``number`` (national form) with IVR ``data``, never below ``floor``."""
        best = floor
        if data:
            for key, value, priority in self._data:
                if priority > best and data.get(key) == value:
                    best = priority
        if self._numbers:
            priority = self._numbers.get(number)
            if priority is not None and priority > best:
                best = priority
        if self._lengths:
            prefixes = self._prefixes
            for length in self._lengths:
                priority = prefixes.get(number[:length])
                if priority is not None and priority > best:
                    best = priority
        for rule in self._general:
            if rule.priority > best and rule.matches(number, data):
                best = rule.priority
        return best
