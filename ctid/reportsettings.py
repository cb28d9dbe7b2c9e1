"""The ``[reports]`` settings: KPI definitions, staffing model, time zone and the monthly schedule.

:data:`REPORT_SCHEMA` is the section's whitelist of keys and their parsers
(used by :mod:`ctid.config`); :class:`ReportSettings` the frozen result.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ctid.kpis import Definitions
from ctid.stats import StatsOptions

__all__ = ["REPORT_SCHEMA", "ReportSettings"]


@dataclass(frozen=True)
class ReportSettings:
    """[reports]: how figures are defined, staffing is modelled, times are shown, and the monthly schedule."""

    schedule: bool = False
    output_dir: str = "var/reports"
    timezone: str = "UTC"
    service_level: float = 0.8
    answer_within: float = 20.0
    short_abandon: float = 5.0
    fcr_days: float = 7.0
    complaint_queues: tuple[str, ...] = ("complaints",)
    consultation_queues: tuple[str, ...] = ("consultation",)
    interval: float = 1800.0
    patience: str | float = "observed"

    @property
    def tz(self) -> ZoneInfo:
        """The time zone periods and times are given in."""
        return ZoneInfo(self.timezone)

    @property
    def options(self) -> StatsOptions:
        """What :func:`ctid.stats.period_stats` needs."""
        definitions = Definitions(self.answer_within, self.short_abandon, timedelta(days=self.fcr_days),
                                  frozenset(self.complaint_queues), frozenset(self.consultation_queues))
        return StatsOptions(definitions, self.service_level, self.interval, self.patience)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("yes", "true", "on", "1"):
        return True
    if lowered in ("no", "false", "off", "0"):
        return False
    raise ValueError(f"expected yes or no, got {text!r}")


def _number(low: float, high: float = math.inf, low_open: bool = False):
    def parse(text: str) -> float:
        value = float(text)
        if not (low < value if low_open else low <= value) or not value < high or math.isnan(value):
            raise ValueError(f"must be {'above' if low_open else 'at least'} {low:g}"
                             + (f" and below {high:g}" if high != math.inf else "") + f", got {text!r}")
        return value

    return parse


def _timezone(text: str) -> str:
    name = text.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as UTC or Asia/Shanghai)") from None
    return name


def _patience(text: str) -> str | float:
    value = text.strip().lower()
    if value in ("observed", "none"):
        return value
    try:
        return _number(0.0, low_open=True)(value)
    except ValueError:
        raise ValueError(f"expected observed, none or a number of seconds above 0, got {text!r}") from None


def _directory(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return os.path.normpath(text.strip())


def _queues(text: str) -> tuple[str, ...]:
    return tuple(text.replace(",", " ").split())


#: [reports] key -> parser; the keys are the whitelist.
REPORT_SCHEMA = {
    "schedule": _bool,
    "output_dir": _directory,
    "timezone": _timezone,
    "service_level": _number(0.0, 1.0, low_open=True),
    "answer_within": _number(0.0),
    "short_abandon": _number(0.0),
    "fcr_days": _number(0.0, low_open=True),
    "complaint_queues": _queues,
    "consultation_queues": _queues,
    "interval": _number(60.0),
    "patience": _patience,
}
