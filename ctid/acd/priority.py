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
The compiled tables are held by a closure, so the call path reads no attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
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
    """A compiled set of rules answering a call's priority.

    :meth:`priority_for` is a closure over the compiled tables (no attribute
    look-ups on the call path), made once per book.
    """

    __slots__ = ("needs_number", "_empty", "priority_for")

    def __init__(self, rules: Iterable[PriorityRule]):
        numbers: dict[str, int] = {}
        prefixes: dict[str, int] = {}
        data_rules: list[tuple[str, str, int]] = []
        general: list[PriorityRule] = []
        for rule in rules:
            if rule.data and not (rule.numbers or rule.prefixes) and len(rule.data) == 1:
                data_rules.append((*rule.data[0], rule.priority))
            elif rule.data or not (rule.numbers or rule.prefixes):
                general.append(rule)
            else:
                for number in rule.numbers:
                    _raise(numbers, number, rule.priority)
                for prefix in rule.prefixes:
                    _raise(prefixes, prefix, rule.priority)
        #: Whether the caller number matters (else :meth:`priority_for` may be given '').
        self.needs_number = bool(numbers or prefixes or general)
        self._empty = not (data_rules or self.needs_number)
        self.priority_for = _compile(tuple(data_rules), numbers, prefixes, tuple(general))

    def __bool__(self) -> bool:
        return not self._empty


def _compile(
    data_rules: tuple[tuple[str, str, int], ...],
    numbers: dict[str, int],
    prefixes: dict[str, int],
    general: tuple[PriorityRule, ...],
) -> Callable[[str, Mapping[str, str], int], int]:
    lengths = tuple(sorted({len(prefix) for prefix in prefixes}))

    def priority_for(number: str, data: Mapping[str, str], floor: int) -> int:
        """The priority of a call from ``number`` (national form) with IVR ``data``, never below ``floor``."""
        best = floor
        if data:
            for key, value, priority in data_rules:
                if priority > best and data.get(key) == value:
                    best = priority
        if numbers:
            found = numbers.get(number)
            if found is not None and found > best:
                best = found
        for length in lengths:
            found = prefixes.get(number[:length])
            if found is not None and found > best:
                best = found
        for rule in general:
            if rule.priority > best and rule.matches(number, data):
                best = rule.priority
        return best

    return priority_for
